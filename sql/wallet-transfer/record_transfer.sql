-- Records a transfer in the ledger: a debit of $3 on wallet $1 and a credit on wallet $2, under one new transfer id.
INSERT INTO ledger (wallet_id, amount, transfer_id)
SELECT side.wallet_id, side.amount, transfer.id
FROM (SELECT nextval('transfer_ids') AS id) AS transfer,
     (VALUES ($1::int, -$3::bigint), ($2::int, $3::bigint)) AS side (wallet_id, amount)

-- Placeholders {wallets}, {initial_balance}, {history_per_wallet} are filled
-- from workloads/wallet-transfer.toml and --scale.
INSERT INTO wallets (id, balance)
SELECT w, {initial_balance}
FROM generate_series(1, {wallets}) AS w;

-- The opening deposit of each wallet: the ledger sums to the balances.
INSERT INTO ledger (wallet_id, amount, transfer_id, created_at)
SELECT w, {initial_balance}, NULL, now() - interval '60 days'
FROM generate_series(1, {wallets}) AS w;

-- Past transfers in rounds: in round k every wallet sent the same amount to
-- the next wallet (the last to the first), so each wallet received exactly
-- what it sent and its ledger still sums to its balance.
INSERT INTO ledger (wallet_id, amount, transfer_id, created_at)
SELECT side.wallet_id,
       side.amount,
       (k - 1)::bigint * {wallets} + w,
       now() - ((k * 7919 + w * 31) % 43200) * interval '1 minute'
FROM generate_series(1, {history_per_wallet}) AS k,
     generate_series(1, {wallets}) AS w,
     LATERAL (VALUES (w, -(1 + (k * 37) % 100)::bigint),
                     (w % {wallets} + 1, (1 + (k * 37) % 100)::bigint)) AS side (wallet_id, amount);

SELECT setval('transfer_ids', greatest({wallets}::bigint * {history_per_wallet}, 1));

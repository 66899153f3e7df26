-- Invariant: wallets whose balance differs from the sum of their ledger entries.
SELECT w.id, w.balance, coalesce(l.total, 0)::bigint
FROM wallets AS w
LEFT JOIN (SELECT wallet_id, sum(amount) AS total FROM ledger GROUP BY wallet_id) AS l
       ON l.wallet_id = w.id
WHERE w.balance <> coalesce(l.total, 0)
ORDER BY w.id

-- Invariant and cell start: the number of wallets and the sum of their balances.
SELECT count(*)::bigint, coalesce(sum(balance), 0)::bigint FROM wallets

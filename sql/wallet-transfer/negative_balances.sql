-- Invariant: wallets whose balance went negative.
SELECT id, balance FROM wallets WHERE balance < 0 ORDER BY id

-- Locks one wallet for a transfer (naive and ordered) and reads its balance.
SELECT balance FROM wallets WHERE id = $1 FOR UPDATE

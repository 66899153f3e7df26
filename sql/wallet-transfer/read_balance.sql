-- Reads one wallet's balance without a lock (serializable).
SELECT balance FROM wallets WHERE id = $1

-- A wallet's latest ledger entries (a scan until the migration adds an index).
SELECT id, amount, transfer_id, created_at
FROM ledger
WHERE wallet_id = $1
ORDER BY created_at DESC
LIMIT 50

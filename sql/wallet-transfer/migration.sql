-- A wallet's history, newest first, without scanning the whole ledger:
-- an index on (wallet_id, created_at DESC), built without blocking writes.
CREATE INDEX CONCURRENTLY ledger_wallet_created ON ledger (wallet_id, created_at DESC);

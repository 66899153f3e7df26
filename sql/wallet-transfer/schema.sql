-- wallet-transfer: wallets, their balances, and a ledger of every movement.
-- No CHECK (balance >= 0): the transfer logic enforces it, so the invariant
-- check can detect a strategy that lets a balance go negative. Deliberately
-- no index on ledger (wallet_id, created_at): the history read scans until
-- the migration adds one.
CREATE TABLE wallets (
    id      int PRIMARY KEY,
    balance bigint NOT NULL
);

CREATE TABLE ledger (
    id          bigserial PRIMARY KEY,
    wallet_id   int NOT NULL,
    amount      bigint NOT NULL,
    transfer_id bigint,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE SEQUENCE transfer_ids;

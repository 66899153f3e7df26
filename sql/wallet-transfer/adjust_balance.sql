-- Moves a wallet's balance by a signed amount (negative debits).
UPDATE wallets SET balance = balance + $2 WHERE id = $1

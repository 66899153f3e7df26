-- An earlier answer to this request (idempotent replay).
SELECT id FROM reservations WHERE idempotency_key = $1

-- The reservation itself; nothing when the request was already answered.
INSERT INTO reservations (section_id, student_id, idempotency_key)
VALUES ($1, $2, $3)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id

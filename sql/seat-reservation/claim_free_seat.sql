-- skip-locked: the first free seat nobody else is claiming right now.
SELECT id FROM seats WHERE section_id = $1 AND student_id IS NULL LIMIT 1 FOR UPDATE SKIP LOCKED

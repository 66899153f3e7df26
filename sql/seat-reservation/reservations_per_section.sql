-- Invariants: each section's capacity, taken counter and reservations held.
SELECT s.id, s.capacity, s.taken, count(r.id)::int AS held
FROM sections s LEFT JOIN reservations r ON r.section_id = s.id
GROUP BY s.id

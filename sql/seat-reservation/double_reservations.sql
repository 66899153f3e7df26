-- Invariants: students holding two reservations in one section.
SELECT count(*)
FROM (SELECT 1 FROM reservations GROUP BY section_id, student_id HAVING count(*) > 1) d

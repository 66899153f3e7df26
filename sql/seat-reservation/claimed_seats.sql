-- Invariants (skip-locked): seats claimed against reservations made.
SELECT count(*) FILTER (WHERE s.student_id IS NOT NULL),
       (SELECT count(*) FROM reservations)
FROM seats s

-- skip-locked: the claimed seat becomes the student's.
UPDATE seats SET student_id = $2 WHERE id = $1

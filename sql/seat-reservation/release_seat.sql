-- Gives a seat back (a replay found after the seat was taken).
UPDATE sections SET taken = taken - 1 WHERE id = $1

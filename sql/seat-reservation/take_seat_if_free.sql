-- conditional-update: take a seat only while one is free.
UPDATE sections SET taken = taken + 1 WHERE id = $1 AND taken < capacity RETURNING taken

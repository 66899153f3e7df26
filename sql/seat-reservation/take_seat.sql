-- for-update and redis-gate: count the seat taken.
UPDATE sections SET taken = taken + 1 WHERE id = $1

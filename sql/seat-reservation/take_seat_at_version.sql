-- optimistic: take a seat only if nobody changed the section since it was read.
UPDATE sections SET taken = taken + 1, version = version + 1 WHERE id = $1 AND version = $2 AND taken < capacity

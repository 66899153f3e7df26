-- for-update: read the section under a row lock.
SELECT capacity - taken FROM sections WHERE id = $1 FOR UPDATE

-- A database step failing on purpose (22012), to exercise compensation.
SELECT 1 / 0

-- pgbench's built-in select-only script (`pgbench -b select-only`), written
-- out: one primary-key read, no transaction block.
\set aid random(1, 100000 * :scale)
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;

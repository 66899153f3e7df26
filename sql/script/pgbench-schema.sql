-- pgbench's standard tables as `pgbench -i` (PostgreSQL 15) creates them:
-- same columns, types and fillfactor. {aid_type} is int, or bigint from
-- scale 20000 on, as pgbench switches. Primary keys come after the data
-- (pgbench-seed.sql), as pgbench adds them.
CREATE TABLE pgbench_history (tid int, bid int, aid {aid_type}, delta int, mtime timestamp, filler char(22));
CREATE TABLE pgbench_tellers (tid int NOT NULL, bid int, tbalance int, filler char(84)) WITH (fillfactor = 100);
CREATE TABLE pgbench_accounts (aid {aid_type} NOT NULL, bid int, abalance int, filler char(84)) WITH (fillfactor = 100);
CREATE TABLE pgbench_branches (bid int NOT NULL, bbalance int, filler char(88)) WITH (fillfactor = 100);

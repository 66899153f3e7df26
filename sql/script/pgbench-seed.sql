-- The rows of `pgbench -i -s {scale}`, generated server-side as
-- `pgbench -i -I dtGvp` does: 1 branch, 10 tellers and 100,000 accounts
-- per unit of scale, balances 0, accounts' filler blank, then the primary keys.
INSERT INTO pgbench_branches (bid, bbalance)
SELECT bid, 0 FROM generate_series(1, {branches}) AS bid;
INSERT INTO pgbench_tellers (tid, bid, tbalance)
SELECT tid, (tid - 1) / 10 + 1, 0 FROM generate_series(1, {tellers}) AS tid;
INSERT INTO pgbench_accounts (aid, bid, abalance, filler)
SELECT aid, (aid - 1) / 100000 + 1, 0, '' FROM generate_series(1, {accounts}) AS aid;
ALTER TABLE pgbench_branches ADD PRIMARY KEY (bid);
ALTER TABLE pgbench_tellers ADD PRIMARY KEY (tid);
ALTER TABLE pgbench_accounts ADD PRIMARY KEY (aid);

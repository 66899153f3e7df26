-- Before a cell: whether the data has pgbench's tables (then :scale is their branch count).
SELECT to_regclass('pgbench_branches') IS NOT NULL

-- Before a cell: :scale, as pgbench reads it for its built-in scripts.
SELECT count(*) FROM pgbench_branches

-- A transaction that only waits on the server: a known service time.
SELECT pg_sleep($1::int / 1000000.0)

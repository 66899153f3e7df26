-- noop: the cheapest round trip there is.
SELECT 1

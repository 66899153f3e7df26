-- redis-gate, before a cell: each section's free seats, the gate's counters.
SELECT id, capacity - taken FROM sections

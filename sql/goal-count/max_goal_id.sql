-- Before a cell: the highest goal id, the range clients draw goals from.
SELECT coalesce(max(id), 0) FROM user_goals

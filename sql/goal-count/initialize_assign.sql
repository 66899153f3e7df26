-- Assigns $3 more goals to a user in a challenge (initialize, below the limit).
INSERT INTO user_goals (user_id, challenge_id, goal_kind, target)
SELECT $1, $2, (g % 5)::smallint, 10
FROM generate_series(1, $3::int) AS g

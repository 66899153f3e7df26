-- A user's latest goals.
SELECT id, challenge_id, goal_kind, target, progress, claimed
FROM user_goals
WHERE user_id = $1
ORDER BY created_at DESC
LIMIT 20

-- GetUserGoalCount: the query behind the "too many clients" incident.
SELECT count(*) FROM user_goals WHERE user_id = $1 AND challenge_id = $2

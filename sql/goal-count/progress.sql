-- Progress of one goal.
SELECT progress, target, claimed FROM user_goals WHERE id = $1

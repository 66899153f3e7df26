-- Claims a goal's reward once.
UPDATE user_goals SET claimed = true, progress = target WHERE id = $1 AND NOT claimed

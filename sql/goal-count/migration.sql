-- The fix for the "too many clients" incident's slow count: an index on
-- (user_id, challenge_id), built without blocking writes. The count then
-- becomes an index-only scan once VACUUM has set the visibility map.
CREATE INDEX CONCURRENTLY user_goals_user_challenge ON user_goals (user_id, challenge_id);

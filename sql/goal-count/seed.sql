-- Placeholders {users}, {goals_per_user}, {challenges}, {goal_limit} are
-- filled from workloads/goal-count.toml and --scale.
INSERT INTO challenges (id, name, goal_limit)
SELECT c, 'challenge ' || c, {goal_limit}
FROM generate_series(1, {challenges}) AS c;

-- Goals spread over challenges by a fixed hash, so a (user, challenge) pair
-- holds none, one or a few goals, as in the service.
INSERT INTO user_goals (user_id, challenge_id, goal_kind, target, progress, claimed, created_at)
SELECT u,
       1 + ((u * 31 + g * 17) % {challenges}),
       (g % 5)::smallint,
       10,
       (random() * 10)::int,
       random() < 0.3,
       now() - random() * interval '30 days'
FROM generate_series(1, {users}) AS u,
     generate_series(1, {goals_per_user}) AS g;

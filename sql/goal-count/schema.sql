-- goal-count: a challenge service's goals per user.
-- Deliberately no index on (user_id, challenge_id): every initialize counts a
-- user's goals with a sequential scan until the migration adds one.
CREATE TABLE challenges (
    id         int PRIMARY KEY,
    name       text NOT NULL,
    goal_limit int NOT NULL
);

CREATE TABLE user_goals (
    id           bigserial PRIMARY KEY,
    user_id      int NOT NULL,
    challenge_id int NOT NULL REFERENCES challenges (id),
    goal_kind    smallint NOT NULL,
    target       int NOT NULL,
    progress     int NOT NULL DEFAULT 0,
    claimed      boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- seat-reservation: sections with a capacity, and who holds a seat.
-- No CHECK (taken <= capacity): an oversold section must be detectable by
-- the invariant check, so only the strategies enforce capacity.
CREATE TABLE sections (
    id       int PRIMARY KEY,
    capacity int NOT NULL,
    taken    int NOT NULL DEFAULT 0,
    version  bigint NOT NULL DEFAULT 0
);

-- One row per seat, for the skip-locked strategy.
CREATE TABLE seats (
    id         bigserial PRIMARY KEY,
    section_id int NOT NULL REFERENCES sections (id),
    student_id int
);
CREATE INDEX seats_free ON seats (section_id) WHERE student_id IS NULL;

-- The idempotency key is the request itself (student and section), so a
-- replayed request finds its earlier answer instead of a second seat.
CREATE TABLE reservations (
    id              bigserial PRIMARY KEY,
    section_id      int NOT NULL REFERENCES sections (id),
    student_id      int NOT NULL,
    idempotency_key text NOT NULL UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now()
);

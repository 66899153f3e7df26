-- Placeholders {sections} and {capacity} are filled from
-- workloads/seat-reservation.toml and --scale.
INSERT INTO sections (id, capacity)
SELECT s, {capacity} FROM generate_series(1, {sections}) AS s;

INSERT INTO seats (section_id)
SELECT s FROM generate_series(1, {sections}) AS s, generate_series(1, {capacity}) AS n;

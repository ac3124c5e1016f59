-- +goose Up
-- Counts how often this migration ran: must be once however many replicas race.
INSERT INTO runs (n) VALUES (2);
CREATE TABLE items (id bigserial PRIMARY KEY, name text NOT NULL UNIQUE);
-- slow enough that racing migrators overlap
SELECT pg_sleep(0.5);

-- +goose Down
DROP TABLE items;
DELETE FROM runs WHERE n = 2;

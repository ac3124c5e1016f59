-- +goose Up
CREATE TABLE runs (n int NOT NULL);

-- +goose Down
DROP TABLE runs;

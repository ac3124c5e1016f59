-- +goose Up
-- The name the uploader's file had, for display only (never a path).
ALTER TABLE media ADD COLUMN filename text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE media DROP COLUMN filename;

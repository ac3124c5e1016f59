-- +goose Up
-- The token a rotation issued, sealed with a key only the rotated token
-- derives: a refresh that loses a race with another refresh of the same
-- token (tabs restored together) gets that same token back within a short
-- grace window instead of revoking the session. The database alone cannot
-- open it, since it keeps only hashes of tokens.
ALTER TABLE refresh_tokens ADD COLUMN successor_sealed bytea;

-- +goose Down
ALTER TABLE refresh_tokens DROP COLUMN successor_sealed;

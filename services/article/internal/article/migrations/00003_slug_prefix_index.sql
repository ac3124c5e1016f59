-- +goose Up
-- freeSlug looks up "<base>" and "<base>-N" by byte range: this index serves
-- it in every collation, so creating an article does not scan the archive.
CREATE INDEX articles_slug_bytes ON articles (slug COLLATE "C");

-- +goose Down
DROP INDEX articles_slug_bytes;

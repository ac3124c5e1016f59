-- +goose Up
-- One row per (uploader, content): the same bytes uploaded by two people are
-- two rows sharing one file; the same person uploading them again gets the
-- existing row back.
CREATE TABLE media (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    hash        text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
    ext         text NOT NULL CHECK (ext IN ('jpg', 'png', 'gif', 'webp', 'avif')),
    content_type text NOT NULL,
    size        bigint NOT NULL CHECK (size > 0),
    width       integer NOT NULL CHECK (width > 0),
    height      integer NOT NULL CHECK (height > 0),
    uploader_id text NOT NULL CHECK (uploader_id <> ''),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (uploader_id, hash)
);
CREATE INDEX media_hash_idx ON media (hash);
CREATE INDEX media_created_idx ON media (created_at DESC, id DESC);
CREATE INDEX media_uploader_created_idx ON media (uploader_id, created_at DESC, id DESC);

-- +goose Down
DROP TABLE media;

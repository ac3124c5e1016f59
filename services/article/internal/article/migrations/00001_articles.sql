-- +goose Up
CREATE TABLE articles (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug         text NOT NULL,
    -- true while the slug follows the title (a draft whose slug nobody set by hand)
    slug_auto    boolean NOT NULL DEFAULT true,
    title        text NOT NULL,
    summary      text NOT NULL DEFAULT '',
    body_markdown text NOT NULL DEFAULT '',
    cover_media  text NOT NULL DEFAULT '',
    status       text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'published')),
    author_id    text NOT NULL,
    author_name  text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    -- list order: newest first by publication, drafts by creation
    sort_at      timestamptz GENERATED ALWAYS AS (COALESCE(published_at, created_at)) STORED,
    CONSTRAINT articles_slug_key UNIQUE (slug)
);
CREATE INDEX articles_sort ON articles (sort_at DESC, id DESC);
CREATE INDEX articles_status_sort ON articles (status, sort_at DESC, id DESC);
CREATE INDEX articles_author_sort ON articles (author_id, sort_at DESC, id DESC);

-- +goose Down
DROP TABLE articles;

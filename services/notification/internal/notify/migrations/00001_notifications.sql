-- +goose Up
-- One row per article event we decided to notify about. The primary key on
-- event_id is the exactly-once guard: a redelivered event finds its row and
-- sends nothing.
CREATE TABLE notifications (
    event_id        uuid PRIMARY KEY,
    event_type      text NOT NULL,
    article_id      text NOT NULL,
    slug            text NOT NULL,
    title           text NOT NULL,
    author_name     text NOT NULL,
    url             text NOT NULL,
    recipient       text NOT NULL,
    occurred_at     timestamptz NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    -- pending rows are (re)tried from this time; set ahead while a sender owns the row
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    channel         text,
    provider_id     text,
    sent_at         timestamptz
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';

-- Messages we gave up on (undecodable, or failing past the delivery limit).
CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    stream_seq  bigint NOT NULL,
    subject     text NOT NULL,
    msg_id      text NOT NULL DEFAULT '',
    data        bytea NOT NULL,
    error       text NOT NULL,
    deliveries  bigint NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_seq)
);

-- +goose Down
DROP TABLE dead_letters;
DROP TABLE notifications;

-- +goose Up
-- Domain events written in the same transaction as the change they describe;
-- the relay publishes them to JetStream and stamps sent_at after the ack.
CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    event_id   uuid NOT NULL UNIQUE,
    subject    text NOT NULL,
    payload    bytea NOT NULL,
    -- W3C trace context of the request that caused the event
    headers    jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz,
    attempts   integer NOT NULL DEFAULT 0,
    last_error text
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;

-- Wake the relay at commit time (NOTIFY is transactional), once per statement.
-- +goose StatementBegin
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- +goose Down
DROP TABLE outbox;
DROP FUNCTION outbox_notify();

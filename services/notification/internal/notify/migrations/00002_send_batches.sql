-- +goose Up
-- E-mails go to Resend in batches (POST /emails/batch, up to 100 at once),
-- and a batch is the unit of sending and retrying. Its key is the request's
-- Idempotency-Key; a retry sends exactly the same e-mails under the same key,
-- so a batch Resend accepted just before a crash is not delivered twice.
CREATE TABLE send_batches (
    key             text PRIMARY KEY,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    -- (re)tried from this time; set ahead while a sender owns the batch
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX send_batches_due ON send_batches (next_attempt_at) WHERE status = 'pending';

-- Rows recorded before batching keep their key, the event id, and go out
-- one per request exactly as before.
ALTER TABLE notifications ADD COLUMN send_key text;
UPDATE notifications SET send_key = event_id::text;
INSERT INTO send_batches (key, status, attempts, next_attempt_at, last_error, created_at)
    SELECT event_id::text, status, attempts, next_attempt_at, last_error, received_at FROM notifications;
ALTER TABLE notifications ALTER COLUMN send_key SET NOT NULL;
CREATE INDEX notifications_send_key ON notifications (send_key);
DROP INDEX notifications_due;
ALTER TABLE notifications DROP COLUMN next_attempt_at;

-- +goose Down
ALTER TABLE notifications ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now();
UPDATE notifications n SET next_attempt_at = b.next_attempt_at FROM send_batches b WHERE b.key = n.send_key;
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';
ALTER TABLE notifications DROP COLUMN send_key;
DROP TABLE send_batches;

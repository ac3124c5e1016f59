package notify

import (
	"context"
	"embed"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"pressroom.dev/kit/pg"
)

// Migrations holds notification_db's schema (goose files).
//
//go:embed migrations/*.sql
var Migrations embed.FS

// notification is one row of the notifications table.
type notification struct {
	EventID    string
	EventType  string
	ArticleID  string
	Slug       string
	Title      string
	AuthorName string
	URL        string
	Recipient  string
	OccurredAt time.Time
}

// store keeps every notification ever sent, so its statements over the
// growing tables must not settle on plans made while they were empty
// (TestSendingDoesNotScanAGrownLog): markSent, run for every batch, keeps
// one plan per connection under pg.IndexPlans; the rarer statements are
// planned afresh each run (pg.FreshPlan); record only inserts, which
// leaves the planner no choice to get wrong.
type store struct{ pool *pgxpool.Pool }

// record inserts the events not seen before, each with its send batch's
// key (sendKeys is parallel to ns), creates those batches claimed by the
// caller until claim has passed, and returns the inserted event ids with
// their keys. One statement, one transaction: the event id is recorded
// together with the decision to send.
func (s *store) record(ctx context.Context, ns []*notification, sendKeys []string, claim time.Duration) (map[string]string, error) {
	n := len(ns)
	ids, types, arts, slugs, titles, authors, urls, rcpts := make([]string, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	occurred := make([]time.Time, n)
	for i, x := range ns {
		ids[i], types[i], arts[i], slugs[i], titles[i], authors[i], urls[i], rcpts[i] =
			x.EventID, x.EventType, x.ArticleID, x.Slug, x.Title, x.AuthorName, x.URL, x.Recipient
		occurred[i] = x.OccurredAt
	}
	rows, err := s.pool.Query(ctx, `WITH fresh AS (
			INSERT INTO notifications
				(event_id, event_type, article_id, slug, title, author_name, url, recipient, occurred_at, send_key)
			SELECT e::uuid, t, a, s, ti, au, u, r, o, k
			FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
				$9::timestamptz[], $10::text[]) AS x(e, t, a, s, ti, au, u, r, o, k)
			ON CONFLICT (event_id) DO NOTHING
			RETURNING event_id::text, send_key),
		batches AS (
			INSERT INTO send_batches (key, next_attempt_at)
			SELECT DISTINCT send_key, now() + $11::bigint * interval '1 microsecond' FROM fresh)
		SELECT event_id, send_key FROM fresh`,
		ids, types, arts, slugs, titles, authors, urls, rcpts, occurred, sendKeys, claim.Microseconds())
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	var id, key string
	_, err = pgx.ForEachRow(rows, []any{&id, &key}, func() error {
		out[id] = key
		return nil
	})
	return out, err
}

// sendBatch is the notifications sent in one request under one key.
type sendBatch struct {
	Key      string
	Attempts int
	Items    []*notification   // by event id, so a retry repeats the same request
	traces   []context.Context // each item's consumer span; none on a retry
}

// claimDue takes pending batches whose retry time has come (or whose sender
// died holding them), claims them for another lease and returns them whole.
func (s *store) claimDue(ctx context.Context, limit int, claim time.Duration) ([]*sendBatch, error) {
	rows, err := s.pool.Query(ctx, `WITH b AS (
			UPDATE send_batches SET next_attempt_at = now() + $2::bigint * interval '1 microsecond'
			WHERE key IN (SELECT key FROM send_batches
				WHERE status = 'pending' AND next_attempt_at <= now()
				ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
			RETURNING key, attempts)
		SELECT b.key, b.attempts, n.event_id::text, n.event_type, n.article_id, n.slug, n.title, n.author_name,
			n.url, n.recipient, n.occurred_at
		FROM b JOIN notifications n ON n.send_key = b.key AND n.status = 'pending'
		ORDER BY b.key, n.event_id`,
		pg.FreshPlan, limit, claim.Microseconds())
	if err != nil {
		return nil, err
	}
	var out []*sendBatch
	var key string
	var attempts int
	var x notification
	_, err = pgx.ForEachRow(rows, []any{&key, &attempts, &x.EventID, &x.EventType, &x.ArticleID, &x.Slug, &x.Title,
		&x.AuthorName, &x.URL, &x.Recipient, &x.OccurredAt}, func() error {
		if len(out) == 0 || out[len(out)-1].Key != key {
			out = append(out, &sendBatch{Key: key, Attempts: attempts})
		}
		b := out[len(out)-1]
		item := x
		b.Items = append(b.Items, &item)
		return nil
	})
	return out, err
}

// markSent stamps a batch and its rows delivered; providerIDs is parallel to ids.
func (s *store) markSent(ctx context.Context, key string, ids, providerIDs []string, channel string) error {
	_, err := pg.ExecIndexed(ctx, s.pool, `WITH b AS (
			UPDATE send_batches SET status = 'sent', attempts = attempts + 1, last_error = NULL
			WHERE key = $4 AND status = 'pending')
		UPDATE notifications AS n SET status = 'sent', sent_at = now(),
			attempts = n.attempts + 1, provider_id = x.p, channel = $3, last_error = NULL
		FROM unnest($1::text[], $2::text[]) AS x(e, p)
		WHERE n.event_id = x.e::uuid AND n.status = 'pending'`, ids, providerIDs, channel, key)
	return err
}

// markFailed records a failed attempt of a batch: retried after retryIn, or
// given up (status failed) when final.
func (s *store) markFailed(ctx context.Context, key, msg string, final bool, retryIn time.Duration) error {
	_, err := s.pool.Exec(ctx, `WITH b AS (
			UPDATE send_batches SET attempts = attempts + 1, last_error = $2,
				status = CASE WHEN $3 THEN 'failed' ELSE status END,
				next_attempt_at = now() + $4::bigint * interval '1 microsecond'
			WHERE key = $1 AND status = 'pending')
		UPDATE notifications SET attempts = attempts + 1, last_error = $2,
			status = CASE WHEN $3 THEN 'failed' ELSE status END
		WHERE send_key = $1 AND status = 'pending'`, pg.FreshPlan, key, msg, final, retryIn.Microseconds())
	return err
}

// deadLetter records a message we will not process.
func (s *store) deadLetter(ctx context.Context, seq uint64, subject, msgID string, data []byte, reason string, deliveries uint64) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO dead_letters (stream_seq, subject, msg_id, data, error, deliveries)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (stream_seq) DO NOTHING`,
		int64(seq), subject, msgID, data, reason, int64(deliveries))
	return err
}

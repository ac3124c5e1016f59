package notify

import (
	"context"
	"embed"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
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
	Attempts   int
}

type store struct{ pool *pgxpool.Pool }

// record inserts the events not seen before, each claimed by the caller
// until claimUntil, and returns the ids it inserted. One statement, one
// transaction: the event id is recorded together with the decision to send.
func (s *store) record(ctx context.Context, ns []*notification, claim time.Duration) (map[string]bool, error) {
	n := len(ns)
	ids, types, arts, slugs, titles, authors, urls, rcpts := make([]string, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	occurred := make([]time.Time, n)
	for i, x := range ns {
		ids[i], types[i], arts[i], slugs[i], titles[i], authors[i], urls[i], rcpts[i] =
			x.EventID, x.EventType, x.ArticleID, x.Slug, x.Title, x.AuthorName, x.URL, x.Recipient
		occurred[i] = x.OccurredAt
	}
	rows, err := s.pool.Query(ctx, `INSERT INTO notifications
		(event_id, event_type, article_id, slug, title, author_name, url, recipient, occurred_at, next_attempt_at)
		SELECT e::uuid, t, a, s, ti, au, u, r, o, now() + $10::bigint * interval '1 microsecond'
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[])
			AS x(e, t, a, s, ti, au, u, r, o)
		ON CONFLICT (event_id) DO NOTHING
		RETURNING event_id::text`,
		ids, types, arts, slugs, titles, authors, urls, rcpts, occurred, claim.Microseconds())
	if err != nil {
		return nil, err
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(got))
	for _, id := range got {
		out[id] = true
	}
	return out, nil
}

// claimDue takes pending rows whose retry time has come (or whose sender
// died holding them) and claims them for another lease.
func (s *store) claimDue(ctx context.Context, limit int, claim time.Duration) ([]*notification, error) {
	rows, err := s.pool.Query(ctx, `UPDATE notifications SET next_attempt_at = now() + $2::bigint * interval '1 microsecond'
		WHERE event_id IN (SELECT event_id FROM notifications
			WHERE status = 'pending' AND next_attempt_at <= now()
			ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
		RETURNING event_id::text, event_type, article_id, slug, title, author_name, url, recipient, occurred_at, attempts`,
		limit, claim.Microseconds())
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*notification, error) {
		var n notification
		err := r.Scan(&n.EventID, &n.EventType, &n.ArticleID, &n.Slug, &n.Title, &n.AuthorName, &n.URL,
			&n.Recipient, &n.OccurredAt, &n.Attempts)
		return &n, err
	})
}

// markSent stamps rows delivered; providerIDs is parallel to ids.
func (s *store) markSent(ctx context.Context, ids, providerIDs []string, channel string) error {
	_, err := s.pool.Exec(ctx, `UPDATE notifications AS n SET status = 'sent', sent_at = now(),
		attempts = n.attempts + 1, provider_id = x.p, channel = $3, last_error = NULL
		FROM unnest($1::text[], $2::text[]) AS x(e, p)
		WHERE n.event_id = x.e::uuid AND n.status = 'pending'`, ids, providerIDs, channel)
	return err
}

// markFailed records a failed attempt: retried at retryAt, or given up
// (status failed) when final.
func (s *store) markFailed(ctx context.Context, id, msg string, final bool, retryIn time.Duration) error {
	_, err := s.pool.Exec(ctx, `UPDATE notifications SET attempts = attempts + 1, last_error = $2,
		status = CASE WHEN $3 THEN 'failed' ELSE status END,
		next_attempt_at = now() + $4::bigint * interval '1 microsecond'
		WHERE event_id = $1 AND status = 'pending'`, id, msg, final, retryIn.Microseconds())
	return err
}

// deadLetter records a message we will not process.
func (s *store) deadLetter(ctx context.Context, seq uint64, subject, msgID string, data []byte, reason string, deliveries uint64) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO dead_letters (stream_seq, subject, msg_id, data, error, deliveries)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (stream_seq) DO NOTHING`,
		int64(seq), subject, msgID, data, reason, int64(deliveries))
	return err
}

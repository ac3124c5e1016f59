package notify

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"pressroom.dev/kit/pg"
	"pressroom.dev/kit/testkit"
)

// TestSendingDoesNotScanAGrownLog: the store's statements are first run
// while notifications is nearly empty, and the table then keeps every
// e-mail ever sent. Recording, claiming and stamping a batch must still go
// through indexes: a plan fixed while the table was empty would read the
// whole log for every batch.
func TestSendingDoesNotScanAGrownLog(t *testing.T) {
	ctx := context.Background()
	dsn := testkit.Postgres(t) + "&pool_max_conns=1"
	pool := openPool(t, dsn)
	if err := pg.Migrate(ctx, pool, Migrations); err != nil {
		t.Fatal(err)
	}
	s := &store{pool: openPool(t, dsn)}
	batch := func(round, n int) {
		t.Helper()
		key := fmt.Sprintf("batch-%d", round)
		ns, keys, ids, provider := make([]*notification, n), make([]string, n), make([]string, n), make([]string, n)
		for i := range ns {
			ids[i], keys[i], provider[i] = uuid.NewString(), key, fmt.Sprintf("re_%d_%d", round, i)
			ns[i] = &notification{EventID: ids[i], EventType: "articles.published", ArticleID: "a", Slug: "s",
				Title: "t", AuthorName: "x", URL: "https://example.com/articles/s", Recipient: testRecipient, OccurredAt: time.Now()}
		}
		if got, err := s.record(ctx, ns, keys, -time.Second); err != nil || len(got) != n {
			t.Fatalf("record: %d recorded, %v; want %d", len(got), err, n)
		}
		if due, err := s.claimDue(ctx, 10, time.Minute); err != nil || len(due) != 1 || len(due[0].Items) != n {
			t.Fatalf("claimDue: %v, %v; want the one batch of %d", due, err, n)
		}
		if err := s.markSent(ctx, key, ids, provider, "resend"); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 8 { // enough runs for Postgres to settle on each statement's plan
		batch(round, 12)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO notifications (event_id, event_type, article_id, slug, title, author_name,
			url, recipient, occurred_at, send_key, status, sent_at)
		SELECT gen_random_uuid(), 'articles.published', 'a', 's', 't', 'x', 'u', 'r', now(), 'old-' || (g / 50), 'sent', now()
		FROM generate_series(1, 20000) g`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO send_batches (key, status, attempts, next_attempt_at)
		SELECT DISTINCT send_key, 'sent', 1, now() FROM notifications WHERE send_key LIKE 'old-%'`); err != nil {
		t.Fatal(err)
	}
	tables := []string{"notifications", "send_batches"}
	var before []testkit.Scans
	for _, table := range tables {
		before = append(before, testkit.TableScans(t, table, pool, s.pool))
	}
	batch(100, 5)
	for i, table := range tables {
		after := testkit.TableScans(t, table, pool, s.pool)
		if after.Seq != before[i].Seq {
			t.Errorf("sending 5 e-mails next to 20,000 sent ones: %d sequential scans of %s reading %d rows, %d index scans; want index scans only",
				after.Seq-before[i].Seq, table, after.SeqRows-before[i].SeqRows, after.Index-before[i].Index)
		}
	}
}

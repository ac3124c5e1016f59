package article

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"pressroom.dev/kit/authz"
	"pressroom.dev/kit/pg"
)

// drafts creates n drafts by c.
func (e *env) drafts(t *testing.T, c caller, n int, prefix string) []*Article {
	t.Helper()
	out := make([]*Article, n)
	for i := range out {
		a, err := e.svc.Create(context.Background(), c.principal(), Fields{Title: ptr(fmt.Sprintf("%s %d", prefix, i))})
		if err != nil {
			t.Fatal(err)
		}
		out[i] = a
	}
	return out
}

// concurrently runs f(i) for i in [0, n) all at once and returns the errors.
func concurrently(n int, f func(i int) error) []error {
	errs := make([]error, n)
	var start, wg sync.WaitGroup
	start.Add(1)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start.Wait()
			errs[i] = f(i)
		}()
	}
	start.Done()
	wg.Wait()
	return errs
}

// TestConcurrentPublishesShareTransactions: a burst of publishes is written
// in fewer transactions than publishes, and each article still gets exactly
// its row change and one event, committed together.
func TestConcurrentPublishesShareTransactions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	as := e.drafts(t, authorA, 80, "Burst")
	errs := concurrently(len(as), func(i int) error {
		got, err := e.svc.Publish(ctx, authorA.principal(), as[i].ID)
		if err == nil && (got.ID != as[i].ID || got.Status != StatusPublished || got.PublishedAt == nil) {
			err = fmt.Errorf("publish returned %+v", got)
		}
		return err
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	if n := e.outboxCount(t, "subject = $1", SubjectPublished); n != len(as) {
		t.Fatalf("%d events for %d publishes", n, len(as))
	}
	var perArticle, txs int
	err := e.pool.QueryRow(ctx, `SELECT count(DISTINCT convert_from(payload, 'UTF8')::jsonb->>'articleId'), count(DISTINCT xmin::text) FROM outbox`).Scan(&perArticle, &txs)
	if err != nil {
		t.Fatal(err)
	}
	if perArticle != len(as) {
		t.Fatalf("events name %d distinct articles, want %d", perArticle, len(as))
	}
	// Each event row was inserted by the transaction that changed its article.
	var mismatched int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM outbox o JOIN articles a ON a.id = (convert_from(o.payload, 'UTF8')::jsonb->>'articleId')::uuid
		WHERE a.xmin::text <> o.xmin::text`).Scan(&mismatched); err != nil {
		t.Fatal(err)
	}
	if mismatched != 0 {
		t.Fatalf("%d events were not written in their article's transaction", mismatched)
	}
	if txs >= len(as) {
		t.Fatalf("%d publishes took %d transactions: nothing was shared", len(as), txs)
	}
	t.Logf("%d concurrent publishes in %d transactions", len(as), txs)
}

// TestConcurrentPublishesOfOneArticleWriteOneEvent: the same article
// published by many callers at once changes once; the rest are no-ops.
func TestConcurrentPublishesOfOneArticleWriteOneEvent(t *testing.T) {
	e := newEnv(t)
	a := e.drafts(t, authorA, 1, "Popular")[0]
	errs := concurrently(20, func(int) error {
		_, err := e.svc.Publish(context.Background(), authorA.principal(), a.ID)
		return err
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := e.outboxCount(t, "true"); n != 1 {
		t.Fatalf("%d events for one article published 20 times at once, want 1", n)
	}
}

// TestRefusalsInAGroupStayWithTheirCaller: callers refused (another
// author unpublishing, an unknown id) fail alone, each with its own answer;
// everyone else's change commits.
func TestRefusalsInAGroupStayWithTheirCaller(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	own := e.drafts(t, authorA, 30, "Own")
	live := e.drafts(t, authorA, 10, "Live")
	for _, a := range live {
		if _, err := e.svc.Publish(ctx, authorA.principal(), a.ID); err != nil {
			t.Fatal(err)
		}
	}
	const missing = "00000000-0000-4000-8000-000000000404"
	type call struct {
		who  caller
		id   string
		op   func(context.Context, authz.Principal, string) (*Article, error)
		want Kind // 0 = success
	}
	var calls []call
	for i := range own {
		calls = append(calls, call{authorA, own[i].ID, e.svc.Publish, 0})
		if i < len(live) {
			calls = append(calls, call{authorB, live[i].ID, e.svc.Unpublish, KindPermission})
		}
		if i%10 == 0 {
			calls = append(calls, call{authorA, missing, e.svc.Publish, KindNotFound})
		}
	}
	errs := concurrently(len(calls), func(i int) error {
		_, err := calls[i].op(ctx, calls[i].who.principal(), calls[i].id)
		return err
	})
	for i, c := range calls {
		var ae *Error
		switch {
		case c.want == 0 && errs[i] != nil:
			t.Errorf("own draft %s: %v", c.id, errs[i])
		case c.want != 0 && (!errors.As(errs[i], &ae) || ae.Kind != c.want):
			t.Errorf("%s by %s: got %v, want an error of kind %v", c.id, c.who.name, errs[i], c.want)
		}
	}
	if n := e.outboxCount(t, "subject = $1", SubjectPublished); n != len(own)+len(live) {
		t.Fatalf("%d publish events, want %d", n, len(own)+len(live))
	}
	if n := e.outboxCount(t, "subject = $1", SubjectUnpublished); n != 0 {
		t.Fatalf("%d unpublish events from refused callers", n)
	}
}

// TestAFailingRowDoesNotSinkItsGroup: when the shared transaction fails
// because of one article, every change is retried alone: the others commit
// and only that caller sees the error.
func TestAFailingRowDoesNotSinkItsGroup(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	as := e.drafts(t, authorA, 40, "Batch")
	poison := e.drafts(t, authorA, 1, "Poison")[0]
	_, err := e.pool.Exec(ctx, `
		CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF convert_from(NEW.payload, 'UTF8')::jsonb->>'title' = 'Poison 0' THEN RAISE EXCEPTION 'injected row failure'; END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER refuse_poison BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION refuse_poison();`)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{poison.ID}
	for _, a := range as {
		ids = append(ids, a.ID)
	}
	errs := concurrently(len(ids), func(i int) error {
		_, err := e.svc.Publish(ctx, authorA.principal(), ids[i])
		return err
	})
	if errs[0] == nil || !strings.Contains(errs[0].Error(), "injected row failure") {
		t.Fatalf("the poisoned publish: %v, want the injected failure", errs[0])
	}
	if err := errors.Join(errs[1:]...); err != nil {
		t.Fatalf("publishes sharing a group with the poisoned one failed: %v", err)
	}
	if n := e.outboxCount(t, "true"); n != len(as) {
		t.Fatalf("%d events, want %d", n, len(as))
	}
	got, err := e.svc.Get(ctx, authorA.principal(), poison.ID, "")
	if err != nil || got.Status != StatusDraft {
		t.Fatalf("the poisoned article: %+v %v, want it still a draft", got, err)
	}
}

// TestAWithdrawnChangeDoesNothing: a caller that gives up while queued is
// answered at once and its change is never made.
func TestAWithdrawnChangeDoesNothing(t *testing.T) {
	e := newEnv(t)
	a := e.drafts(t, authorA, 1, "Withdrawn")[0]
	s := e.svc.store
	// Hold the only worker slot so the change stays queued.
	s.changes.mu.Lock()
	s.changes.workers = s.changes.maxWorkers
	s.changes.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := e.svc.Publish(ctx, authorA.principal(), a.ID); done <- err }()
	for {
		s.changes.mu.Lock()
		queued := len(s.changes.queue)
		s.changes.mu.Unlock()
		if queued == 1 {
			break
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("withdrawn publish: %v, want context.Canceled", err)
	}
	s.changes.mu.Lock()
	left := len(s.changes.queue)
	s.changes.workers = 0
	s.changes.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d changes left queued", left)
	}
	if n := e.outboxCount(t, "true"); n != 0 {
		t.Fatalf("a withdrawn publish wrote %d events", n)
	}
}

// TestALockedRowStallsOnlyItsGroup: while the running group waits on a row
// lock, publishes of other articles queue up; once more than a full group
// is waiting, a second worker writes them.
func TestALockedRowStallsOnlyItsGroup(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	as := e.drafts(t, authorA, maxGroup+2, "Locked")
	locked, others := as[0], as[1:]
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if _, err := tx.Exec(ctx, `SELECT 1 FROM articles WHERE id = $1 FOR UPDATE`, locked.ID); err != nil {
		t.Fatal(err)
	}
	lockedDone := make(chan error, 1)
	go func() { _, err := e.svc.Publish(ctx, authorA.principal(), locked.ID); lockedDone <- err }()
	s := e.svc.store.changes
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		s.mu.Lock()
		taken := s.workers == 1 && len(s.queue) == 0 // the locked article's change is the first worker's group
		s.mu.Unlock()
		if taken {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no worker took the locked article's change")
		}
	}
	othersDone := make(chan []error, 1)
	go func() {
		othersDone <- concurrently(len(others), func(i int) error {
			_, err := e.svc.Publish(ctx, authorA.principal(), others[i].ID)
			return err
		})
	}()
	select {
	case errs := <-othersDone:
		for i, err := range errs {
			if err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%d publishes of unlocked articles waited behind the locked one for 20s", len(others))
	}
	select {
	case err := <-lockedDone:
		t.Fatalf("the locked article's publish finished (%v) while its row was locked", err)
	default:
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-lockedDone; err != nil {
		t.Fatalf("the locked article's publish after the lock went: %v", err)
	}
	if n := e.outboxCount(t, "subject = $1", SubjectPublished); n != len(as) {
		t.Fatalf("%d events for %d publishes", n, len(as))
	}
}

// TestGroupStatementsUseIndexes: the group statements run with generic
// plans (pg.IndexPlans), which must look articles up by id whether
// the plan was made on a new, empty table or over a large archive.
func TestGroupStatementsUseIndexes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	check := func(when string) {
		t.Helper()
		for _, c := range []struct{ stmt, sql, args string }{
			{"lock_group(uuid[])", lockGroupSQL, "('{00000000-0000-4000-8000-000000000001}')"},
			{"write_group(uuid[], text[], timestamptz[], text[], text[], bytea[], text[])", writeGroupSQL,
				"('{00000000-0000-4000-8000-000000000001}', '{published}', '{2026-01-01}', " +
					"'{00000000-0000-4000-8000-0000000000e1}', '{articles.published}', '{\\x7b7d}', '{\"{}\"}')"},
		} {
			plan := e.genericPlan(t, strings.Join(pg.IndexPlans, "; "), c.stmt, c.sql, c.args)
			if strings.Contains(plan, "Seq Scan on articles") || !strings.Contains(plan, "articles_pkey") {
				t.Errorf("%s, %s: the generic plan does not look articles up by id:\n%s", when, c.stmt, plan)
			}
		}
	}
	check("empty table")
	if _, err := e.pool.Exec(ctx, `INSERT INTO articles (slug, title, author_id)
		SELECT 'archive-' || g, 'Archive ' || g, 'u-x' FROM generate_series(1, 20000) g`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(ctx, `ANALYZE articles`); err != nil {
		t.Fatal(err)
	}
	check("20,000 articles")
}

// TestAPanicFailsOnlyItsGroup: a panic while deciding is every waiting
// caller's error, not the end of the process, and later changes still run.
func TestAPanicFailsOnlyItsGroup(t *testing.T) {
	e := newEnv(t)
	a := e.drafts(t, authorA, 1, "Fine")[0]
	_, err := e.svc.store.changeStatus(context.Background(), a.ID, func(*Article) (*OutboxEvent, error) { panic("boom") })
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("panicking change: %v, want its panic as the error", err)
	}
	if _, err := e.svc.Publish(context.Background(), authorA.principal(), a.ID); err != nil {
		t.Fatalf("the next change: %v", err)
	}
	if n := e.outboxCount(t, "true"); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
}

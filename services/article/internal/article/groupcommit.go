package article

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"pressroom.dev/kit/pg"
)

// Publishing and unpublishing are the write path under load, and each used
// to be a transaction of its own: on a small database most of their cost was
// per transaction (round trips, commit, the outbox NOTIFY that wakes every
// relay), not per article. statusChanges is a group commit: changes that
// arrive while others are being written wait and then share one transaction
// (two round trips for the whole group). Alone, a change runs at once as
// before; each article's row and its outbox event still commit together.
type statusChanges struct {
	store      *Store
	maxWorkers int // groups in flight at once

	mu      sync.Mutex
	queue   []*statusChange
	workers int
}

type statusChange struct {
	ctx    context.Context
	id     string
	decide func(a *Article) (*OutboxEvent, error)
	done   chan struct{}
	a      *Article
	err    error
}

const (
	// maxGroup bounds one transaction's rows (and its locks).
	maxGroup = 64
	// groupTimeout bounds a shared transaction, which no single caller's
	// context may cut short.
	groupTimeout = 30 * time.Second
)

// do queues a change and waits for its result. A caller that gives up before
// its group starts is withdrawn; once started, the change completes.
func (g *statusChanges) do(ctx context.Context, id string, decide func(a *Article) (*OutboxEvent, error)) (*Article, error) {
	c := &statusChange{ctx: ctx, id: id, decide: decide, done: make(chan struct{})}
	g.mu.Lock()
	g.queue = append(g.queue, c)
	// One worker makes the largest groups: changes that arrive while its
	// group is written wait about a millisecond and share the next one. A
	// second worker that started at once mostly ran single-change
	// transactions, each costing about what a whole group does (half of all
	// transactions in the pipeline benchmark held one change). So another
	// worker starts only when more than a full group is waiting per running
	// worker: the load outruns one, or its group is stuck behind a row lock.
	start := g.workers < g.maxWorkers && len(g.queue) > g.workers*maxGroup
	if start {
		g.workers++
	}
	g.mu.Unlock()
	if start {
		go g.work()
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		g.mu.Lock()
		if i := slices.Index(g.queue, c); i >= 0 {
			g.queue = slices.Delete(g.queue, i, i+1)
			g.mu.Unlock()
			return nil, ctx.Err()
		}
		g.mu.Unlock()
		<-c.done
	}
	return c.a, c.err
}

// work runs groups until the queue is empty.
func (g *statusChanges) work() {
	for {
		g.mu.Lock()
		group := g.take()
		if len(group) == 0 {
			g.workers--
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		g.runSafely(group)
		for _, c := range group {
			close(c.done)
		}
	}
}

// runSafely turns a panic into every waiting caller's error: a worker is not
// under the HTTP server's recovery, and a panic here would end the process.
func (g *statusChanges) runSafely(group []*statusChange) {
	defer func() {
		if r := recover(); r != nil {
			err := fmt.Errorf("status change failed: %v", r)
			for _, c := range group {
				c.a, c.err = nil, err
			}
		}
	}()
	g.run(group)
}

// take removes up to maxGroup queued changes, at most one per article: a
// second change of the same article waits for the next group, so it decides
// on the first one's result. Called with mu held.
func (g *statusChanges) take() []*statusChange {
	var group, rest []*statusChange
	seen := map[string]bool{}
	for _, c := range g.queue {
		if len(group) < maxGroup && !seen[c.id] {
			seen[c.id] = true
			group = append(group, c)
		} else {
			rest = append(rest, c)
		}
	}
	g.queue = rest
	return group
}

func (g *statusChanges) run(group []*statusChange) {
	if len(group) == 1 {
		c := group[0]
		c.a, c.err = g.store.changeStatusAlone(c.ctx, c.id, c.decide)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	if err := g.store.changeStatusGroup(ctx, group); err != nil {
		// Nothing of the group committed; a bad row must not fail the rest.
		for _, c := range group {
			c.a, c.err = g.store.changeStatusAlone(c.ctx, c.id, c.decide)
		}
	}
}

// The group statements run with pg.IndexPlans. Postgres kept planning them
// afresh for every group (their arrays' lengths vary); the generic plan,
// index lookups per id, suits every size, and made with sequential scans
// ruled out it stays right as the archive grows (TestGroupStatementsUseIndexes
// checks an empty table and a large one).

// lockGroupSQL locks a group's articles in id order, so that concurrent
// groups cannot deadlock.
const lockGroupSQL = `SELECT ` + columns + ` FROM articles WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE`

// writeGroupSQL writes the changed rows and their events in one statement.
const writeGroupSQL = `WITH u AS (
		UPDATE articles AS a SET status = x.status, published_at = x.published_at, updated_at = now()
		FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS x(id, status, published_at)
		WHERE a.id = x.id RETURNING a.*),
	o AS (INSERT INTO outbox (event_id, subject, payload, headers)
		SELECT e::uuid, s, p, h::jsonb FROM unnest($4::text[], $5::text[], $6::bytea[], $7::text[]) AS y(e, s, p, h))
	SELECT ` + columns + ` FROM u`

// changeStatusGroup is changeStatusAlone for many articles in one
// transaction: lock them all (in id order, so concurrent groups cannot
// deadlock), let each change decide, then update the rows and insert the
// events in one statement. Per-change outcomes (not found, refused, nothing
// to do) are set on the changes; an error means the transaction rolled back.
func (s *Store) changeStatusGroup(ctx context.Context, group []*statusChange) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	done := false
	defer func() {
		if !done {
			_, _ = conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	ids := make([]string, len(group))
	for i, c := range group {
		ids[i] = c.id
	}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	pg.QueueIndexPlans(b)
	b.Queue(lockGroupSQL, ids)
	br := conn.SendBatch(ctx, b)
	for range 1 + len(pg.IndexPlans) {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return err
		}
	}
	rows, err := br.Query()
	if err != nil {
		br.Close()
		return err
	}
	locked, err := pgx.CollectRows(rows, pgx.RowToAddrOfStructByName[Article])
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	byID := make(map[string]*Article, len(locked))
	for _, a := range locked {
		byID[a.ID] = a
	}

	var (
		changed                               []*statusChange
		upIDs, upStatus, evIDs, evSubj, evHdr []string
		upPublished                           []*time.Time
		evPayload                             [][]byte
	)
	for _, c := range group {
		a, ok := byID[c.id]
		if !ok {
			c.err = ErrNoRow
			continue
		}
		ev, err := c.decide(a)
		c.a, c.err = a, err
		if err != nil || ev == nil {
			continue
		}
		hdr, err := json.Marshal(ev.Headers)
		if err != nil {
			return err
		}
		changed = append(changed, c)
		upIDs, upStatus, upPublished = append(upIDs, a.ID), append(upStatus, a.Status), append(upPublished, a.PublishedAt)
		evIDs, evSubj, evPayload, evHdr = append(evIDs, ev.EventID), append(evSubj, ev.Subject), append(evPayload, ev.Payload), append(evHdr, string(hdr))
	}
	b = &pgx.Batch{}
	if len(changed) > 0 {
		b.Queue(writeGroupSQL, upIDs, upStatus, upPublished, evIDs, evSubj, evPayload, evHdr)
	}
	b.Queue("COMMIT")
	br = conn.SendBatch(ctx, b)
	defer br.Close()
	if len(changed) > 0 {
		if rows, err = br.Query(); err != nil {
			return err
		}
		updated, err := pgx.CollectRows(rows, pgx.RowToAddrOfStructByName[Article])
		if err != nil {
			return err
		}
		if len(updated) != len(changed) {
			return errors.New("group status change: not every locked row was updated")
		}
		for _, a := range updated {
			byID[a.ID] = a
		}
	}
	if _, err := br.Exec(); err != nil {
		return err
	}
	done = true
	for _, c := range changed {
		c.a = byID[c.id]
	}
	return nil
}

// Package outbox publishes the article service's domain events. Rows are
// written to the outbox table in the same transaction as the change (see
// package article); the relay here moves them to NATS JetStream.
//
// Replicas: every replica runs a relay. Each batch is claimed with
// SELECT … FOR UPDATE SKIP LOCKED inside a transaction that stays open until
// the JetStream acks are in and the rows are stamped sent_at, so two relays
// never hold the same row. We chose row locking over leader election because
// it needs no extra moving part, keeps every replica useful, and fails over
// instantly (a dead relay's locks vanish with its connection). If a relay
// dies after JetStream acked but before its commit, another relay publishes
// the rows again; the Nats-Msg-Id header (= event id) makes JetStream drop
// that copy within the stream's duplicate window, and consumers are
// idempotent by event id for anything older.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"pressroom.dev/kit/natskit"
	"pressroom.dev/kit/pg"
	"pressroom.dev/kit/telemetry"
)

// StreamName is the stream the relay publishes to (see natskit.ArticlesStreamConfig).
const (
	StreamName    = natskit.ArticlesStream
	notifyChannel = "outbox"
)

// Options tune the relay; zero values take the defaults in brackets.
type Options struct {
	BatchSize       int           // rows per claim [500]
	PollInterval    time.Duration // safety-net poll when no NOTIFY arrives [5s]
	PublishTimeout  time.Duration // wait for JetStream acks of one batch [5s]
	MinBackoff      time.Duration // first retry delay after a failure [100ms]
	MaxBackoff      time.Duration // retry delay cap [30s]
	Retention       time.Duration // keep sent rows this long [72h]
	CleanupInterval time.Duration // how often to delete old sent rows [10m]
	Logger          *slog.Logger
	Metrics         prometheus.Registerer // nil = no metrics
}

func (o *Options) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	def(&o.PollInterval, 5*time.Second)
	def(&o.PublishTimeout, 5*time.Second)
	def(&o.MinBackoff, 100*time.Millisecond)
	def(&o.MaxBackoff, 30*time.Second)
	def(&o.Retention, 72*time.Hour)
	def(&o.CleanupInterval, 10*time.Minute)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Relay moves outbox rows to JetStream.
type Relay struct {
	pool   *pgxpool.Pool
	js     jetstream.JetStream
	o      Options
	tracer trace.Tracer

	published    atomic.Int64
	publishedCtr prometheus.Counter
	duplicates   prometheus.Counter
	failures     prometheus.Counter
	cleaned      prometheus.Counter
}

// New makes a relay publishing through nc.
func New(pool *pgxpool.Pool, nc *nats.Conn, o Options) (*Relay, error) {
	o.defaults()
	// The async timeout frees futures whose ack never comes (NATS down), so
	// the rows stay unsent and are retried.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(o.PublishTimeout),
		jetstream.WithPublishAsyncMaxPending(4*o.BatchSize))
	if err != nil {
		return nil, fmt.Errorf("outbox relay: %w", err)
	}
	r := &Relay{pool: pool, js: js, o: o, tracer: telemetry.Tracer("pressroom.dev/services/article/outbox"),
		publishedCtr: prometheus.NewCounter(prometheus.CounterOpts{Name: "outbox_published_total",
			Help: "Outbox events acknowledged by JetStream (new messages)."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "outbox_duplicates_total",
			Help: "Outbox events JetStream had already stored (dropped by Nats-Msg-Id)."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "outbox_publish_failures_total",
			Help: "Outbox events whose publish failed and will be retried."}),
		cleaned: prometheus.NewCounter(prometheus.CounterOpts{Name: "outbox_cleaned_total",
			Help: "Sent outbox rows deleted after the retention period."}),
	}
	if o.Metrics != nil {
		for _, c := range []prometheus.Collector{r.publishedCtr, r.duplicates, r.failures, r.cleaned} {
			if err := o.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("outbox relay metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Published counts events this relay got acked (including JetStream duplicates).
func (r *Relay) Published() int64 { return r.published.Load() }

// Run relays until ctx ends: at once on NOTIFY, else every PollInterval;
// failures are retried with exponential backoff and jitter, rows kept.
func (r *Relay) Run(ctx context.Context) error {
	for backoff := time.Duration(0); ; {
		err := r.EnsureStream(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		backoff = nextBackoff(backoff, r.o.MinBackoff, r.o.MaxBackoff)
		r.o.Logger.WarnContext(ctx, "JetStream not ready; events stay in the outbox", "err", err, "retry_in", backoff)
		sleep(ctx, backoff)
	}
	wake := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait() // the caller may close the pool once Run returns
	wg.Add(2)
	go func() { defer wg.Done(); r.listen(ctx, wake) }()
	go func() { defer wg.Done(); r.cleanupLoop(ctx) }()
	poll := time.NewTimer(0)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-poll.C:
		}
		r.drain(ctx)
		if !poll.Stop() {
			select {
			case <-poll.C:
			default:
			}
		}
		poll.Reset(r.o.PollInterval)
	}
}

// EnsureStream creates the ARTICLES stream, or updates it if it differs.
func (r *Relay) EnsureStream(ctx context.Context) error {
	_, err := natskit.DeclareStream(ctx, r.js, natskit.ArticlesStreamConfig())
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", StreamName, err)
	}
	return nil
}

// drain relays batches until the outbox is empty, retrying failures.
func (r *Relay) drain(ctx context.Context) {
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		n, err := r.RelayOnce(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
				// NATS lost its storage (or was replaced): declare the stream again.
				if serr := r.EnsureStream(ctx); serr != nil {
					err = errors.Join(err, serr)
				}
			}
			backoff = nextBackoff(backoff, r.o.MinBackoff, r.o.MaxBackoff)
			r.o.Logger.WarnContext(ctx, "outbox relay failed; rows kept for retry", "err", err, "retry_in", backoff)
			sleep(ctx, backoff)
			continue
		}
		backoff = 0
		if n < r.o.BatchSize {
			return
		}
	}
}

func nextBackoff(cur, lo, hi time.Duration) time.Duration {
	if cur < lo {
		cur = lo
	} else {
		cur *= 2
	}
	cur = min(cur, hi)
	// ±20% jitter so replicas don't retry in lockstep.
	return cur - cur/5 + time.Duration(rand.Int64N(int64(cur/5)*2+1))
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

type row struct {
	ID      int64
	EventID string
	Subject string
	Payload []byte
	Headers map[string]string
}

// RelayOnce claims up to BatchSize unsent rows, publishes them, and stamps
// the acked ones sent. It returns how many rows it claimed; an error means
// some rows were not acked (they stay unsent).
func (r *Relay) RelayOnce(ctx context.Context) (int, error) {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit
	batch, err := claim(ctx, tx, r.o.BatchSize)
	if err != nil {
		return 0, fmt.Errorf("claim rows: %w", err)
	}
	if len(batch) == 0 {
		return 0, tx.Commit(ctx)
	}

	type pending struct {
		f    jetstream.PubAckFuture
		span trace.Span
	}
	inflight := make([]pending, len(batch))
	defer func() { // end spans left open by an early return
		for _, p := range inflight {
			if p.span != nil && p.span.IsRecording() {
				p.span.End()
			}
		}
	}()
	var sent, failed []int64
	var firstErr error
	fail := func(i int, err error) {
		failed = append(failed, batch[i].ID)
		if firstErr == nil {
			firstErr = err
		}
		if s := inflight[i].span; s != nil {
			s.RecordError(err)
			s.SetStatus(codes.Error, err.Error())
			s.End()
		}
	}
	prop := otel.GetTextMapPropagator()
	for i, x := range batch {
		// Continue the trace of the request that wrote the event.
		pctx := prop.Extract(ctx, propagation.MapCarrier(x.Headers))
		pctx, span := r.tracer.Start(pctx, x.Subject+" publish", trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(attribute.String("messaging.system", "nats"),
				attribute.String("messaging.destination.name", x.Subject),
				attribute.String("messaging.message.id", x.EventID)))
		inflight[i].span = span
		msg := &nats.Msg{Subject: x.Subject, Data: x.Payload, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, x.EventID)
		telemetry.InjectNATS(pctx, msg.Header)
		f, err := r.js.PublishMsgAsync(msg, jetstream.WithExpectStream(StreamName))
		if err != nil {
			fail(i, err)
			continue
		}
		inflight[i].f = f
	}
	deadline := time.NewTimer(r.o.PublishTimeout)
	defer deadline.Stop()
	timedOut := false
	for i, p := range inflight {
		if p.f == nil {
			continue
		}
		if timedOut { // deadline passed: take what has arrived, fail the rest
			select {
			case ack := <-p.f.Ok():
				sent = append(sent, batch[i].ID)
				r.countAck(ack)
				p.span.End()
			default:
				fail(i, errors.New("timed out waiting for the JetStream ack"))
			}
			continue
		}
		select {
		case ack := <-p.f.Ok():
			sent = append(sent, batch[i].ID)
			r.countAck(ack)
			p.span.End()
		case err := <-p.f.Err():
			fail(i, err)
		case <-deadline.C:
			timedOut = true
			fail(i, errors.New("timed out waiting for the JetStream ack"))
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	if len(sent) > 0 {
		if _, err := tx.Exec(ctx, `UPDATE outbox SET sent_at = now() WHERE id = ANY($1)`, sent); err != nil {
			return 0, fmt.Errorf("mark %d rows sent: %w", len(sent), err)
		}
	}
	if len(failed) > 0 {
		r.failures.Add(float64(len(failed)))
		if _, err := tx.Exec(ctx, `UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = ANY($1)`,
			failed, firstErr.Error()); err != nil {
			return 0, fmt.Errorf("record %d failures: %w", len(failed), err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	r.published.Add(int64(len(sent)))
	if firstErr != nil {
		return len(batch), fmt.Errorf("%d of %d events not published: %w", len(failed), len(batch), firstErr)
	}
	return len(batch), nil
}

// claim locks up to limit unsent rows, oldest first. The outbox grows from
// empty to Retention's worth of sent rows, and every sent row leaves a dead
// entry in outbox_unsent until vacuum: the transaction's statements run with
// pg.IndexPlans, so the claim walks that index in order, stepping over dead
// entries once, and stops at the limit.
func claim(ctx context.Context, tx pgx.Tx, limit int) ([]row, error) {
	b := &pgx.Batch{}
	pg.QueueIndexPlans(b)
	b.Queue(`SELECT id, event_id::text, subject, payload, headers FROM outbox
		WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`, limit)
	br := tx.SendBatch(ctx, b)
	defer br.Close()
	for range pg.IndexPlans {
		if _, err := br.Exec(); err != nil {
			return nil, err
		}
	}
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(rw pgx.CollectableRow) (row, error) {
		var x row
		err := rw.Scan(&x.ID, &x.EventID, &x.Subject, &x.Payload, &x.Headers)
		return x, err
	})
}

func (r *Relay) countAck(ack *jetstream.PubAck) {
	if ack.Duplicate {
		r.duplicates.Inc()
	} else {
		r.publishedCtr.Inc()
	}
}

// listen turns Postgres NOTIFY into wake-ups, reconnecting after failures
// (e.g. a Postgres restart); it wakes the relay after every reconnect in
// case a notification was missed.
func (r *Relay) listen(ctx context.Context, wake chan<- struct{}) {
	signal := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		err := r.listenOnce(ctx, signal)
		if ctx.Err() != nil {
			return
		}
		backoff = nextBackoff(backoff, r.o.MinBackoff, r.o.MaxBackoff)
		r.o.Logger.WarnContext(ctx, "outbox LISTEN connection lost; polling until it is back", "err", err, "retry_in", backoff)
		sleep(ctx, backoff)
	}
}

func (r *Relay) listenOnce(ctx context.Context, signal func()) error {
	pc, err := r.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// Take the connection out of the pool: it keeps LISTEN state.
	conn := pc.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	signal()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		signal()
	}
}

func (r *Relay) cleanupLoop(ctx context.Context) {
	t := time.NewTicker(r.o.CleanupInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := r.Cleanup(ctx); err != nil && ctx.Err() == nil {
				r.o.Logger.WarnContext(ctx, "outbox cleanup failed", "err", err)
			}
		}
	}
}

// Cleanup deletes rows sent longer than Retention ago, in chunks so it never
// holds long locks.
func (r *Relay) Cleanup(ctx context.Context) (int64, error) {
	cutoff := time.Now().Add(-r.o.Retention)
	var total int64
	for {
		tag, err := r.pool.Exec(ctx, `DELETE FROM outbox WHERE id IN (
			SELECT id FROM outbox WHERE sent_at < $1 ORDER BY sent_at LIMIT 5000)`, pg.FreshPlan, cutoff)
		if err != nil {
			return total, err
		}
		total += tag.RowsAffected()
		r.cleaned.Add(float64(tag.RowsAffected()))
		if tag.RowsAffected() < 5000 {
			return total, nil
		}
	}
}

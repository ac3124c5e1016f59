package outbox

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"pressroom.dev/kit/authz"
	"pressroom.dev/kit/natskit"
	"pressroom.dev/kit/pg"
	"pressroom.dev/kit/telemetry"
	"pressroom.dev/kit/testkit"
	"pressroom.dev/services/article/internal/article"
)

func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }

var author = authz.Principal{UserID: "u-author", Name: "Ada Author", Email: "ada@example.com", Roles: []authz.Role{authz.Author}}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openDB(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pg.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := pg.Migrate(context.Background(), pool, article.Migrations); err != nil {
		t.Fatal(err)
	}
	return pool
}

func connectNATS(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := natskit.Connect(url, t.Name(), quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// startRelay runs a relay until the test ends.
func startRelay(t *testing.T, pool *pgxpool.Pool, nc *nats.Conn, o Options) *Relay {
	t.Helper()
	o.Logger = quietLog()
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 500 * time.Millisecond
	}
	r, err := New(pool, nc, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return r
}

// publishArticles creates and publishes n articles; it returns the event ids.
func publishArticles(t *testing.T, pool *pgxpool.Pool, n int) map[string]bool {
	t.Helper()
	publish(t, pool, n)
	return eventIDs(t, pool)
}

// publish creates and publishes n articles, each writing one outbox row.
func publish(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	ctx := context.Background()
	svc := article.NewService(article.NewStore(pool), "https://example.com")
	for i := range n {
		a, err := svc.Create(ctx, author, article.Fields{Title: ptr(fmt.Sprintf("Article %d", i))})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Publish(ctx, author, a.ID); err != nil {
			t.Fatal(err)
		}
	}
}

func ptr(s string) *string { return &s }

func eventIDs(t *testing.T, pool *pgxpool.Pool) map[string]bool {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT event_id::text FROM outbox`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	ids := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids[id] = true
	}
	return ids
}

func unsent(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox WHERE sent_at IS NULL`).Scan(&n); err != nil {
		t.Logf("count unsent: %v", err)
		return -1
	}
	return n
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// streamMessages reads the whole ARTICLES stream: Nats-Msg-Id → how many
// messages carry it, plus the headers of the last one seen.
func streamMessages(t *testing.T, nc *nats.Conn) (map[string]int, nats.Header) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	var last nats.Header
	for got := uint64(0); got < info.State.Msgs; {
		batch, err := c.Fetch(int(min(info.State.Msgs-got, 500)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			counts[m.Headers().Get(jetstream.MsgIDHeader)]++
			last = m.Headers()
			got++
		}
		if err := batch.Error(); err != nil {
			t.Fatal(err)
		}
	}
	return counts, last
}

func checkExactlyOnce(t *testing.T, want map[string]bool, got map[string]int) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("stream holds %d distinct events, want %d", len(got), len(want))
	}
	for id := range want {
		if got[id] != 1 {
			t.Errorf("event %s is in the stream %d times, want once", id, got[id])
		}
	}
}

func TestRelayPublishesEachEventWithItsIDAndTrace(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	pool := openDB(t, testkit.Postgres(t))
	ns := testkit.StartNATS(t)
	nc := connectNATS(t, ns.URL)

	// One article published inside a request span: its message must carry that trace.
	ctx, span := tp.Tracer("test").Start(context.Background(), "request")
	svc := article.NewService(article.NewStore(pool), "https://example.com")
	a, err := svc.Create(ctx, author, article.Fields{Title: ptr("Traced")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Publish(ctx, author, a.ID); err != nil {
		t.Fatal(err)
	}
	span.End()
	ids := eventIDs(t, pool)
	startRelay(t, pool, nc, Options{})
	waitFor(t, 20*time.Second, "all rows sent", func() bool { return unsent(t, pool) == 0 })
	got, last := streamMessages(t, nc)
	checkExactlyOnce(t, ids, got)
	remote := trace.SpanContextFromContext(telemetry.ExtractNATS(context.Background(), last))
	if remote.TraceID() != span.SpanContext().TraceID() || remote.SpanID() == span.SpanContext().SpanID() {
		t.Fatalf("message headers %v do not continue the request trace %s in a span of their own", last, span.SpanContext().TraceID())
	}
}

// TestRelayWakesOnNotify: with a one-hour poll only LISTEN/NOTIFY can
// deliver a new event promptly.
func TestRelayWakesOnNotify(t *testing.T) {
	pool := openDB(t, testkit.Postgres(t))
	ns := testkit.StartNATS(t)
	nc := connectNATS(t, ns.URL)
	startRelay(t, pool, nc, Options{PollInterval: time.Hour})
	time.Sleep(300 * time.Millisecond) // let the first (empty) drain and LISTEN happen
	ids := publishArticles(t, pool, 3)
	waitFor(t, 20*time.Second, "rows sent after NOTIFY", func() bool { return unsent(t, pool) == 0 })
	got, _ := streamMessages(t, nc)
	checkExactlyOnce(t, ids, got)
}

// TestNATSDownWhile100ArticlesArePublished: nothing is lost and nothing
// doubled when JetStream is away and comes back.
func TestNATSDownWhile100ArticlesArePublished(t *testing.T) {
	pool := openDB(t, testkit.Postgres(t))
	ns := testkit.StartNATS(t)
	nc := connectNATS(t, ns.URL)
	r := startRelay(t, pool, nc, Options{PollInterval: 200 * time.Millisecond, PublishTimeout: time.Second})
	waitFor(t, 20*time.Second, "stream created", func() bool {
		_, err := r.js.Stream(context.Background(), StreamName)
		return err == nil
	})
	if err := ns.Stop(); err != nil {
		t.Fatal(err)
	}
	ids := publishArticles(t, pool, 100)
	// The relay tries, fails, records the failure and backs off.
	waitFor(t, 30*time.Second, "a failed publish attempt recorded", func() bool {
		var attempts int
		err := pool.QueryRow(context.Background(), `SELECT coalesce(max(attempts), 0) FROM outbox`).Scan(&attempts)
		return err == nil && attempts > 0
	})
	if n := unsent(t, pool); n != 100 {
		t.Fatalf("%d rows unsent while NATS is down, want 100", n)
	}
	if err := ns.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "all 100 rows sent after NATS is back", func() bool { return unsent(t, pool) == 0 })
	got, _ := streamMessages(t, nc)
	checkExactlyOnce(t, ids, got)
}

func TestTwoRelaysPublishEachEventOnce(t *testing.T) {
	pool := openDB(t, testkit.Postgres(t))
	ns := testkit.StartNATS(t)
	ids := publishArticles(t, pool, 300)
	// Small batches so both relays get work at the same time.
	a := startRelay(t, pool, connectNATS(t, ns.URL), Options{BatchSize: 10, PollInterval: 100 * time.Millisecond})
	b := startRelay(t, pool, connectNATS(t, ns.URL), Options{BatchSize: 10, PollInterval: 100 * time.Millisecond})
	waitFor(t, 60*time.Second, "all rows sent", func() bool { return unsent(t, pool) == 0 })
	nc := connectNATS(t, ns.URL)
	got, _ := streamMessages(t, nc)
	checkExactlyOnce(t, ids, got)
	// The locking alone keeps publishes unique: JetStream's dedup had nothing to drop.
	if a.Published()+b.Published() != int64(len(ids)) {
		t.Fatalf("relays published %d + %d = %d times, want %d", a.Published(), b.Published(), a.Published()+b.Published(), len(ids))
	}
	t.Logf("relay A published %d, relay B %d", a.Published(), b.Published())
}

func TestRelayRecoversFromPostgresRestart(t *testing.T) {
	pgs := testkit.StartPostgres(t)
	pool := openDB(t, pgs.NewDatabase(t))
	ns := testkit.StartNATS(t)
	nc := connectNATS(t, ns.URL)
	startRelay(t, pool, nc, Options{PollInterval: 200 * time.Millisecond})
	before := publishArticles(t, pool, 10)
	waitFor(t, 20*time.Second, "first events sent", func() bool { return unsent(t, pool) == 0 })

	if err := pgs.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the relay polls and fails meanwhile
	if err := pgs.Start(); err != nil {
		t.Fatal(err)
	}

	var ids map[string]bool
	waitFor(t, 30*time.Second, "Postgres accepting writes again", func() bool {
		return pool.Ping(context.Background()) == nil
	})
	ids = publishArticles(t, pool, 10)
	waitFor(t, 30*time.Second, "events after the restart sent", func() bool { return unsent(t, pool) == 0 })
	got, _ := streamMessages(t, nc)
	if len(ids) != 20 || len(before) != 10 {
		t.Fatalf("outbox holds %d events, want 20", len(ids))
	}
	checkExactlyOnce(t, ids, got)
}

func TestCleanupDeletesOnlyOldSentRows(t *testing.T) {
	pool := openDB(t, testkit.Postgres(t))
	ns := testkit.StartNATS(t)
	publishArticles(t, pool, 6)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `UPDATE outbox SET sent_at = now() - interval '2 hours' WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT 3)`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE outbox SET sent_at = now() WHERE id = (SELECT max(id) FROM outbox)`); err != nil {
		t.Fatal(err)
	}
	r, err := New(pool, connectNATS(t, ns.URL), Options{Retention: time.Hour, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	n, err := r.Cleanup(ctx)
	if err != nil || n != 3 {
		t.Fatalf("cleanup deleted %d rows (%v), want the 3 old sent ones", n, err)
	}
	var left, pending int
	if err := pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE sent_at IS NULL) FROM outbox`).Scan(&left, &pending); err != nil {
		t.Fatal(err)
	}
	if left != 3 || pending != 2 {
		t.Fatalf("left %d rows (%d unsent), want 3 (2 unsent)", left, pending)
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	lo, hi := 100*time.Millisecond, 2*time.Second
	d := time.Duration(0)
	for range 20 {
		d = nextBackoff(d, lo, hi)
		if d < lo*8/10 || d > hi*12/10 {
			t.Fatalf("backoff %s outside [%s, %s] ±20%%", d, lo, hi)
		}
	}
	if d < hi*8/10 {
		t.Fatalf("backoff %s never reached the cap %s", d, hi)
	}
}

// TestRelayDoesNotScanAGrownOutbox: the relay's statements are first run
// while the outbox is nearly empty, and the outbox then keeps days of sent
// rows (Retention), each of which left a dead entry in outbox_unsent that
// stays until vacuum. Relaying a batch must still find and stamp its rows
// through indexes, reading those dead entries once rather than for every
// batch: a plan fixed while the table was empty would read every retained
// row per batch, and a bitmap scan every dead entry.
func TestRelayDoesNotScanAGrownOutbox(t *testing.T) {
	ctx := context.Background()
	dsn := testkit.Postgres(t) + "&pool_max_conns=1"
	pool := openDB(t, dsn)
	relayPool := openDB(t, dsn)
	nc := connectNATS(t, testkit.StartNATS(t).URL)
	r, err := New(relayPool, nc, Options{Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.EnsureStream(ctx); err != nil {
		t.Fatal(err)
	}
	relay := func(want int) {
		t.Helper()
		if n, err := r.RelayOnce(ctx); err != nil || n != want {
			t.Fatalf("RelayOnce = %d, %v; want %d rows relayed", n, err, want)
		}
	}
	// As between two vacuums; autovacuum would otherwise run at its own moment.
	if _, err := pool.Exec(ctx, `ALTER TABLE outbox SET (autovacuum_enabled = false)`); err != nil {
		t.Fatal(err)
	}
	for range 8 { // enough runs for Postgres to settle on each statement's plan
		publish(t, pool, 12)
		relay(12)
	}
	// 20,000 events written and then stamped sent, as the relay does.
	if _, err := pool.Exec(ctx, `INSERT INTO outbox (event_id, subject, payload)
		SELECT gen_random_uuid(), 'articles.published', '\x7b7d' FROM generate_series(1, 20000)`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE outbox SET sent_at = now() - interval '1 hour' WHERE sent_at IS NULL`); err != nil {
		t.Fatal(err)
	}
	relay(0)            // the first claim after them steps over their dead entries
	publish(t, pool, 5) // not publishArticles: its read of the outbox would count as a scan
	before := testkit.TableScans(t, "outbox", pool, relayPool)
	entriesBefore := testkit.IndexEntriesRead(t, "outbox_unsent", pool, relayPool)
	relay(5)
	relay(0)
	after := testkit.TableScans(t, "outbox", pool, relayPool)
	if after.Seq != before.Seq || after.Index == before.Index {
		t.Fatalf("relaying 5 events over 20,000 retained rows: %d sequential scans reading %d rows, %d index scans; want index scans only",
			after.Seq-before.Seq, after.SeqRows-before.SeqRows, after.Index-before.Index)
	}
	if read := testkit.IndexEntriesRead(t, "outbox_unsent", pool, relayPool) - entriesBefore; read > 50 {
		t.Fatalf("claiming 5 events (and an empty claim after) read %d entries of outbox_unsent; want at most 50, not the sent rows' dead entries again", read)
	}
}

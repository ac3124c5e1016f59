// Package pipeline_test measures and checks the whole event path in one
// process: article publish → outbox → relay → JetStream → notification
// consumer → notification_db.
package pipeline_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"pressroom.dev/kit/authz"
	"pressroom.dev/kit/natskit"
	"pressroom.dev/kit/pg"
	"pressroom.dev/kit/testkit"
	"pressroom.dev/services/article/internal/article"
	"pressroom.dev/services/article/internal/outbox"
	"pressroom.dev/services/notification/notify"
)

func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }

var author = authz.Principal{UserID: "u-bench", Name: "Bench Author", Email: "bench@example.com", Roles: []authz.Role{authz.Author}}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type pipeline struct {
	articles *pgxpool.Pool
	notes    *pgxpool.Pool
	svc      *article.Service
	natsURL  string
	// start the outbox relay / the notification consumer (once each)
	startRelay, startNotifier func()
}

// startPipeline sets up an outbox relay and a notification consumer (e-mail
// to the log) against real Postgres databases and a real JetStream server;
// the caller starts them.
func startPipeline(tb testing.TB) *pipeline {
	tb.Helper()
	ctx := context.Background()
	// pgxpool defaults to max(4, NumCPU) connections; the 16 concurrent
	// publishers of the benchmark need more (production sets pool_max_conns
	// in DATABASE_URL the same way).
	articles, err := pg.Open(ctx, withParam(testkit.Postgres(tb), "pool_max_conns=24"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(articles.Close)
	if err := pg.Migrate(ctx, articles, article.Migrations); err != nil {
		tb.Fatal(err)
	}
	notes, err := pg.Open(ctx, testkit.Postgres(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(notes.Close)
	if err := pg.Migrate(ctx, notes, notify.Migrations); err != nil {
		tb.Fatal(err)
	}
	ns := testkit.StartNATS(tb)
	conn := func() *nats.Conn {
		nc, err := natskit.Connect(ns.URL, "bench", quiet())
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(nc.Close)
		return nc
	}
	relay, err := outbox.New(articles, conn(), outbox.Options{Logger: quiet()})
	if err != nil {
		tb.Fatal(err)
	}
	n, err := notify.New(notes, conn(), notify.LogSender{Log: quiet()}, notify.Options{
		Recipient: "editors@example.com", From: "news@example.com", Logger: quiet()})
	if err != nil {
		tb.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	tb.Cleanup(func() { cancel(); wg.Wait() })
	run := func(f func(context.Context) error) func() {
		return func() {
			wg.Add(1)
			go func() { defer wg.Done(); _ = f(runCtx) }()
		}
	}
	p := &pipeline{articles: articles, notes: notes, natsURL: ns.URL,
		svc:        article.NewService(article.NewStore(articles), "https://example.com"),
		startRelay: run(relay.Run), startNotifier: run(n.Run)}
	return p
}

func withParam(dsn, kv string) string {
	if strings.Contains(dsn, "?") {
		return dsn + "&" + kv
	}
	return dsn + "?" + kv
}

func (p *pipeline) drafts(tb testing.TB, n int) []string {
	tb.Helper()
	ids := make([]string, n)
	for i := range ids {
		a, err := p.svc.Create(context.Background(), author, article.Fields{Title: ptr(fmt.Sprintf("Bench %d", i))})
		if err != nil {
			tb.Fatal(err)
		}
		ids[i] = a.ID
	}
	return ids
}

func ptr(s string) *string { return &s }

// publishAll publishes every draft from a few concurrent "requests".
func (p *pipeline) publishAll(tb testing.TB, ids []string) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(ids)); i = next.Add(1) - 1 {
				if _, err := p.svc.Publish(context.Background(), author, ids[i]); err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		tb.Fatal(err)
	default:
	}
}

func (p *pipeline) recorded(tb testing.TB) int {
	var n int
	if err := p.notes.QueryRow(context.Background(), `SELECT count(*) FROM notifications`).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

func (p *pipeline) waitRecorded(tb testing.TB, want int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for p.recorded(tb) < want {
		if time.Now().After(deadline) {
			tb.Fatalf("only %d of %d events recorded after %s", p.recorded(tb), want, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// latencies returns p50 and p99 of publish (event occurred_at, stamped in
// the article transaction) → notification row written, in milliseconds.
func (p *pipeline) latencies(tb testing.TB) (p50, p99 float64) {
	err := p.notes.QueryRow(context.Background(), `SELECT
		percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM received_at - occurred_at)) * 1000,
		percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM received_at - occurred_at)) * 1000
		FROM notifications`).Scan(&p50, &p99)
	if err != nil {
		tb.Fatal(err)
	}
	return p50, p99
}

// TestPublishedArticlesReachNotification is the pipeline's functional check:
// every publish yields exactly one notification row.
func TestPublishedArticlesReachNotification(t *testing.T) {
	p := startPipeline(t)
	p.startRelay()
	p.startNotifier()
	ids := p.drafts(t, 50)
	p.publishAll(t, ids)
	p.waitRecorded(t, len(ids), 60*time.Second)
	var distinct, articles int
	if err := p.notes.QueryRow(context.Background(), `SELECT count(DISTINCT event_id), count(DISTINCT article_id) FROM notifications`).Scan(&distinct, &articles); err != nil {
		t.Fatal(err)
	}
	if distinct != 50 || articles != 50 {
		t.Fatalf("%d events for %d articles recorded, want 50 and 50", distinct, articles)
	}
}

// BenchmarkPublishToNotification: b.N articles published by 16 concurrent
// callers; reports publish→recorded p50/p99 and sustained events/s, next to
// the raw JetStream publish→consume rate on the same machine in the same
// run. Targets (issue 4): p99 < 200 ms, ≥ 2,000 events/s.
func BenchmarkPublishToNotification(b *testing.B) {
	p := startPipeline(b)
	p.startRelay()
	p.startNotifier()
	ids := p.drafts(b, b.N)
	b.ResetTimer()
	start := time.Now()
	p.publishAll(b, ids)
	published := time.Since(start)
	p.waitRecorded(b, b.N, 10*time.Minute)
	elapsed := time.Since(start)
	b.StopTimer()
	p50, p99 := p.latencies(b)
	raw := rawJetStreamRate(b, p.natsURL, max(b.N, 1000))
	b.ReportMetric(p50, "p50_ms")
	b.ReportMetric(p99, "p99_ms")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(raw, "raw_js_events/s")
	// What the article side alone sustained (publish transactions incl. outbox rows).
	b.ReportMetric(float64(b.N)/published.Seconds(), "publish_tx/s")
}

// BenchmarkBacklogDrain: b.N events wait in the outbox (as after a NATS
// outage); reports how fast relay → JetStream → consumer → notification_db
// moves them, i.e. the pipeline's capacity without the publish
// transactions in front of it, next to the raw JetStream rate.
func BenchmarkBacklogDrain(b *testing.B) {
	p := startPipeline(b)
	p.startNotifier()
	p.publishAll(b, p.drafts(b, b.N))
	b.ResetTimer()
	start := time.Now()
	p.startRelay()
	p.waitRecorded(b, b.N, 10*time.Minute)
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(rawJetStreamRate(b, p.natsURL, max(b.N, 1000)), "raw_js_events/s")
}

// rawJetStreamRate publishes n small messages (async, acked) to a scratch
// stream and consumes them with a durable pull consumer, acking each.
func rawJetStreamRate(b *testing.B, url string, n int) float64 {
	ctx := context.Background()
	nc, err := natskit.Connect(url, "bench-raw", quiet())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "BENCHRAW", Subjects: []string{"benchraw.>"}, Storage: jetstream.FileStorage})
	if err != nil {
		b.Fatal(err)
	}
	defer js.DeleteStream(ctx, "BENCHRAW") //nolint:errcheck
	c, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	var got atomic.Int64
	start := time.Now()
	cc, err := c.Consume(func(m jetstream.Msg) {
		_ = m.Ack()
		if got.Add(1) == int64(n) {
			close(done)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()
	payload := []byte(`{"schemaVersion":1,"type":"articles.published","title":"raw"}`)
	for i := range n {
		if _, err := js.PublishAsync("benchraw.published", payload, jetstream.WithMsgID(fmt.Sprint(i))); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("raw publish acks did not arrive")
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatalf("raw consume got %d of %d", got.Load(), n)
	}
	return float64(n) / time.Since(start).Seconds()
}

// TestStreamConfigsAgree: both services declare the ARTICLES stream with
// create-or-update, so their settings must be identical or they would
// fight over it.
func TestStreamConfigsAgree(t *testing.T) {
	if a, n := outbox.StreamConfig(), notify.StreamConfig(); !reflect.DeepEqual(a, n) {
		t.Fatalf("article declares %+v\nnotification declares %+v", a, n)
	}
}

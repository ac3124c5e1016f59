package pipelinebench_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"pressroom.dev/kit/natskit"
)

// TestPublishedArticlesAreEmailedOnce: a handful of articles published over
// Connect each produce exactly one e-mail from notification, with one
// distinct event id each (proves the harness and the exactly-once path).
func TestPublishedArticlesAreEmailedOnce(t *testing.T) {
	p := startPipeline(t)
	const n = 8
	ids, titles := p.drafts(t, n, "test")
	p.publishAll(t, ids)
	p.mail.wait(t, titles, 90*time.Second)
	// A duplicate would come right behind the first copy (same batch or a
	// redelivery after an early ack); give it time to show up.
	time.Sleep(2 * time.Second)
	p.mail.mu.Lock()
	defer p.mail.mu.Unlock()
	if len(p.mail.bad) > 0 {
		t.Errorf("malformed e-mail requests: %q", p.mail.bad)
	}
	for _, title := range titles {
		if got := len(p.mail.arrived[title]); got != 1 {
			t.Errorf("%q: %d e-mails, want exactly 1", title, got)
		}
	}
	if len(p.mail.events) != n || p.mail.total != n {
		t.Errorf("%d e-mails with %d distinct event ids, want %d and %d", p.mail.total, len(p.mail.events), n, n)
	}
	for key, c := range p.mail.events {
		if c != 1 {
			t.Errorf("event %s e-mailed %d times", key, c)
		}
	}
}

// TestServicesDeclareTheSameStream: article and notification each declare
// the ARTICLES stream with create-or-update, so they must declare it
// identically or they would fight over it. Each is started alone on a NATS
// server of its own and the stream it leaves behind is compared.
func TestServicesDeclareTheSameStream(t *testing.T) {
	declared := func(start func(*stores, testing.TB) *service) jetstream.StreamConfig {
		s := newStores(t)
		start(s, t)
		nc, err := natskit.Connect(s.nats.URL, "stream-check", slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for {
			st, err := js.Stream(ctx, "ARTICLES")
			if err == nil {
				return st.CachedInfo().Config
			}
			if ctx.Err() != nil {
				t.Fatalf("no ARTICLES stream 30s after the service became ready: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	a := declared((*stores).startArticle)
	n := declared((*stores).startNotification)
	if a.Name != "ARTICLES" || len(a.Subjects) == 0 {
		t.Fatalf("article declared an unexpected stream: %+v", a)
	}
	t.Logf("ARTICLES: subjects %v, %v storage, max age %s, duplicate window %s", a.Subjects, a.Storage, a.MaxAge, a.Duplicates)
	if !reflect.DeepEqual(a, n) {
		t.Fatalf("article declares %+v\nnotification declares %+v", a, n)
	}
}

// BenchmarkPublishToNotification: b.N articles published as fast as 16
// concurrent Connect callers can; reports the sustained events/s end to end
// (first publish to last e-mail), the publish calls' own rate, p50/p99 of
// PublishArticle sent → notification's e-mail request received (at
// saturation, so queueing included), and the raw JetStream publish→consume
// rate on the same NATS server in the same run. Target (tools/bench/README.md):
// >= 2,000 events/s. Latency without queueing is BenchmarkPublishLatency's.
func BenchmarkPublishToNotification(b *testing.B) {
	p := startPipeline(b)
	ids, titles := p.drafts(b, b.N, fmt.Sprintf("bench-%d", b.N))
	b.ResetTimer()
	start := time.Now()
	sent := p.publishAll(b, ids)
	published := time.Since(start)
	arrived := p.mail.wait(b, titles, 10*time.Minute)
	elapsed := time.Since(start)
	b.StopTimer()
	ds := latencies(sent, arrived)
	raw := rawJetStreamRate(b, p.nats.URL, max(b.N, 1000))
	b.ReportMetric(percentile(ds, 0.50), "p50_ms")
	b.ReportMetric(percentile(ds, 0.99), "p99_ms")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(b.N)/published.Seconds(), "publish_calls/s")
	b.ReportMetric(raw, "raw_js_events/s")
}

// publishRate is BenchmarkPublishLatency's steady load: well inside what the
// pipeline sustains on a 2-core machine, so the latency is the path's own.
const publishRate = 500

// BenchmarkPublishLatency: b.N articles published at a steady publishRate
// per second; reports p50/p99 of scheduled publish → e-mail request
// received, and the raw JetStream rate in the same run. Target
// (tools/bench/README.md): p99 < 200 ms.
func BenchmarkPublishLatency(b *testing.B) {
	p := startPipeline(b)
	ids, titles := p.drafts(b, b.N, fmt.Sprintf("paced-%d", b.N))
	b.ResetTimer()
	sent := p.publishPaced(b, ids, publishRate)
	arrived := p.mail.wait(b, titles, 10*time.Minute)
	b.StopTimer()
	ds := latencies(sent, arrived)
	b.ReportMetric(percentile(ds, 0.50), "p50_ms")
	b.ReportMetric(percentile(ds, 0.99), "p99_ms")
	b.ReportMetric(publishRate, "events/s_offered")
	b.ReportMetric(rawJetStreamRate(b, p.nats.URL, max(b.N, 1000)), "raw_js_events/s")
}

// BenchmarkBacklogDrain: NATS is down while b.N articles are published (the
// events wait in article's outbox), then comes back; reports how fast
// relay → JetStream → notification → e-mail drains that backlog (first to
// last e-mail), the time from NATS's return to the last e-mail (includes the
// clients' reconnect backoff), and the raw JetStream rate.
func BenchmarkBacklogDrain(b *testing.B) {
	p := startPipeline(b)
	ids, titles := p.drafts(b, b.N, fmt.Sprintf("backlog-%d", b.N))
	if err := p.nats.Stop(); err != nil {
		b.Fatal(err)
	}
	p.publishAll(b, ids)
	b.ResetTimer()
	back := time.Now()
	if err := p.nats.Start(); err != nil {
		b.Fatal(err)
	}
	arrived := p.mail.wait(b, titles, 10*time.Minute)
	b.StopTimer()
	first, last := arrived[0], arrived[0]
	for _, a := range arrived {
		if a.Before(first) {
			first = a
		}
		if a.After(last) {
			last = a
		}
	}
	if span := last.Sub(first); b.N > 1 && span > 0 {
		b.ReportMetric(float64(b.N-1)/span.Seconds(), "events/s")
	}
	b.ReportMetric(last.Sub(back).Seconds(), "recovered_s")
	b.ReportMetric(rawJetStreamRate(b, p.nats.URL, max(b.N, 1000)), "raw_js_events/s")
}

// rawJetStreamRate publishes n small messages (async, acked) to a scratch
// stream and consumes them with a durable pull consumer, acking each: the
// ceiling the pipeline's JetStream leg could reach on this machine.
func rawJetStreamRate(b *testing.B, url string, n int) float64 {
	ctx := context.Background()
	nc, err := natskit.Connect(url, "bench-raw", slog.New(slog.NewTextHandler(io.Discard, nil)))
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

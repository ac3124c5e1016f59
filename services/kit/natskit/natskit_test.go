package natskit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"pressroom.dev/kit/telemetry"
	"pressroom.dev/kit/testkit"
)

func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func connect(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := Connect(url, t.Name(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStreamConsumerPublishConsume(t *testing.T) {
	if _, err := telemetry.Setup(context.Background(), "t", ""); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, js := connect(t, testkit.NATS(t).URL)

	cfg := jetstream.StreamConfig{Name: "ARTICLES", Subjects: []string{"articles.published"}, Duplicates: time.Minute}
	if _, err := EnsureStream(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Subjects = append(cfg.Subjects, "articles.deleted") // update in place
	st, err := EnsureStream(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.Subjects; len(got) != 2 {
		t.Errorf("stream subjects after update = %v", got)
	}
	if _, err := EnsureStream(ctx, js, jetstream.StreamConfig{Name: "X"}); err == nil {
		t.Error("stream without subjects accepted")
	}
	if _, err := EnsureConsumer(ctx, js, "ARTICLES", jetstream.ConsumerConfig{}); err == nil {
		t.Error("consumer without durable name accepted")
	}
	cons, err := EnsureConsumer(ctx, js, "ARTICLES", jetstream.ConsumerConfig{
		Durable: "notification", FilterSubject: "articles.published", AckPolicy: jetstream.AckNonePolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	if p := cons.CachedInfo().Config.AckPolicy; p != jetstream.AckExplicitPolicy {
		t.Errorf("ack policy = %v, want explicit", p)
	}

	// Publish inside a known trace; "a" twice with the same id (a retried publish).
	tid, _ := trace.TraceIDFromHex("abcdefabcdefabcdefabcdefabcdef01")
	sid, _ := trace.SpanIDFromHex("abcdefabcdef0001")
	pctx := trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	for _, id := range []string{"a", "a", "b", "poison"} {
		ack, err := Publish(pctx, js, "articles.published", []byte(id), "evt-"+id)
		if err != nil {
			t.Fatal(err)
		}
		if id == "a" && ack.Sequence != 1 {
			t.Errorf("duplicate publish stored at seq %d", ack.Sequence)
		}
	}

	var mu sync.Mutex
	deliveries := map[string]int{}
	traces := map[string]trace.TraceID{}
	cc, err := Consume(cons, quiet, func(ctx context.Context, msg jetstream.Msg) error {
		mu.Lock()
		defer mu.Unlock()
		id := string(msg.Data())
		deliveries[id]++
		traces[id] = trace.SpanContextFromContext(ctx).TraceID()
		switch {
		case id == "poison":
			return Permanent(errors.New("cannot parse"))
		case id == "b" && deliveries[id] == 1:
			return fmt.Errorf("transient failure")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()

	waitFor(t, "a and b handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return deliveries["a"] == 1 && deliveries["b"] == 2 && deliveries["poison"] >= 1
	})
	waitFor(t, "all acked", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	})
	time.Sleep(1500 * time.Millisecond) // longer than the first redelivery delay
	mu.Lock()
	defer mu.Unlock()
	if deliveries["a"] != 1 || deliveries["b"] != 2 || deliveries["poison"] != 1 {
		t.Errorf("deliveries = %v; want a once, b twice (one failure), poison once (terminated)", deliveries)
	}
	if traces["a"] != tid {
		t.Errorf("handler trace %s, want publisher's %s", traces["a"], tid)
	}
}

func TestReconnectAfterServerRestart(t *testing.T) {
	ctx := context.Background()
	n := testkit.StartNATS(t)
	nc, js := connect(t, n.URL)
	if _, err := EnsureStream(ctx, js, jetstream.StreamConfig{Name: "R", Subjects: []string{"r"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	check := Check(nc)
	if err := check(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "check to fail", func() bool { return check(ctx) != nil })
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "reconnect", func() bool { return check(ctx) == nil })
	if _, err := Publish(ctx, js, "r", []byte("after"), ""); err != nil {
		t.Fatalf("publish after reconnect: %v", err)
	}
}

func TestConnectWhileServerDownThenEnsure(t *testing.T) {
	n := testkit.StartNATS(t)
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	_, js := connect(t, n.URL) // returns at once; retries in the background
	go func() {
		time.Sleep(500 * time.Millisecond)
		if err := n.Start(); err != nil {
			t.Error(err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := EnsureStream(ctx, js, jetstream.StreamConfig{Name: "LATE", Subjects: []string{"late"}}); err != nil {
		t.Fatalf("EnsureStream should wait for the server: %v", err)
	}
}

func TestBackoffBounds(t *testing.T) {
	for a := range 20 {
		d := backoff(a)
		if d < 80*time.Millisecond || d > 6*time.Second {
			t.Errorf("backoff(%d) = %s", a, d)
		}
	}
	if redeliveryDelay(0) != time.Second || redeliveryDelay(3) != 4*time.Second || redeliveryDelay(50) != time.Minute {
		t.Error("redelivery delays wrong")
	}
}

// TestDeclareStreamUpdatesOnlyWhatDiffers: declaring a stream that already
// matches leaves it alone (no update, so no update advisory); a changed
// field updates it.
func TestDeclareStreamUpdatesOnlyWhatDiffers(t *testing.T) {
	ctx := context.Background()
	nc, js := connect(t, testkit.StartNATS(t).URL)
	updates, err := nc.SubscribeSync("$JS.EVENT.ADVISORY.STREAM.UPDATED.ARTICLES")
	if err != nil {
		t.Fatal(err)
	}
	cfg := ArticlesStreamConfig()
	if _, err := DeclareStream(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := DeclareStream(ctx, js, cfg); err != nil {
			t.Fatal(err)
		}
	}
	if m, err := updates.NextMsg(300 * time.Millisecond); err == nil {
		t.Fatalf("declaring an unchanged stream updated it: %s", m.Data)
	}
	changed := cfg
	changed.MaxAge = time.Hour
	s, err := DeclareStream(ctx, js, changed)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.MaxAge; got != time.Hour {
		t.Fatalf("MaxAge after declaring a change: %v, want 1h", got)
	}
	if _, err := updates.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("no update advisory for a changed stream: %v", err)
	}
	if declares(s.CachedInfo().Config, cfg) {
		t.Fatal("the old config still counts as declared after MaxAge changed")
	}
}

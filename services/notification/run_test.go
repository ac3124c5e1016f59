package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"pressroom.dev/kit/testkit"
)

func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }

// TestServiceRunsEndToEnd starts the real service and feeds it one event;
// the e-mail must reach the (local) Resend API.
func TestServiceRunsEndToEnd(t *testing.T) {
	var sends atomic.Int64
	var lastBody atomic.Value
	resend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 4096)
		n, _ := r.Body.Read(b)
		lastBody.Store(r.Header.Get("Authorization") + " " + string(b[:n]))
		sends.Add(1)
		w.Write([]byte(`{"id":"e-1"}`))
	}))
	defer resend.Close()
	ns := testkit.StartNATS(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	for k, v := range map[string]string{
		"DATABASE_URL": testkit.Postgres(t), "NATS_URL": ns.URL, "HTTP_ADDR": addr, "LOG_LEVEL": "error",
		"RESEND_API_KEY": "re_123", "RESEND_BASE_URL": resend.URL, "NOTIFY_EMAIL": "desk@example.com",
		"EMAIL_FROM": "news@example.com",
	} {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("service did not stop")
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready after 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	nc, err := nats.Connect(ns.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	// The service declared the stream; wait for its consumer too.
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err = js.Consumer(ctx, "ARTICLES", "notification"); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("consumer not created: %v", err)
	}
	ev := `{"schemaVersion":1,"eventId":"7d1c3f0e-5f7a-4c5e-9a51-0c7f3d3f1a11","type":"articles.published",` +
		`"occurredAt":"2026-01-02T03:04:05Z","articleId":"a-1","slug":"s","title":"Run Title","authorId":"u","authorName":"Ada",` +
		`"url":"https://example.com/articles/s"}`
	if _, err := js.Publish(ctx, "articles.published", []byte(ev), jetstream.WithMsgID("7d1c3f0e-5f7a-4c5e-9a51-0c7f3d3f1a11")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); sends.Load() == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no e-mail reached Resend")
		}
	}
	if b, _ := lastBody.Load().(string); !strings.HasPrefix(b, "Bearer re_123 ") || !strings.Contains(b, "desk@example.com") || !strings.Contains(b, "Run Title") {
		t.Fatalf("unexpected Resend request: %s", b)
	}
}

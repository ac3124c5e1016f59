package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"pressroom.dev/kit/testkit"
	"pressroom.dev/kit/token"
	articlev1 "pressroom.dev/proto/gen/article/v1"
	"pressroom.dev/proto/gen/article/v1/articlev1connect"
)

func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestServiceRunsEndToEnd starts the real service (config from the
// environment, migrations, relay, Connect handler) and drives it over HTTP.
func TestServiceRunsEndToEnd(t *testing.T) {
	keys := testkit.JWTKeys(t)
	ns := testkit.StartNATS(t)
	addr := freeAddr(t)
	for k, v := range map[string]string{
		"DATABASE_URL": testkit.Postgres(t), "NATS_URL": ns.URL, "HTTP_ADDR": addr, "LOG_LEVEL": "error",
		"JWT_PUBLIC_KEY_PATH": keys.PublicPath, "PUBLIC_URL": "https://news.example.com", "OUTBOX_POLL_INTERVAL": "200ms",
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
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
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

	signer := token.NewSigner(keys.Private, "pressroom-auth", []string{"pressroom"}, time.Hour)
	tok, err := signer.Sign("u-1", "ada@example.com", "Ada", []string{"author"})
	if err != nil {
		t.Fatal(err)
	}
	client := articlev1connect.NewArticleServiceClient(http.DefaultClient, base)
	authed := func(r connect.AnyRequest) { r.Header().Set("Authorization", "Bearer "+tok) }
	cr := connect.NewRequest(&articlev1.CreateArticleRequest{Title: "Hello Run", BodyMarkdown: "# hi"})
	authed(cr)
	created, err := client.CreateArticle(ctx, cr)
	if err != nil {
		t.Fatal(err)
	}
	pr := connect.NewRequest(&articlev1.PublishArticleRequest{Id: created.Msg.Article.Id})
	authed(pr)
	if _, err := client.PublishArticle(ctx, pr); err != nil {
		t.Fatal(err)
	}
	got, err := client.GetArticle(ctx, connect.NewRequest(&articlev1.GetArticleRequest{Key: &articlev1.GetArticleRequest_Slug{Slug: "hello-run"}}))
	if err != nil || got.Msg.Article.Status != articlev1.ArticleStatus_ARTICLE_STATUS_PUBLISHED {
		t.Fatalf("anonymous read of the published article: %v %v", got, err)
	}
	if _, err := client.CreateArticle(ctx, connect.NewRequest(&articlev1.CreateArticleRequest{Title: "x"})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("anonymous create: got %v, want Unauthenticated", err)
	}

	// The relay put the event on the stream with its id as Nats-Msg-Id.
	nc, err := nats.Connect(ns.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	var msg *jetstream.RawStreamMsg
	for deadline := time.Now().Add(30 * time.Second); ; {
		var st jetstream.Stream
		if st, err = js.Stream(ctx, "ARTICLES"); err == nil {
			msg, err = st.GetLastMsgForSubject(ctx, "articles.published")
		}
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("no articles.published message: %v", err)
	}
	if !strings.Contains(string(msg.Data), `"url":"https://news.example.com/articles/hello-run"`) || msg.Header.Get("Nats-Msg-Id") == "" {
		t.Fatalf("unexpected message %s %v", msg.Data, msg.Header)
	}

	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "outbox_published_total 1") {
		t.Fatalf("metrics lack outbox_published_total 1:\n%s", grep(string(body), "outbox_"))
	}
}

func grep(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return fmt.Sprint(out)
}

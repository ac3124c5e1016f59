package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"pressroom.dev/kit/config"
	"pressroom.dev/kit/testkit"
)

func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }

func TestConfigNamesEveryProblem(t *testing.T) {
	cfg := Config{Common: config.Common{Service: "media", HTTPAddr: ":8083"}}
	err := config.LoadFrom(&cfg, map[string]string{"MEDIA_MAX_BYTES": "ten megs"})
	if err == nil || !strings.Contains(err.Error(), "DATABASE_URL") || !strings.Contains(err.Error(), "MEDIA_MAX_BYTES") {
		t.Fatalf("got %v", err)
	}
	cfg = Config{Common: config.Common{Service: "media", HTTPAddr: ":8083"}}
	if err := config.LoadFrom(&cfg, map[string]string{"DATABASE_URL": "postgres://x"}); err != nil {
		t.Fatal(err)
	}
	if cfg.MediaDir != "/data" || cfg.MaxBytes != 10<<20 || cfg.HTTPAddr != ":8083" || cfg.PublicURL != "https://example.com" ||
		cfg.JWTPublicKeyPath != "/keys/jwt_public.pem" || cfg.JWTIssuer != "pressroom-auth" || cfg.JWTAudience != "pressroom" {
		t.Fatalf("defaults: %+v", cfg)
	}
	cfg.MaxBytes = 0
	if _, err := setup(context.Background(), cfg, slog.Default()); err == nil || !strings.Contains(err.Error(), "MEDIA_MAX_BYTES") {
		t.Fatalf("zero limit: %v", err)
	}
}

// The real wiring: migrations, probes (Postgres and a writable MEDIA_DIR),
// metrics, and a clean shutdown.
func TestServiceStartsReadyAndStops(t *testing.T) {
	keys := testkit.JWTKeys(t)
	dir := t.TempDir() + "/media"
	cfg := Config{Common: config.Common{Service: "media", HTTPAddr: "127.0.0.1:0"}}
	if err := config.LoadFrom(&cfg, map[string]string{
		"DATABASE_URL": testkit.Postgres(t), "MEDIA_DIR": dir, "JWT_PUBLIC_KEY_PATH": keys.PublicPath,
		"PUBLIC_URL": "http://localhost:8080", "SHUTDOWN_TIMEOUT": "5s",
	}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := setup(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != 200 {
		t.Fatalf("readyz: %d %s", code, body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz: %d", code)
	}
	if code, body := get("/media/" + strings.Repeat("a", 64) + ".png"); code != 404 || !strings.Contains(body, "error") {
		t.Fatalf("unknown media: %d %s", code, body)
	}
	if code, body := get("/media/a/b/../c"); code != 404 || !strings.Contains(body, `"error"`) {
		t.Fatalf("unknown path: %d %s", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "http_requests_total") {
		t.Fatalf("metrics: %d", code)
	}
	// A media directory that can no longer be written makes the pod unready.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "media_dir") {
		t.Fatalf("readyz without a media dir: %d %s", code, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("server did not stop")
	}
}

// Command article serves ArticleService over Connect on :8082 and relays
// its outbox of domain events to NATS JetStream.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"pressroom.dev/kit/config"
	"pressroom.dev/kit/connectkit"
	"pressroom.dev/kit/logging"
	"pressroom.dev/kit/natskit"
	"pressroom.dev/kit/pg"
	"pressroom.dev/kit/server"
	"pressroom.dev/kit/telemetry"
	"pressroom.dev/kit/token"
	"pressroom.dev/proto/gen/article/v1/articlev1connect"
	"pressroom.dev/services/article/internal/article"
	"pressroom.dev/services/article/internal/outbox"
)

// Config is every setting of the article service (services/article/README.md, Settings).
type Config struct {
	config.Common
	DatabaseURL string `env:"DATABASE_URL,required"`
	NATSURL     string `env:"NATS_URL,required"`
	config.JWT
	PublicURL       string        `env:"PUBLIC_URL" envDefault:"https://example.com"`
	OutboxPoll      time.Duration `env:"OUTBOX_POLL_INTERVAL" envDefault:"5s"`
	OutboxBatch     int           `env:"OUTBOX_BATCH_SIZE" envDefault:"500"`
	OutboxRetention time.Duration `env:"OUTBOX_RETENTION" envDefault:"72h"`
}

func main() {
	if err := run(context.Background()); err != nil {
		slog.Error("article stopped", "err", err)
		os.Exit(1)
	}
}

func loadConfig(environ map[string]string) (Config, error) {
	cfg := Config{Common: config.Common{Service: "article", HTTPAddr: ":8082"}}
	if err := config.LoadFrom(&cfg, environ); err != nil {
		return cfg, err
	}
	var probs []error
	if cfg.OutboxBatch < 1 || cfg.OutboxBatch > 10000 {
		probs = append(probs, fmt.Errorf("OUTBOX_BATCH_SIZE: %d is out of range, use 1..10000", cfg.OutboxBatch))
	}
	if cfg.OutboxPoll <= 0 {
		probs = append(probs, fmt.Errorf("OUTBOX_POLL_INTERVAL: must be positive, e.g. 5s"))
	}
	if cfg.OutboxRetention <= 0 {
		probs = append(probs, fmt.Errorf("OUTBOX_RETENTION: must be positive, e.g. 72h"))
	}
	return cfg, errors.Join(probs...)
}

func run(ctx context.Context) error {
	cfg, err := loadConfig(nil)
	if err != nil {
		return err
	}
	log := logging.Setup(cfg.Service, cfg.LogLevel)
	stopTracing, err := telemetry.Setup(ctx, cfg.Service, cfg.OTLPEndpoint)
	if err != nil {
		return err
	}
	verifier, err := token.LoadVerifier(cfg.JWTPublicKeyPath, cfg.JWTIssuer, cfg.JWTAudience)
	if err != nil {
		return err
	}
	pool, err := pg.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	if err := pg.Migrate(ctx, pool, article.Migrations); err != nil {
		return err
	}
	nc, err := natskit.Connect(cfg.NATSURL, cfg.Service, log)
	if err != nil {
		return err
	}

	srv := server.New(server.Options{Name: cfg.Service, Addr: cfg.HTTPAddr, Logger: log, ShutdownTimeout: cfg.ShutdownTimeout,
		TrustedProxies: cfg.TrustedProxies})
	srv.OnShutdown("tracing", stopTracing)
	srv.OnShutdown("postgres", func(context.Context) error { pool.Close(); return nil })
	srv.OnShutdown("nats", func(context.Context) error { return nc.Drain() })
	// Ready needs Postgres only: while NATS is away events wait in the outbox.
	srv.AddCheck("postgres", pg.Check(pool))

	relay, err := outbox.New(pool, nc, outbox.Options{BatchSize: cfg.OutboxBatch, PollInterval: cfg.OutboxPoll,
		Retention: cfg.OutboxRetention, Logger: log, Metrics: srv.Metrics()})
	if err != nil {
		return err
	}
	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = relay.Run(relayCtx) }()
	srv.OnShutdown("outbox relay", func(context.Context) error { stopRelay(); wg.Wait(); return nil })

	opts, err := connectkit.HandlerOptions(verifier, article.AnonymousProcedures...)
	if err != nil {
		return err
	}
	svc := article.NewService(article.NewStore(pool), cfg.PublicURL)
	path, h := articlev1connect.NewArticleServiceHandler(article.NewHandler(svc), opts)
	srv.Handle(path, h)
	return srv.Run(ctx)
}

// Command notification consumes articles.published from JetStream and
// e-mails NOTIFY_EMAIL once per event (Resend, or the log without a key).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"sync"
	"time"

	"pressroom.dev/kit/config"
	"pressroom.dev/kit/logging"
	"pressroom.dev/kit/natskit"
	"pressroom.dev/kit/pg"
	"pressroom.dev/kit/server"
	"pressroom.dev/kit/telemetry"
	"pressroom.dev/services/notification/internal/notify"
)

// Config is every setting of the notification service (services/notification/README.md, Settings).
type Config struct {
	config.Common
	DatabaseURL   string        `env:"DATABASE_URL,required"`
	NATSURL       string        `env:"NATS_URL,required"`
	ResendAPIKey  string        `env:"RESEND_API_KEY"`
	ResendBaseURL string        `env:"RESEND_BASE_URL" envDefault:"https://api.resend.com"`
	EmailFrom     string        `env:"EMAIL_FROM" envDefault:"pressroom <notifications@example.com>"`
	NotifyEmail   string        `env:"NOTIFY_EMAIL" envDefault:"editors@example.com"`
	AckWait       time.Duration `env:"NOTIFY_ACK_WAIT" envDefault:"30s"`
	MaxDeliver    int           `env:"NOTIFY_MAX_DELIVER" envDefault:"20"`
	SendRetries   int           `env:"NOTIFY_SEND_RETRIES" envDefault:"10"`
	ClaimTime     time.Duration `env:"NOTIFY_CLAIM_TIMEOUT" envDefault:"1m"`
}

func main() {
	if err := run(context.Background()); err != nil {
		slog.Error("notification stopped", "err", err)
		os.Exit(1)
	}
}

func loadConfig(environ map[string]string) (Config, error) {
	cfg := Config{Common: config.Common{Service: "notification", HTTPAddr: ":8084"}}
	if err := config.LoadFrom(&cfg, environ); err != nil {
		return cfg, err
	}
	var probs []error
	if _, err := mail.ParseAddress(cfg.EmailFrom); err != nil {
		probs = append(probs, fmt.Errorf("EMAIL_FROM: %q is not an e-mail address (e.g. \"pressroom <news@example.com>\")", cfg.EmailFrom))
	}
	if _, err := mail.ParseAddress(cfg.NotifyEmail); err != nil {
		probs = append(probs, fmt.Errorf("NOTIFY_EMAIL: %q is not an e-mail address (e.g. editors@example.com)", cfg.NotifyEmail))
	}
	if u, err := url.Parse(cfg.ResendBaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		probs = append(probs, fmt.Errorf("RESEND_BASE_URL: %q is not an http(s) URL (e.g. https://api.resend.com)", cfg.ResendBaseURL))
	}
	if cfg.MaxDeliver < 1 {
		probs = append(probs, fmt.Errorf("NOTIFY_MAX_DELIVER: must be at least 1"))
	}
	if cfg.SendRetries < 1 {
		probs = append(probs, fmt.Errorf("NOTIFY_SEND_RETRIES: must be at least 1"))
	}
	if cfg.AckWait < time.Second {
		probs = append(probs, fmt.Errorf("NOTIFY_ACK_WAIT: must be at least 1s"))
	}
	if cfg.ClaimTime < time.Second {
		probs = append(probs, fmt.Errorf("NOTIFY_CLAIM_TIMEOUT: must be at least 1s"))
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
	pool, err := pg.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	if err := pg.Migrate(ctx, pool, notify.Migrations); err != nil {
		return err
	}
	nc, err := natskit.Connect(cfg.NATSURL, cfg.Service, log)
	if err != nil {
		return err
	}
	var sender notify.Sender = notify.LogSender{Log: log}
	if cfg.ResendAPIKey != "" {
		// One kept-alive connection per parallel send: with the default two
		// idle connections per host most sends dialled (and TLS-handshook) anew.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = notify.DefaultConcurrency
		sender = &notify.Resend{BaseURL: cfg.ResendBaseURL, APIKey: cfg.ResendAPIKey,
			Client: &http.Client{Timeout: 15 * time.Second, Transport: telemetry.HTTPTransport(tr)}}
	} else {
		log.Warn("RESEND_API_KEY is not set: notifications are written to the log instead of e-mailed")
	}

	srv := server.New(server.Options{Name: cfg.Service, Addr: cfg.HTTPAddr, Logger: log, ShutdownTimeout: cfg.ShutdownTimeout,
		TrustedProxies: cfg.TrustedProxies})
	srv.OnShutdown("tracing", stopTracing)
	srv.OnShutdown("postgres", func(context.Context) error { pool.Close(); return nil })
	srv.OnShutdown("nats", func(context.Context) error { return nc.Drain() })
	n, err := notify.New(pool, nc, sender, notify.Options{Recipient: cfg.NotifyEmail, From: cfg.EmailFrom,
		AckWait: cfg.AckWait, MaxDeliver: cfg.MaxDeliver, SendRetries: cfg.SendRetries, ClaimTime: cfg.ClaimTime,
		Logger: log, Metrics: srv.Metrics()})
	if err != nil {
		return err
	}
	srv.AddCheck("postgres", pg.Check(pool))
	srv.AddCheck("nats", natskit.Check(nc))

	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := n.Run(runCtx); err != nil {
			log.Error("consumer stopped", "err", err)
		}
	}()
	srv.OnShutdown("consumer", func(context.Context) error { stop(); wg.Wait(); return nil })
	return srv.Run(ctx)
}

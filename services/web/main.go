// Command web is the BFF: the public site and /admin, rendered on the server.
package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"
	"time"

	"connectrpc.com/connect"

	"pressroom.dev/kit/config"
	"pressroom.dev/kit/connectkit"
	"pressroom.dev/kit/logging"
	"pressroom.dev/kit/server"
	"pressroom.dev/kit/telemetry"
	"pressroom.dev/kit/token"
	"pressroom.dev/proto/gen/article/v1/articlev1connect"
	"pressroom.dev/proto/gen/auth/v1/authv1connect"
	"pressroom.dev/services/web/internal/web"
)

// Config is web's settings (services/web/README.md and the shared ones in services/kit/README.md).
type Config struct {
	config.Common
	config.JWT
	PublicURL       string        `env:"PUBLIC_URL" envDefault:"https://example.com"`
	AuthURL         string        `env:"AUTH_URL" envDefault:"http://auth:8081"`
	ArticleURL      string        `env:"ARTICLE_URL" envDefault:"http://article:8082"`
	MediaURL        string        `env:"MEDIA_URL" envDefault:"http://media:8083"`
	MediaMaxBytes   int64         `env:"MEDIA_MAX_BYTES" envDefault:"10485760"`
	SiteTitle       string        `env:"SITE_TITLE" envDefault:"Pressroom"`
	SiteDescription string        `env:"SITE_DESCRIPTION" envDefault:"Stories, notes and news."`
	PageCacheTTL    time.Duration `env:"PAGE_CACHE_TTL" envDefault:"2s"`
	// Build is set by the image (ENV from its build argument BUILD, the same
	// value as its dev.pressroom.build label).
	Build string `env:"PRESSROOM_BUILD"`
}

func main() {
	if err := run(); err != nil {
		slog.Error("fatal", "err", err)
		os.Exit(1)
	}
}

// pageServingGCPercent: serving a cached page allocates a few KiB against a
// live heap of a few MiB, so at the runtime's default (100) the collector
// ran dozens of times a second under load and took about a tenth of web's
// CPU. At 400 it runs a quarter as often for a larger but still small heap;
// GOMEMLIMIT (set from the pod's memory limit) bounds it. GOGC in the
// environment still wins.
const pageServingGCPercent = 400

func run() error {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(pageServingGCPercent)
	}
	cfg := Config{Common: config.Common{Service: "web", HTTPAddr: ":8080"}}
	if err := config.Load(&cfg); err != nil {
		return err
	}
	log := logging.Setup(cfg.Service, cfg.LogLevel)
	ctx := context.Background()
	stopTracing, err := telemetry.Setup(ctx, cfg.Service, cfg.OTLPEndpoint)
	if err != nil {
		return err
	}
	verifier, err := token.LoadVerifier(cfg.JWTPublicKeyPath, cfg.JWTIssuer, cfg.JWTAudience)
	if err != nil {
		return err
	}
	otelIC, err := telemetry.ConnectInterceptor()
	if err != nil {
		return err
	}
	// One pooled client for every backend; per-call deadlines come from the request.
	hc := &http.Client{Timeout: 30 * time.Second, Transport: telemetry.HTTPTransport(&http.Transport{
		MaxIdleConns: 200, MaxIdleConnsPerHost: 100, IdleConnTimeout: 90 * time.Second})}
	ics := connect.WithInterceptors(otelIC, connectkit.ForwardToken())
	app, err := web.New(web.Options{
		Site:          web.Site{Title: cfg.SiteTitle, Description: cfg.SiteDescription, URL: cfg.PublicURL, Build: cfg.Build},
		Auth:          authv1connect.NewAuthServiceClient(hc, cfg.AuthURL, ics),
		Articles:      articlev1connect.NewArticleServiceClient(hc, cfg.ArticleURL, ics),
		Media:         web.NewMediaClient(cfg.MediaURL, hc),
		Verifier:      verifier,
		PageCacheTTL:  cfg.PageCacheTTL,
		MediaMaxBytes: cfg.MediaMaxBytes,
		Logger:        log,
	})
	if err != nil {
		return err
	}
	srv := server.New(server.Options{Name: cfg.Service, Addr: cfg.HTTPAddr, Logger: log, ShutdownTimeout: cfg.ShutdownTimeout,
		TrustedProxies: cfg.TrustedProxies})
	srv.OnShutdown("tracing", stopTracing)
	app.Register(srv.Engine())
	return srv.Run(ctx)
}

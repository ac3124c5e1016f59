// Command media stores uploaded images under content-addressed names in
// MEDIA_DIR, serves them publicly under /media/, and lists/deletes them for
// the admin UI. Settings: services/media/README.md.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/gin-gonic/gin"

	"pressroom.dev/kit/config"
	"pressroom.dev/kit/logging"
	"pressroom.dev/kit/pg"
	"pressroom.dev/kit/server"
	"pressroom.dev/kit/telemetry"
	"pressroom.dev/kit/token"
	"pressroom.dev/services/media/internal/media"
)

// Config is the media service's environment.
type Config struct {
	config.Common
	DatabaseURL string `env:"DATABASE_URL,required"`
	MediaDir    string `env:"MEDIA_DIR" envDefault:"/data"`
	MaxBytes    int64  `env:"MEDIA_MAX_BYTES" envDefault:"10485760"`
	config.JWT
	PublicURL string `env:"PUBLIC_URL" envDefault:"https://example.com"`
}

func main() {
	if err := run(); err != nil {
		slog.Error("fatal", "err", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := Config{Common: config.Common{Service: "media", HTTPAddr: ":8083"}}
	if err := config.Load(&cfg); err != nil {
		return err
	}
	log := logging.Setup(cfg.Service, cfg.LogLevel)
	srv, err := setup(context.Background(), cfg, log)
	if err != nil {
		return err
	}
	return srv.Run(context.Background())
}

// setup checks the settings, connects, migrates and builds the server;
// on error everything it opened is closed again.
func setup(ctx context.Context, cfg Config, log *slog.Logger) (_ *server.Server, err error) {
	if cfg.MaxBytes < 1 {
		return nil, fmt.Errorf("MEDIA_MAX_BYTES must be a positive number of bytes, got %d", cfg.MaxBytes)
	}
	files, err := media.OpenFiles(cfg.MediaDir)
	if err != nil {
		return nil, err
	}
	verifier, err := token.LoadVerifier(cfg.JWTPublicKeyPath, cfg.JWTIssuer, cfg.JWTAudience)
	if err != nil {
		return nil, fmt.Errorf("JWT_PUBLIC_KEY_PATH: %w", err)
	}
	stopTracing, err := telemetry.Setup(ctx, cfg.Service, cfg.OTLPEndpoint)
	if err != nil {
		return nil, err
	}
	pool, err := pg.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		stopTracing(ctx)
		return nil, err
	}
	defer func() {
		if err != nil {
			pool.Close()
			stopTracing(ctx)
		}
	}()
	if err := pg.Migrate(ctx, pool, media.Migrations); err != nil {
		return nil, err
	}
	svc := media.NewService(media.NewStore(pool), files, cfg.MaxBytes, log)
	// Sweep crash leftovers in the background: a large MEDIA_DIR must not
	// hold up start-up (the probes).
	sweepCtx, stopSweep := context.WithCancel(context.WithoutCancel(ctx))
	sweepDone := make(chan struct{})
	go func() {
		defer close(sweepDone)
		if n, err := svc.SweepOrphans(sweepCtx, time.Now()); err != nil && sweepCtx.Err() == nil {
			log.Warn("sweeping leftover uploads failed", "err", err)
		} else if n > 0 {
			log.Info("removed leftover uploads", "files", n)
		}
	}()
	defer func() {
		if err != nil {
			stopSweep()
			<-sweepDone
		}
	}()
	h, err := media.NewHTTP(svc, verifier, cfg.PublicURL, log)
	if err != nil {
		return nil, err
	}
	srv := server.New(server.Options{Name: cfg.Service, Addr: cfg.HTTPAddr, Logger: log,
		ShutdownTimeout: cfg.ShutdownTimeout, TrustedProxies: cfg.TrustedProxies,
		// Uploads of MEDIA_MAX_BYTES over slow links, and downloads to them,
		// take longer than the kit's defaults; the body size stays bounded.
		ReadTimeout: 5 * time.Minute, WriteTimeout: 10 * time.Minute})
	srv.AddCheck("postgres", pg.Check(pool))
	srv.AddCheck("media_dir", func(context.Context) error { return files.CheckWritable() })
	srv.OnShutdown("postgres", func(context.Context) error { pool.Close(); return nil })
	srv.OnShutdown("sweep", func(context.Context) error { stopSweep(); <-sweepDone; return nil })
	srv.OnShutdown("tracing", stopTracing)
	h.Register(srv.Engine())
	srv.Engine().NoRoute(func(c *gin.Context) {
		c.JSON(http.StatusNotFound, gin.H{"error": "no such path: media serves /media/<name>, /media/upload and /media/api/items"})
	})
	log.Info("media ready", "dir", files.Root(), "max_bytes", cfg.MaxBytes, "addr", cfg.HTTPAddr)
	return srv, nil
}

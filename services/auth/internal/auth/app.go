package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"pressroom.dev/kit/config"
	"pressroom.dev/kit/connectkit"
	"pressroom.dev/kit/logging"
	"pressroom.dev/kit/pg"
	"pressroom.dev/kit/server"
	"pressroom.dev/kit/telemetry"
	"pressroom.dev/kit/token"
	"pressroom.dev/proto/gen/auth/v1/authv1connect"
)

// Config is every setting of the auth service (services/auth/README.md, Settings).
type Config struct {
	config.Common
	DatabaseURL       string `env:"DATABASE_URL,required"`
	RedisAddr         string `env:"REDIS_ADDR,required"`
	RedisPassword     string `env:"REDIS_PASSWORD"`
	JWTPrivateKeyPath string `env:"JWT_PRIVATE_KEY_PATH" envDefault:"/keys/jwt_private.pem"`
	config.JWT
	PublicURL          string        `env:"PUBLIC_URL" envDefault:"https://example.com"`
	OIDCIssuerURL      string        `env:"OIDC_ISSUER_URL" envDefault:"https://accounts.google.com"`
	GoogleClientID     string        `env:"GOOGLE_CLIENT_ID"`
	GoogleClientSecret string        `env:"GOOGLE_CLIENT_SECRET"`
	GoogleLoginEnabled bool          `env:"GOOGLE_LOGIN_ENABLED" envDefault:"true"`
	OIDCRedirectURL    string        `env:"OIDC_REDIRECT_URL"` // default $PUBLIC_URL/auth/callback
	AdminEmails        []string      `env:"ADMIN_EMAILS" envSeparator:","`
	AccessTokenTTL     time.Duration `env:"ACCESS_TOKEN_TTL" envDefault:"15m"`
	RefreshTokenTTL    time.Duration `env:"REFRESH_TOKEN_TTL" envDefault:"720h"`
	SessionMaxAge      time.Duration `env:"SESSION_MAX_AGE" envDefault:"2160h"`
	SignInStateTTL     time.Duration `env:"SIGNIN_STATE_TTL" envDefault:"10m"`
	SignInPerMinute    int           `env:"RATE_LIMIT_SIGNIN_PER_MINUTE" envDefault:"20"`
	RefreshPerMinute   int           `env:"RATE_LIMIT_REFRESH_PER_MINUTE" envDefault:"60"`
}

// DefaultConfig has the pre-filled values Load keeps when a variable is unset.
func DefaultConfig() Config {
	return Config{Common: config.Common{Service: "auth", HTTPAddr: ":8081"}}
}

// LoadConfig reads the environment (environ nil = the process's) and checks
// what env tags cannot: one error lists every problem.
func LoadConfig(environ map[string]string) (Config, error) {
	cfg := DefaultConfig()
	err := config.LoadFrom(&cfg, environ)
	// Keep going after the kit's errors so one message lists every problem.
	var problems []string
	if err != nil {
		problems = append(problems, strings.TrimPrefix(err.Error(), "config: "))
	}
	if cfg.OIDCRedirectURL == "" {
		cfg.OIDCRedirectURL = strings.TrimRight(cfg.PublicURL, "/") + "/auth/callback"
	}
	for _, e := range cfg.AdminEmails {
		if e = strings.TrimSpace(e); e != "" && !strings.Contains(e, "@") {
			problems = append(problems, fmt.Sprintf("ADMIN_EMAILS: %q is not an e-mail address (use a comma-separated list)", e))
		}
	}
	for name, d := range map[string]time.Duration{"ACCESS_TOKEN_TTL": cfg.AccessTokenTTL, "REFRESH_TOKEN_TTL": cfg.RefreshTokenTTL,
		"SESSION_MAX_AGE": cfg.SessionMaxAge, "SIGNIN_STATE_TTL": cfg.SignInStateTTL} {
		if d <= 0 {
			problems = append(problems, fmt.Sprintf("%s: must be a positive duration such as 15m, got %s", name, d))
		}
	}
	if cfg.SignInPerMinute < 0 || cfg.RefreshPerMinute < 0 {
		problems = append(problems, "RATE_LIMIT_*_PER_MINUTE: must be 0 (off) or positive")
	}
	if cfg.GoogleLoginEnabled {
		if _, err := NewProvider(cfg.oidcConfig()); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return cfg, fmt.Errorf("config: %s", strings.Join(problems, "; "))
	}
	return cfg, nil
}

func (c Config) oidcConfig() OIDCConfig {
	return OIDCConfig{IssuerURL: c.OIDCIssuerURL, ClientID: c.GoogleClientID, ClientSecret: c.GoogleClientSecret,
		RedirectURL: c.OIDCRedirectURL, HTTPClient: &http.Client{Timeout: 10 * time.Second, Transport: telemetry.HTTPTransport(nil)}}
}

// App is the assembled service: Run it, or Serve it on a listener in tests.
type App struct {
	*server.Server
	Service *Service
	Store   *Store
}

// NewApp connects to Postgres (and migrates) and Redis, loads the keys and
// builds the HTTP server with the Connect handler. Everything it opens is
// closed by the server's shutdown (or Close when it is never run).
func NewApp(ctx context.Context, cfg Config, log *slog.Logger) (*App, error) {
	if log == nil {
		log = slog.Default()
	}
	signer, err := token.LoadSigner(cfg.JWTPrivateKeyPath, cfg.JWTIssuer, []string{cfg.JWTAudience}, cfg.AccessTokenTTL)
	if err != nil {
		return nil, fmt.Errorf("JWT_PRIVATE_KEY_PATH: %w", err)
	}
	verifier, err := token.LoadVerifier(cfg.JWTPublicKeyPath, cfg.JWTIssuer, cfg.JWTAudience)
	if err != nil {
		return nil, fmt.Errorf("JWT_PUBLIC_KEY_PATH: %w", err)
	}
	// Catch a key pair mismatch at start-up, not at the first request.
	probe, err := signer.Sign("00000000-0000-0000-0000-000000000000", "probe@example.com", "", []string{"reader"})
	if err == nil {
		_, err = verifier.Verify(probe)
	}
	if err != nil {
		return nil, fmt.Errorf("JWT_PUBLIC_KEY_PATH (%s) does not verify tokens signed with JWT_PRIVATE_KEY_PATH (%s): %w",
			cfg.JWTPublicKeyPath, cfg.JWTPrivateKeyPath, err)
	}
	var provider *Provider
	if cfg.GoogleLoginEnabled {
		if provider, err = NewProvider(cfg.oidcConfig()); err != nil {
			return nil, err
		}
	}

	pool, err := pg.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	if err := pg.Migrate(ctx, pool, Migrations); err != nil {
		pool.Close()
		return nil, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: cfg.RedisAddr, Password: cfg.RedisPassword})
	cache := NewCache(rdb)

	store := NewStore(pool)
	svc := NewService(store, cache, provider, signer, Settings{
		AdminEmails: cfg.AdminEmails, AccessTTL: cfg.AccessTokenTTL, RefreshTTL: cfg.RefreshTokenTTL,
		SessionMaxAge: cfg.SessionMaxAge, SignInStateTTL: cfg.SignInStateTTL,
		SignInPerMin: cfg.SignInPerMinute, RefreshPerMin: cfg.RefreshPerMinute,
	}, log)

	srv := server.New(server.Options{Name: cfg.Service, Addr: cfg.HTTPAddr, Logger: log, ShutdownTimeout: cfg.ShutdownTimeout,
		TrustedProxies: cfg.TrustedProxies})
	srv.AddCheck("postgres", pg.Check(pool))
	srv.AddCheck("redis", cache.Ping)
	srv.OnShutdown("postgres", func(context.Context) error { pool.Close(); return nil })
	srv.OnShutdown("redis", func(context.Context) error { return rdb.Close() })

	opts, err := connectkit.HandlerOptions(verifier, AnonymousProcedures...)
	if err != nil {
		pool.Close()
		_ = rdb.Close()
		return nil, err
	}
	path, h := authv1connect.NewAuthServiceHandler(NewHandler(svc, log, srv.Metrics()), opts)
	srv.Handle(path, h)
	return &App{Server: srv, Service: svc, Store: store}, nil
}

// Run is the service's main: config, logging, tracing, then serve until SIGTERM.
func Run(ctx context.Context) error {
	cfg, err := LoadConfig(nil)
	if err != nil {
		return err
	}
	log := logging.Setup(cfg.Service, cfg.LogLevel)
	stopTracing, err := telemetry.Setup(ctx, cfg.Service, cfg.OTLPEndpoint)
	if err != nil {
		return err
	}
	app, err := NewApp(ctx, cfg, log)
	if err != nil {
		_ = stopTracing(ctx)
		return err
	}
	app.OnShutdown("tracing", stopTracing)
	if !cfg.GoogleLoginEnabled {
		log.Warn("sign-in is turned off (GOOGLE_LOGIN_ENABLED=false)")
	}
	return app.Run(ctx)
}

// PruneConfig is what `auth prune` needs.
type PruneConfig struct {
	config.Common
	DatabaseURL string        `env:"DATABASE_URL,required"`
	Retention   time.Duration `env:"PRUNE_RETENTION" envDefault:"168h"`
}

// Prune deletes refresh tokens and sessions that expired, were rotated or
// were revoked more than the retention period ago, and prints the counts.
// retention < 0 means "use PRUNE_RETENTION".
func Prune(ctx context.Context, environ map[string]string, retention time.Duration, out io.Writer) error {
	cfg := PruneConfig{Common: config.Common{Service: "auth"}}
	if err := config.LoadFrom(&cfg, environ); err != nil {
		return err
	}
	if retention >= 0 {
		cfg.Retention = retention
	}
	if cfg.Retention < 0 {
		return errors.New("PRUNE_RETENTION must not be negative (e.g. 168h)")
	}
	pool, err := pg.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('refresh_tokens') IS NOT NULL`).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		return errors.New("prune: this database has no auth tables yet; start the auth service once so it migrates")
	}
	res, err := NewStore(pool).Prune(ctx, time.Now().Add(-cfg.Retention))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "pruned %d refresh tokens and %d sessions (retention %s)\n", res.Tokens, res.Sessions, cfg.Retention)
	return nil
}

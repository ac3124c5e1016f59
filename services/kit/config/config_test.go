package config

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

type svcConfig struct {
	Common
	DatabaseURL string `env:"DATABASE_URL,required"`
	NATSURL     string `env:"NATS_URL,required"`
	Port        int    `env:"PORT"`
	Debug       bool   `env:"DEBUG"`
	Name        string `env:"NAME,notEmpty"`
}

func TestLoadListsEveryProblem(t *testing.T) {
	var cfg svcConfig
	err := LoadFrom(&cfg, map[string]string{
		"SHUTDOWN_TIMEOUT": "abc",
		"PORT":             "eighty",
		"DEBUG":            "maybe",
		"LOG_LEVEL":        "loud",
		"NAME":             "",
	})
	if err == nil {
		t.Fatal("expected an error")
	}
	msg := err.Error()
	for _, want := range []string{
		"DATABASE_URL: required but not set",
		"NATS_URL: required but not set",
		`SHUTDOWN_TIMEOUT: "abc" is not a valid time.Duration (e.g. 20s`,
		`PORT: "eighty" is not a valid int (a whole number)`,
		`DEBUG: "maybe" is not a valid bool`,
		`LOG_LEVEL: "loud" is not a valid slog.Level (one of debug`,
		"NAME: must not be empty",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q\nfull error: %s", want, msg)
		}
	}
	if !strings.HasPrefix(msg, "config: 7 problem(s): ") {
		t.Errorf("want a count of 7 problems, got: %s", msg)
	}
}

func TestLoadKeepsPrefilledDefaultsAndParses(t *testing.T) {
	cfg := svcConfig{Common: Common{Service: "article", HTTPAddr: ":8082"}}
	err := LoadFrom(&cfg, map[string]string{
		"DATABASE_URL": "postgres://x@127.0.0.1/db",
		"NATS_URL":     "nats://127.0.0.1:4222",
		"NAME":         "n",
		"LOG_LEVEL":    "debug",
		"PORT":         "9000",
		"HTTP_ADDR":    "127.0.0.1:9999",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Service != "article" {
		t.Errorf("Service = %q, want pre-filled article", cfg.Service)
	}
	if cfg.HTTPAddr != "127.0.0.1:9999" {
		t.Errorf("HTTPAddr = %q, want the env value", cfg.HTTPAddr)
	}
	if cfg.LogLevel != slog.LevelDebug || cfg.Port != 9000 || cfg.ShutdownTimeout != 20*time.Second {
		t.Errorf("parsed wrong: %+v", cfg)
	}
}

func TestLoadRejectsNonPositiveShutdown(t *testing.T) {
	var cfg Common
	err := LoadFrom(&cfg, map[string]string{"SHUTDOWN_TIMEOUT": "-1s"})
	if err == nil || !strings.Contains(err.Error(), "SHUTDOWN_TIMEOUT: must be positive") {
		t.Fatalf("got %v", err)
	}
}

func TestLoadFromProcessEnv(t *testing.T) {
	t.Setenv("SERVICE_NAME", "media")
	var cfg Common
	if err := Load(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Service != "media" {
		t.Errorf("Service = %q", cfg.Service)
	}
	var fromNil Common
	if err := LoadFrom(&fromNil, nil); err != nil || fromNil.Service != "media" {
		t.Errorf("LoadFrom(nil) = %q, %v; want the process environment's \"media\"", fromNil.Service, err)
	}
}

func TestJWTBlockDefaultsAndOverrides(t *testing.T) {
	var cfg struct {
		Common
		JWT
	}
	if err := LoadFrom(&cfg, map[string]string{"JWT_ISSUER": "https://auth.example.com"}); err != nil {
		t.Fatal(err)
	}
	if cfg.JWTPublicKeyPath != "/keys/jwt_public.pem" || cfg.JWTAudience != "pressroom" {
		t.Errorf("defaults not applied: %+v", cfg.JWT)
	}
	if cfg.JWTIssuer != "https://auth.example.com" {
		t.Errorf("JWT_ISSUER not read: %q", cfg.JWTIssuer)
	}
}

func TestTrustedProxiesDefaultToThePodNetworkAndAreChecked(t *testing.T) {
	var cfg svcConfig
	if err := LoadFrom(&cfg, map[string]string{"DATABASE_URL": "x", "NATS_URL": "x", "NAME": "n"}); err != nil {
		t.Fatal(err)
	}
	if len(cfg.TrustedProxies) != 1 || cfg.TrustedProxies[0] != "10.42.0.0/16" {
		t.Errorf("default TRUSTED_PROXIES = %q, want the K3s pod network", cfg.TrustedProxies)
	}
	cfg = svcConfig{}
	if err := LoadFrom(&cfg, map[string]string{"DATABASE_URL": "x", "NATS_URL": "x", "NAME": "n", "TRUSTED_PROXIES": "none"}); err != nil {
		t.Fatal(err)
	}
	if len(cfg.TrustedProxies) != 0 {
		t.Errorf("TRUSTED_PROXIES=none = %q, want none", cfg.TrustedProxies)
	}
	cfg = svcConfig{}
	err := LoadFrom(&cfg, map[string]string{"DATABASE_URL": "x", "NATS_URL": "x", "NAME": "n", "TRUSTED_PROXIES": "10.0.0.1, edge"})
	if err == nil || !strings.Contains(err.Error(), `TRUSTED_PROXIES: "edge" is not an IP address or CIDR`) {
		t.Errorf("a bad TRUSTED_PROXIES entry: %v", err)
	}
}

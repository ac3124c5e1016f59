package main

import (
	"strings"
	"testing"
	"time"
)

func TestConfigDefaultsAndErrors(t *testing.T) {
	cfg, err := loadConfig(map[string]string{"DATABASE_URL": "postgres://a@localhost/article_db", "NATS_URL": "nats://localhost:4222"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != ":8082" || cfg.PublicURL != "https://example.com" || cfg.JWTPublicKeyPath != "/keys/jwt_public.pem" ||
		cfg.OutboxPoll != 5*time.Second || cfg.OutboxRetention != 72*time.Hour || cfg.OutboxBatch != 500 {
		t.Fatalf("defaults: %+v", cfg)
	}
	_, err = loadConfig(map[string]string{})
	if err == nil || !strings.Contains(err.Error(), "DATABASE_URL") || !strings.Contains(err.Error(), "NATS_URL") {
		t.Fatalf("missing settings: got %v, want both named", err)
	}
	_, err = loadConfig(map[string]string{"DATABASE_URL": "x", "NATS_URL": "y", "OUTBOX_BATCH_SIZE": "0", "OUTBOX_RETENTION": "-1h"})
	if err == nil || !strings.Contains(err.Error(), "OUTBOX_BATCH_SIZE") || !strings.Contains(err.Error(), "OUTBOX_RETENTION") {
		t.Fatalf("bad outbox settings: got %v", err)
	}
}

package main

import (
	"strings"
	"testing"
)

func TestConfigDefaultsAndErrors(t *testing.T) {
	cfg, err := loadConfig(map[string]string{"DATABASE_URL": "postgres://a@localhost/notification_db", "NATS_URL": "nats://localhost:4222"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != ":8084" || cfg.ResendAPIKey != "" || cfg.ResendBaseURL != "https://api.resend.com" || cfg.MaxDeliver != 20 {
		t.Fatalf("defaults: %+v", cfg)
	}
	_, err = loadConfig(map[string]string{"NOTIFY_EMAIL": "nope"})
	for _, want := range []string{"DATABASE_URL", "NATS_URL"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("got %v, want %s named", err, want)
		}
	}
	_, err = loadConfig(map[string]string{"DATABASE_URL": "x", "NATS_URL": "y", "NOTIFY_EMAIL": "nope",
		"EMAIL_FROM": "not an address", "RESEND_BASE_URL": "ftp://x", "NOTIFY_MAX_DELIVER": "0"})
	for _, want := range []string{"NOTIFY_EMAIL", "EMAIL_FROM", "RESEND_BASE_URL", "NOTIFY_MAX_DELIVER"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("got %v, want %s named", err, want)
		}
	}
}

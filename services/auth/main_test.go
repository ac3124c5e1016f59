package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"pressroom.dev/kit/pg"
	"pressroom.dev/kit/testkit"
	"pressroom.dev/services/auth/internal/auth"
)

func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }

// The `auth prune` subcommand as an operator (or a CronJob) runs it.
func TestPruneSubcommand(t *testing.T) {
	dsn := testkit.Postgres(t)
	t.Setenv("DATABASE_URL", dsn)
	var out bytes.Buffer
	err := run([]string{"prune"}, &out)
	if err == nil || !strings.Contains(err.Error(), "start the auth service once") {
		t.Fatalf("prune on an empty database: %v", err)
	}
	ctx := context.Background()
	pool, err := pg.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := pg.Migrate(ctx, pool, auth.Migrations); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"prune", "-retention", "24h"}, &out); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "pruned 0 refresh tokens and 0 sessions (retention 24h0m0s)\n" {
		t.Fatalf("output %q", got)
	}
	if err := run([]string{"prune", "-retention", "soon"}, &out); err == nil {
		t.Fatal("bad -retention accepted")
	}
	if err := run([]string{"migrate"}, &out); err == nil || !strings.Contains(err.Error(), "auth prune") {
		t.Fatalf("unknown command: %v", err)
	}
}

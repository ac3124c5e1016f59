package auth

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestPrune(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	uid := e.signIn("p@example.com").GetUser().GetId()
	// One live session from the sign-in above stays untouched throughout.
	day := 24 * time.Hour
	now := time.Now()
	mk := func(revokedAgo, expiresIn time.Duration) uuid.UUID {
		id := uuid.New()
		var revoked any
		if revokedAgo > 0 {
			revoked = now.Add(-revokedAgo)
		}
		if _, err := e.pool.Exec(ctx, `INSERT INTO sessions (id, user_id, expires_at, revoked_at) VALUES ($1, $2, $3, $4)`,
			id, uid, now.Add(expiresIn), revoked); err != nil {
			t.Fatal(err)
		}
		return id
	}
	tok := func(sid uuid.UUID, name string, expiresIn, rotatedAgo time.Duration) {
		var rotated any
		if rotatedAgo > 0 {
			rotated = now.Add(-rotatedAgo)
		}
		if _, err := e.pool.Exec(ctx, `INSERT INTO refresh_tokens (token_hash, session_id, expires_at, rotated_at) VALUES ($1, $2, $3, $4)`,
			hashToken(name), sid, now.Add(expiresIn), rotated); err != nil {
			t.Fatal(err)
		}
	}
	live := mk(0, 60*day)
	tok(live, "live-current", 30*day, 0)          // keep
	tok(live, "live-rotated-new", 30*day, day)    // rotated 1 day ago: keep (within 7d retention)
	tok(live, "live-rotated-old", 30*day, 10*day) // rotated 10 days ago: delete
	expired := mk(0, -10*day)
	tok(expired, "expired-old", -10*day, 0) // expired 10 days ago: delete, then its session
	recent := mk(0, -day)
	tok(recent, "expired-recent", -day, 0) // expired yesterday: keep (could still matter for audits)
	revokedOld := mk(9*day, 30*day)
	tok(revokedOld, "revoked-old", 20*day, 0) // session revoked 9 days ago: delete both
	revokedNew := mk(day, 30*day)
	tok(revokedNew, "revoked-new", 20*day, 0) // revoked yesterday: keep

	var out bytes.Buffer
	if err := Prune(ctx, map[string]string{"DATABASE_URL": e.dsn}, -1, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "pruned 3 refresh tokens and 2 sessions") {
		t.Fatalf("prune output: %q", out.String())
	}
	for name, want := range map[string]bool{"live-current": true, "live-rotated-new": true, "live-rotated-old": false,
		"expired-old": false, "expired-recent": true, "revoked-old": false, "revoked-new": true} {
		var n int
		if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM refresh_tokens WHERE token_hash = $1`, hashToken(name)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if (n == 1) != want {
			t.Errorf("token %s: present=%v, want %v", name, n == 1, want)
		}
	}
	var sessions int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM sessions`).Scan(&sessions); err != nil || sessions != 4 {
		t.Fatalf("sessions left = %d (%v), want 4 (sign-in, live, recent, revokedNew)", sessions, err)
	}
	// Pruning again finds nothing; a shorter retention via the flag finds more.
	out.Reset()
	if err := Prune(ctx, map[string]string{"DATABASE_URL": e.dsn}, -1, &out); err != nil || !strings.Contains(out.String(), "pruned 0 refresh tokens and 0 sessions") {
		t.Fatalf("second prune: %q %v", out.String(), err)
	}
	out.Reset()
	if err := Prune(ctx, map[string]string{"DATABASE_URL": e.dsn}, time.Hour, &out); err != nil || !strings.Contains(out.String(), "pruned 3 refresh tokens and 2 sessions") {
		t.Fatalf("prune with 1h retention: %q %v", out.String(), err)
	}
	// The signed-in user's session still refreshes.
	if _, err := e.app.Store.Session(ctx, live); err != nil {
		t.Fatalf("live session: %v", err)
	}
}

func TestPruneNeedsDatabase(t *testing.T) {
	err := Prune(context.Background(), map[string]string{}, -1, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Fatalf("prune without DATABASE_URL: %v", err)
	}
}

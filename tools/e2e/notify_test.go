package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pressroom.dev/tools/devlaunch"
)

// waitNotification waits until the notification service has recorded the
// articles.published event for slug (its exactly-once table), and that it
// was delivered (in dev, through the log channel).
func waitNotification(t *testing.T, ctx context.Context, p *devlaunch.Platform, slug string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, p.DSNs["notification"])
	if err != nil {
		t.Fatalf("connect to notification_db: %v", err)
	}
	defer conn.Close(context.Background())
	deadline := time.Now().Add(30 * time.Second)
	var status string
	for {
		err := conn.QueryRow(ctx, `SELECT status FROM notifications WHERE slug = $1 AND event_type = 'articles.published'`, slug).Scan(&status)
		if err == nil && status == "sent" {
			return
		}
		if err != nil && err != pgx.ErrNoRows {
			t.Fatalf("query notifications: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no sent articles.published notification for %q after 30s (status %q)", slug, status)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

package main

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"pressroom.dev/tools/devlaunch"
)

// The launch stops when its parent (make, go run, an IDE task) is gone,
// and not while the parent lives.
func TestWatchParentStopsWhenTheParentGoes(t *testing.T) {
	var ppid atomic.Int64
	ppid.Store(4242)
	getppid := func() int { return int(ppid.Load()) }
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	go watchParent(ctx, cancel, getppid, 5*time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	if ctx.Err() != nil {
		t.Fatalf("stopped while the parent lives: %v", context.Cause(ctx))
	}
	ppid.Store(1) // reparented to init
	select {
	case <-ctx.Done():
		if !strings.Contains(context.Cause(ctx).Error(), "parent process 4242 exited") {
			t.Fatalf("cause: %v", context.Cause(ctx))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the launch kept running after its parent exited")
	}
}

func TestPassThroughHandsServicesTheirSettings(t *testing.T) {
	env := map[string]string{"RESEND_API_KEY": "re_123", "LOG_LEVEL": "debug", "EMAIL_FROM": "news@example.com", "PATH": "/bin"}
	got := passThrough(func(k string) string { return env[k] })
	if got["notification"]["RESEND_API_KEY"] != "re_123" || got["notification"]["EMAIL_FROM"] != "news@example.com" {
		t.Errorf("notification gets %v", got["notification"])
	}
	if _, ok := got["notification"]["NOTIFY_EMAIL"]; ok {
		t.Error("an unset variable was passed on empty")
	}
	for _, s := range devlaunch.Services {
		if got[s]["LOG_LEVEL"] != "debug" {
			t.Errorf("%s gets LOG_LEVEL %q", s, got[s]["LOG_LEVEL"])
		}
		if _, ok := got[s]["PATH"]; ok {
			t.Errorf("%s gets PATH", s)
		}
	}
	if _, ok := got["web"]["RESEND_API_KEY"]; ok {
		t.Error("web gets the Resend key")
	}
}

func TestAdminsNamesEveryAdmin(t *testing.T) {
	if got := admins(list(" alice@example.com, bob@example.com ,")); got != "alice@example.com, bob@example.com become admin" {
		t.Errorf("got %q", got)
	}
	if got := admins([]string{"admin@example.com"}); got != "admin@example.com becomes admin" {
		t.Errorf("got %q", got)
	}
}

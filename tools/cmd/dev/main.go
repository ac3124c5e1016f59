// Command dev runs the whole pressroom platform on this machine (`make dev`):
// Postgres, Redis, NATS JetStream, a local OIDC provider, the five services
// and an edge proxy on http://localhost:8080. Ctrl-C stops everything.
//
// Settings: DEV_ADDR (edge listen address, default 127.0.0.1:8080),
// DEV_DATA (keep data in this directory across runs; default: throw-away),
// ADMIN_EMAILS (default admin@example.com; every address listed is admin),
// and LOG_LEVEL, RESEND_API_KEY, EMAIL_FROM, NOTIFY_EMAIL passed to the
// services that read them.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"pressroom.dev/tools/devlaunch"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "dev:", err)
		os.Exit(1)
	}
}

func run() error {
	sigs := make(chan os.Signal, 4)
	// SIGHUP too: a closed terminal or dropped SSH session stops cleanly.
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	var running atomic.Pointer[devlaunch.Platform]
	go func() {
		for sig := range sigs {
			if ctx.Err() == nil {
				cancel(fmt.Errorf("%v", sig))
			} else if p := running.Load(); p != nil {
				fmt.Println("dev: killing every process now")
				p.Kill()
			}
		}
	}()
	go watchParent(ctx, cancel, os.Getppid, time.Second)
	opt := devlaunch.Options{
		EdgeAddr:    envOr("DEV_ADDR", "127.0.0.1:8080"),
		DataDir:     os.Getenv("DEV_DATA"),
		AdminEmails: list(os.Getenv("ADMIN_EMAILS")),
		Env:         passThrough(os.Getenv),
		Log:         os.Stdout,
	}
	fmt.Println("dev: building the services and starting Postgres, Redis, NATS and the OIDC provider…")
	started := time.Now()
	p, err := devlaunch.Start(ctx, opt)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("stopped during start-up (%v)", context.Cause(ctx))
		}
		return err
	}
	fmt.Printf(`
  pressroom is running (ready in %s)

    open        %s
    sign in     with ANY e-mail on the local sign-in page;
                %s (ADMIN_EMAILS)
    services    %s
    data        %s
    stop        Ctrl-C (stops everything%s)

`, time.Since(started).Round(100*time.Millisecond), p.URL, admins(p.AdminEmails), services(p), p.StateDir(),
		map[bool]string{true: "; DEV_DATA is kept", false: " and removes the temp data"}[opt.DataDir != ""])
	running.Store(p)
	var failed error
	select {
	case <-ctx.Done():
		fmt.Printf("\ndev: stopping (%v)… Ctrl-C again kills everything at once\n", context.Cause(ctx))
	case failed = <-p.Exited():
		cancel(failed) // from here a signal kills, as after Ctrl-C
		fmt.Println("\ndev: a process exited on its own; stopping the rest…")
	}
	return errors.Join(failed, p.Stop())
}

// watchParent stops the launch when the process that started it is gone
// (ppid changes): `go run` and IDE task runners do not pass SIGTERM on, and
// an orphaned launcher would keep the ports, databases and temp data.
func watchParent(ctx context.Context, cancel context.CancelCauseFunc, getppid func() int, every time.Duration) {
	parent := getppid()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if getppid() != parent {
				cancel(fmt.Errorf("its parent process %d exited", parent))
				return
			}
		}
	}
}

// passThrough hands the settings a developer may set for a service from the
// launcher's environment to it (services otherwise get only what the
// launcher sets): LOG_LEVEL for every service, and notification's e-mail
// settings, so `RESEND_API_KEY=... make dev` really sends.
func passThrough(getenv func(string) string) map[string]map[string]string {
	env := map[string]map[string]string{}
	set := func(service, key string) {
		if v := getenv(key); v != "" {
			if env[service] == nil {
				env[service] = map[string]string{}
			}
			env[service][key] = v
		}
	}
	for _, s := range devlaunch.Services {
		set(s, "LOG_LEVEL")
	}
	for _, k := range []string{"RESEND_API_KEY", "EMAIL_FROM", "NOTIFY_EMAIL"} {
		set("notification", k)
	}
	return env
}

func list(v string) []string {
	var out []string
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// admins: auth makes every ADMIN_EMAILS address admin when it signs in.
func admins(emails []string) string {
	if len(emails) == 1 {
		return emails[0] + " becomes admin"
	}
	return strings.Join(emails, ", ") + " become admin"
}

func services(p *devlaunch.Platform) string {
	var b strings.Builder
	for i, s := range devlaunch.Services {
		if i > 0 {
			b.WriteString("\n                ")
		}
		fmt.Fprintf(&b, "%-13s %s", s, p.ServiceURLs[s])
	}
	return b.String()
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

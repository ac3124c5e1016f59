// Command dev runs the whole pressroom platform on this machine (`make dev`):
// Postgres, Redis, NATS JetStream, a local OIDC provider, the five services
// and an edge proxy on http://localhost:8080. Ctrl-C stops everything.
//
// Settings: DEV_ADDR (edge listen address, default 127.0.0.1:8080),
// DEV_DATA (keep data in this directory across runs; default: throw-away),
// ADMIN_EMAILS (default admin@example.com; the first becomes admin at sign-up).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opt := devlaunch.Options{
		EdgeAddr: envOr("DEV_ADDR", "127.0.0.1:8080"),
		DataDir:  os.Getenv("DEV_DATA"),
		Log:      os.Stdout,
	}
	if v := os.Getenv("ADMIN_EMAILS"); v != "" {
		for _, e := range strings.Split(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				opt.AdminEmails = append(opt.AdminEmails, e)
			}
		}
	}
	fmt.Println("dev: building the services and starting Postgres, Redis, NATS and the OIDC provider…")
	started := time.Now()
	p, err := devlaunch.Start(ctx, opt)
	if err != nil {
		return err
	}
	fmt.Printf(`
  pressroom is running (ready in %s)

    open        %s
    sign in     with ANY e-mail on the local sign-in page;
                %s becomes admin (ADMIN_EMAILS)
    services    %s
    data        %s
    stop        Ctrl-C (stops everything%s)

`, time.Since(started).Round(100*time.Millisecond), p.URL, p.AdminEmails[0], services(p), p.StateDir(),
		map[bool]string{true: "; DEV_DATA is kept", false: " and removes the temp data"}[opt.DataDir != ""])
	<-ctx.Done()
	fmt.Println("\ndev: stopping…")
	return p.Stop()
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

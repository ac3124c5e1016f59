// Command localkube runs real Kubernetes on this machine until interrupted,
// with no Docker and no internet, and prints the kubeconfig to use.
//
//	go run ./tools/cmd/localkube            # a control plane on 127.0.0.1 (objects only)
//	go run ./tools/cmd/localkube -node      # a K3s-equivalent node that runs pods (make cluster)
//
// Ctrl-C (or SIGTERM) stops what it started and removes what it made. With
// -node and -dir the node keeps its data there and comes back with it on the
// next start, like a rebooted droplet; -fresh empties -dir first.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"pressroom.dev/tools/localkube"
	"pressroom.dev/tools/localstack"
)

func main() {
	dir := flag.String("dir", "", "state directory (default: a temp dir, removed on exit)")
	out := flag.String("kubeconfig-out", "", "also copy the admin kubeconfig to this path")
	node := flag.Bool("node", false, "run a node that runs pods (needs root), with the local stack's internet servers")
	fresh := flag.Bool("fresh", false, "with -node -dir: start from an empty state directory")
	crdDelay := flag.Duration("traefik-crd-delay", 30*time.Second, "with -node: how long after start Traefik's CRDs arrive (K3s' helm-install job)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "localkube: unexpected arguments %q; see -h\n", flag.Args())
		os.Exit(2)
	}
	if err := run(*dir, *out, *node, *fresh, *crdDelay); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(dir, out string, node, fresh bool, crdDelay time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if fresh {
		if dir == "" || !node {
			return errors.New("localkube: -fresh needs -node and -dir")
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("localkube: -fresh: %w", err)
		}
	}
	o := localkube.Options{Dir: dir, Log: os.Stderr}
	if node {
		o.Node, o.Slot, o.TraefikCRDDelay = true, 0, crdDelay
	}
	c, err := localkube.Start(ctx, o)
	if err != nil {
		if errors.Is(err, localkube.ErrSlotBusy) {
			return fmt.Errorf("%w\nmake cluster is already running; use its KUBECONFIG, or stop it (Ctrl-C in its terminal, or kill that pid)", err)
		}
		return err
	}
	var errs []error
	if node {
		inet, err := localstack.StartInternet(ctx, c, filepath.Join(c.Dir, "internet"))
		if err == nil {
			defer inet.Close()
			err = localstack.WriteClusterFile(c, inet)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if out != "" && len(errs) == 0 {
		b, err := os.ReadFile(c.Kubeconfig)
		if err == nil {
			err = os.WriteFile(out, b, 0o600)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("localkube: copy kubeconfig to %s: %w", out, err))
		}
	}
	if len(errs) == 0 {
		fmt.Printf("export KUBECONFIG=%s\n", c.Kubeconfig)
		if node {
			localstack.PrintHowTo(os.Stderr, c)
		}
		fmt.Fprintln(os.Stderr, "localkube: running; press Ctrl-C to stop")
		select {
		case <-ctx.Done():
		case name := <-c.Died():
			errs = append(errs, fmt.Errorf("localkube: %s exited on its own (its log is in %s/logs); the node is stopped so it cannot run half-broken", name, c.Dir))
		}
	}
	fmt.Fprintln(os.Stderr, "localkube: stopping")
	if err := c.Stop(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	fmt.Fprintln(os.Stderr, "localkube: stopped")
	return nil
}

// Command localkube runs a real Kubernetes control plane (etcd,
// kube-apiserver, kube-controller-manager) on 127.0.0.1 until interrupted,
// with no Docker and no internet. It prints the kubeconfig path:
//
//	go run ./tools/cmd/localkube            # Ctrl-C stops it and removes its state
//	go run ./tools/cmd/localkube -dir /tmp/k -kubeconfig-out ~/.kube/localkube
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"pressroom.dev/tools/localkube"
)

func main() {
	dir := flag.String("dir", "", "state directory (default: a temp dir in /dev/shm, removed on exit)")
	out := flag.String("kubeconfig-out", "", "also copy the admin kubeconfig to this path")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "localkube: unexpected arguments %q; see -h\n", flag.Args())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := localkube.Start(ctx, localkube.Options{Dir: *dir, Log: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *out != "" {
		b, err := os.ReadFile(c.Kubeconfig)
		if err == nil {
			err = os.WriteFile(*out, b, 0o600)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "localkube: copy kubeconfig to %s: %v\n", *out, err)
		}
	}
	fmt.Printf("export KUBECONFIG=%s\n", c.Kubeconfig)
	fmt.Fprintln(os.Stderr, "localkube: running; press Ctrl-C to stop")
	<-ctx.Done()
	if err := c.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "localkube: stopped")
}

// Command localstack runs tools/pulumi.sh on the `local` stack: infra/
// deployed onto make cluster's node, with every image built on this machine
// and imported into the node (make up|preview|destroy|rollback STACK=local).
//
//	localstack [-cluster DIR] up -s local
//
// Before `up` and `preview` it rebuilds the images from this checkout (an
// unchanged service keeps its digest) and writes the stack's configuration;
// the stack's project and state live in the cluster's directory, so a fresh
// cluster starts a fresh stack.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"pressroom.dev/tools/localstack"
	"pressroom.dev/tools/offline"
	"pressroom.dev/tools/toolchain"
)

func main() {
	home, _ := os.UserHomeDir()
	cluster := flag.String("cluster", filepath.Join(home, ".local", "state", "pressroom", "cluster"), "make cluster's state directory")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: localstack [-cluster DIR] <tools/pulumi.sh arguments>, e.g. up -s local")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*cluster, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(clusterDir string, args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	repo, err := offline.Repo()
	if err != nil {
		return err
	}
	cf, err := localstack.ReadClusterFile(clusterDir)
	if err != nil {
		return err
	}
	dir := filepath.Join(clusterDir, "local-stack")
	var p *offline.Project
	switch args[0] {
	case "up", "preview":
		p, _, err = localstack.Prepare(ctx, repo, cf, dir, os.Stderr)
	default:
		var tools toolchain.Pulumi
		if tools, err = toolchain.EnsurePulumi(ctx); err == nil {
			p, err = localstack.Project(dir, repo, tools)
		}
	}
	if err != nil {
		return err
	}
	stop()
	script := filepath.Join(repo, "tools", "pulumi.sh")
	return syscall.Exec(script, append([]string{script}, args...), p.Env)
}

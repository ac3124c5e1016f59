// Command nodeimages builds the node's images without Docker and,
// with -address, imports them into containerd for the kubelet. It prints
// the built images as JSON (ref = what pod specs pin).
//
//	nodeimages -out /var/tmp/images -services auth,web -datastores \
//	  -part coredns=/opt/bin/coredns@v1.14.6 -address /run/containerd/containerd.sock
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"pressroom.dev/tools/nodeimages"
)

type parts []string

func (p *parts) String() string     { return strings.Join(*p, ",") }
func (p *parts) Set(v string) error { *p = append(*p, v); return nil }

func main() {
	var (
		out         = flag.String("out", "", "directory for the archives (required)")
		repo        = flag.String("repo", ".", "workspace root (go.work)")
		services    = flag.String("services", "", "comma-separated services to build, e.g. auth,article,media,notification,web")
		datastores  = flag.Bool("datastores", false, "build postgres, redis and busybox from Debian packages")
		address     = flag.String("address", "", "containerd socket: import when set")
		namespace   = flag.String("namespace", "k8s.io", "containerd namespace")
		snapshotter = flag.String("snapshotter", "", "snapshotter CRI uses (default overlayfs)")
		partFlags   parts
	)
	flag.Var(&partFlags, "part", "name=binary@tag for a row of nodeimages.Parts (repeatable)")
	flag.Parse()
	if *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	imgs, err := build(*out, *repo, *services, *datastores, partFlags)
	if err == nil && *address != "" {
		im := nodeimages.Importer{Address: *address, Namespace: *namespace, Snapshotter: *snapshotter,
			Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }}
		err = im.Import(context.Background(), imgs...)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nodeimages:", err)
		os.Exit(1)
	}
	type row struct {
		nodeimages.Image
		Ref, TagRef string
	}
	var rows []row
	for _, i := range imgs {
		rows = append(rows, row{i, i.Ref(), i.TagRef()})
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	enc.Encode(rows)
}

func build(out, repo, services string, datastores bool, partFlags []string) ([]nodeimages.Image, error) {
	var specs []nodeimages.Spec
	for _, svc := range strings.FieldsFunc(services, func(r rune) bool { return r == ',' }) {
		port, err := nodeimages.ServicePort(repo, svc)
		if err != nil {
			return nil, err
		}
		bin := filepath.Join(out, "bin", svc)
		fmt.Fprintf(os.Stderr, "go build ./services/%s\n", svc)
		if err := nodeimages.BuildServiceBinary(context.Background(), repo, svc, bin); err != nil {
			return nil, err
		}
		specs = append(specs, nodeimages.ServiceSpec(svc, bin, port))
	}
	for _, p := range partFlags {
		name, rest, ok1 := strings.Cut(p, "=")
		bin, tag, ok2 := strings.Cut(rest, "@")
		part, ok3 := nodeimages.PartByName(name)
		if !ok1 || !ok2 || !ok3 {
			return nil, fmt.Errorf("-part %q: want <name>=<binary>@<tag> with a name from nodeimages.Parts", p)
		}
		specs = append(specs, part.Spec(tag, bin))
	}
	if datastores {
		pg, err := nodeimages.PostgresSpec()
		if err != nil {
			return nil, err
		}
		redis, err := nodeimages.RedisSpec()
		if err != nil {
			return nil, err
		}
		bb, err := nodeimages.BusyboxSpec(nodeimages.Registry+"/busybox", "1.35")
		if err != nil {
			return nil, err
		}
		specs = append(specs, pg, redis, bb)
	}
	var imgs []nodeimages.Image
	for _, s := range specs {
		img, err := nodeimages.Build(s, out)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "built %s %s (%.1f MiB)\n", img.TagRef(), img.Digest, float64(img.Size)/(1<<20))
		imgs = append(imgs, img)
	}
	return imgs, nil
}

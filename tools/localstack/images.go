package localstack

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"pressroom.dev/tools/nodeimages"
	"pressroom.dev/tools/toolchain"
)

// Services and their ports, as the Dockerfiles EXPOSE them (infra's
// platform.Ports; tools cannot import infra).
var Services = map[string]int{"auth": 8081, "article": 8082, "media": 8083, "notification": 8084, "web": 8080}

// Images are every image the local stack deploys.
type Images struct {
	Services    map[string]nodeimages.Image // auth, article, media, notification, web
	Datastores  map[string]nodeimages.Image // postgres, redis, nats, jaeger
	CertManager map[string]nodeimages.Image // controller, webhook, cainjector, acmesolver, startupapicheck
}

// All lists every image once.
func (i *Images) All() []nodeimages.Image {
	var out []nodeimages.Image
	for _, m := range []map[string]nodeimages.Image{i.Services, i.Datastores, i.CertManager} {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			out = append(out, m[k])
		}
	}
	return out
}

// Stand-ins for the pinned upstream images, which cannot be pulled here:
// the same programs where a Go module has them (NATS 2.10, Jaeger v2 2.12
// for the upstream 2.21, cert-manager), Debian's where it does not
// (PostgreSQL 15 for the upstream 17, Redis 7.0 for 7.4).
const (
	natsVersion        = "v2.10.29"
	jaegerVersion      = "2.12.0"
	certManagerVersion = "v1.11.5"
)

// BuildImages builds the services from this checkout and packs every image
// under dir. Unchanged sources give unchanged digests.
func BuildImages(ctx context.Context, repo string, parts toolchain.NodeParts, dir string, log io.Writer) (*Images, error) {
	t0 := time.Now()
	imgs := &Images{Services: map[string]nodeimages.Image{}, Datastores: map[string]nodeimages.Image{}, CertManager: map[string]nodeimages.Image{}}
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return nil, fmt.Errorf("localstack: %w", err)
	}
	build := func(spec nodeimages.Spec, sub string) (nodeimages.Image, error) {
		img, err := nodeimages.Build(spec, filepath.Join(dir, sub))
		if err != nil {
			return img, fmt.Errorf("localstack: image %s: %w", spec.Name, err)
		}
		return img, nil
	}
	for _, svc := range sortedKeys(Services) {
		out := filepath.Join(bin, svc)
		if err := nodeimages.BuildServiceBinary(ctx, repo, svc, out); err != nil {
			return nil, fmt.Errorf("localstack: %w", err)
		}
		img, err := build(nodeimages.ServiceSpec(svc, out, Services[svc]), svc)
		if err != nil {
			return nil, err
		}
		imgs.Services[svc] = img
	}
	pg, err := nodeimages.PostgresSpec()
	if err != nil {
		return nil, fmt.Errorf("localstack: postgres image: %w", err)
	}
	redis, err := nodeimages.RedisSpec()
	if err != nil {
		return nil, fmt.Errorf("localstack: redis image: %w", err)
	}
	part := func(name, tag, binary string) nodeimages.Spec {
		p, _ := nodeimages.PartByName(name)
		return p.Spec(tag, binary)
	}
	for key, spec := range map[string]nodeimages.Spec{
		"postgres": pg, "redis": redis,
		"nats":   part("nats", natsVersion, parts.Path("nats-server")),
		"jaeger": part("jaeger", jaegerVersion, parts.Path("jaeger")),
	} {
		if imgs.Datastores[key], err = build(spec, key); err != nil {
			return nil, err
		}
	}
	for key, cmd := range map[string]string{
		"controller": "controller", "webhook": "webhook", "cainjector": "cainjector",
		"acmesolver": "acmesolver", "startupapicheck": "ctl",
	} {
		spec := part("cert-manager-"+cmd, certManagerVersion, parts.Path("cert-manager-"+cmd))
		if imgs.CertManager[key], err = build(spec, "cert-manager-"+cmd); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(log, "localstack: %d images built in %s\n", len(imgs.All()), time.Since(t0).Round(time.Millisecond))
	return imgs, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Variant is service svc's image (built by BuildImages into imagesDir) with
// extra labels: the same program under another digest, e.g. for a test
// that deploys a change and rolls it back.
func Variant(imagesDir, svc string, labels map[string]string) (nodeimages.Image, error) {
	spec := nodeimages.ServiceSpec(svc, filepath.Join(imagesDir, "bin", svc), Services[svc])
	spec.Labels = labels
	// As services/web/Dockerfile does with its BUILD argument: the label's
	// value is also the environment the service shows its build from.
	if b, ok := labels["dev.pressroom.build"]; ok {
		spec.Env = append(spec.Env, "PRESSROOM_BUILD="+b)
	}
	img, err := nodeimages.Build(spec, filepath.Join(imagesDir, svc+"-variant"))
	if err != nil {
		return img, fmt.Errorf("localstack: image %s: %w", spec.Name, err)
	}
	return img, nil
}

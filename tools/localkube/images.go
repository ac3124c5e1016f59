package localkube

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"pressroom.dev/tools/nodeimages"
	"pressroom.dev/tools/toolchain"
)

// nodeParts are the images the node itself deploys: key (as addons/*.yaml
// name them), nodeimages part, tag, and where the toolchains put the binary.
var nodeParts = []struct {
	key, part, tag string
	kube           bool // built by kube-toolchain (else node-toolchain)
}{
	{"pause", "pause", "3.10", true},
	{"coredns", "coredns", "1.14.6", false},
	{"localpath", "local-path-provisioner", "v0.0.37", false},
	{"metricsserver", "metrics-server", "v0.8.0", false},
	{"traefik", "traefik", "v3.7.8", false},
}

// buildNodeImages packs the node's images into dir, no image being
// pullable here (unchanged binaries give the same digests, so a rebuild
// changes nothing a pod references).
func buildNodeImages(ctx context.Context, kube toolchain.Kube, parts toolchain.NodeParts, dir string, log io.Writer) (map[string]nodeimages.Image, error) {
	out := map[string]nodeimages.Image{}
	for _, np := range nodeParts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		part, ok := nodeimages.PartByName(np.part)
		if !ok {
			return nil, fmt.Errorf("localkube: nodeimages has no part %q", np.part)
		}
		bin := parts.Path(np.part)
		if np.kube {
			bin = kube.Path(np.part)
		}
		img, err := nodeimages.Build(part.Spec(np.tag, bin), filepath.Join(dir, np.part))
		if err != nil {
			return nil, fmt.Errorf("localkube: image %s: %w", np.part, err)
		}
		out[np.key] = img
	}
	bb, err := nodeimages.BusyboxSpec(nodeimages.Registry+"/busybox", "debian")
	if err == nil {
		out["busybox"], err = nodeimages.Build(bb, filepath.Join(dir, "busybox"))
	}
	if err != nil {
		return nil, fmt.Errorf("localkube: busybox image: %w", err)
	}
	fmt.Fprintf(log, "localkube: %d node images in %s\n", len(out), dir)
	return out, nil
}

package nodeimages

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// Importer loads archives into containerd with ctr.
type Importer struct {
	Ctr       string // ctr binary; "" is "ctr"
	Address   string // containerd's socket
	Namespace string // "k8s.io" for the kubelet's CRI
	// Snapshotter must be the one CRI uses (its containerd config);
	// "" is containerd's default, overlayfs.
	Snapshotter string
	Logf        func(format string, args ...any) // optional progress
}

func (im Importer) logf(format string, args ...any) {
	if im.Logf != nil {
		im.Logf(format, args...)
	}
}

// Import imports images into the k8s.io-style namespace with the default
// snapshotter. See Importer.Import.
func Import(ctx context.Context, ctrBinary, address, namespace string, images ...Image) error {
	return Importer{Ctr: ctrBinary, Address: address, Namespace: namespace}.Import(ctx, images...)
}

// Import makes each image runnable by CRI as Name@Digest with
// imagePullPolicy IfNotPresent: CRI resolves a reference only through an
// image record of exactly that name, which a pull creates and a plain
// import does not. `ctr images import --base-name Name --digests` creates
// both Name:Tag and Name@<manifest digest>, and unpacks into the
// snapshotter. Images whose two records already point at Digest and are
// unpacked are skipped, so re-importing costs one `ctr images check`.
func (im Importer) Import(ctx context.Context, images ...Image) error {
	have, err := im.check(ctx)
	if err != nil {
		return err
	}
	for _, img := range images {
		if have.ready(img) {
			im.logf("up to date: %s (%s)", img.Ref(), img.Tag)
			continue
		}
		im.logf("importing %s as %s and %s", img.Archive, img.TagRef(), img.Ref())
		args := []string{"images", "import", "--base-name", img.Name, "--digests"}
		if im.Snapshotter != "" {
			args = append(args, "--snapshotter", im.Snapshotter)
		}
		if _, err := im.ctr(ctx, append(args, img.Archive)...); err != nil {
			return err
		}
	}
	if have, err = im.check(ctx); err != nil {
		return err
	}
	for _, img := range images {
		if !have.ready(img) {
			return fmt.Errorf("after import, %s and %s are not both at %s and unpacked: %v / %v",
				img.TagRef(), img.Ref(), img.Digest, have[img.TagRef()], have[img.Ref()])
		}
	}
	return nil
}

type record struct {
	digest   string
	complete bool
	unpacked bool
}

type records map[string]record

func (r records) ready(img Image) bool {
	for _, ref := range []string{img.TagRef(), img.Ref()} {
		rec, ok := r[ref]
		if !ok || rec.digest != img.Digest || !rec.complete || !rec.unpacked {
			return false
		}
	}
	return true
}

// check parses `ctr images check`: REF TYPE DIGEST STATUS… SIZE… UNPACKED.
func (im Importer) check(ctx context.Context) (records, error) {
	args := []string{"images", "check"}
	if im.Snapshotter != "" {
		args = append(args, "--snapshotter", im.Snapshotter)
	}
	out, err := im.ctr(ctx, args...)
	if err != nil {
		return nil, err
	}
	recs := records{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || f[0] == "REF" {
			continue
		}
		recs[f[0]] = record{digest: f[2], complete: f[3] == "complete", unpacked: f[len(f)-1] == "true"}
	}
	return recs, nil
}

func (im Importer) ctr(ctx context.Context, args ...string) ([]byte, error) {
	bin := im.Ctr
	if bin == "" {
		bin = "ctr"
	}
	ns := im.Namespace
	if ns == "" {
		ns = "k8s.io"
	}
	full := []string{"--namespace", ns}
	if im.Address != "" {
		full = append(full, "--address", im.Address)
	}
	full = append(full, args...)
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, full...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", bin, strings.Join(full, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

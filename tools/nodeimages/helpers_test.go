package nodeimages

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// readImage opens an archive with go-containerregistry (not with this
// package's code) and validates every digest in it.
func readImage(t *testing.T, img Image) (v1.Image, *v1.IndexManifest) {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Open(img.Archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := untar(tar.NewReader(f), dir, false); err != nil {
		t.Fatal(err)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	h, err := v1.NewHash(img.Digest)
	if err != nil {
		t.Fatal(err)
	}
	out, err := idx.Image(h)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(out); err != nil {
		t.Fatalf("validate %s: %v", img.Ref(), err)
	}
	return out, im
}

// unpackRootfs extracts the image's layers into dir with owners and modes.
func unpackRootfs(t *testing.T, img v1.Image, dir string) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		err = untar(tar.NewReader(rc), dir, true)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
}

func untar(tr *tar.Reader, dir string, owners bool) error {
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(hdr.Name)
		if strings.HasPrefix(name, "..") || filepath.IsAbs(name) {
			return errors.New("bad tar path " + hdr.Name)
		}
		p := filepath.Join(dir, name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeSymlink:
			err = os.Symlink(hdr.Linkname, p)
		case tar.TypeReg:
			var f *os.File
			if f, err = os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600); err == nil {
				_, err = io.Copy(f, tr)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
		default:
			err = errors.New("unexpected tar type in " + hdr.Name)
		}
		if err == nil && owners {
			err = os.Lchown(p, hdr.Uid, hdr.Gid)
		}
		if err == nil && hdr.Typeflag != tar.TypeSymlink {
			err = syscall.Chmod(p, uint32(hdr.Mode)) // keeps setgid/sticky bits
		}
		if err != nil {
			return err
		}
	}
}

// layerEntries lists the single layer's headers by path.
func layerEntries(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %v, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out["/"+strings.TrimSuffix(hdr.Name, "/")] = hdr
	}
}

package nodeimages

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// epoch is every timestamp in an image: the digest must not depend on when
// or where it was built.
var epoch = time.Unix(0, 0).UTC()

// Build writes the image as an OCI layout tar under outDir.
func Build(spec Spec, outDir string) (Image, error) {
	if err := checkName(spec.Name); err != nil {
		return Image{}, err
	}
	files, err := normalize(spec.Files)
	if err != nil {
		return Image{}, fmt.Errorf("%s: %w", spec.Name, err)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return Image{}, err
	}
	key, err := buildKey(spec)
	if err != nil {
		return Image{}, fmt.Errorf("%s: %w", spec.Name, err)
	}
	if img, ok := cached(outDir, key); ok {
		return img, nil
	}
	layer, err := writeLayer(outDir, files)
	if err != nil {
		return Image{}, fmt.Errorf("%s: layer: %w", spec.Name, err)
	}
	defer os.Remove(layer.path)

	cfg := v1.ConfigFile{
		Architecture: "amd64",
		OS:           "linux",
		Created:      v1.Time{Time: epoch},
		History:      []v1.History{{Created: v1.Time{Time: epoch}, CreatedBy: "pressroom.dev/tools/nodeimages"}},
		RootFS:       v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{layer.diffID}},
		Config: v1.Config{
			Entrypoint: spec.Entrypoint, Cmd: spec.Cmd, Env: spec.Env, User: spec.User,
			WorkingDir: spec.WorkingDir, Labels: spec.Labels, StopSignal: spec.StopSignal,
		},
	}
	for _, p := range spec.ExposedPorts {
		if cfg.Config.ExposedPorts == nil {
			cfg.Config.ExposedPorts = map[string]struct{}{}
		}
		cfg.Config.ExposedPorts[p] = struct{}{}
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return Image{}, err
	}
	cfgDesc := descriptor(types.OCIConfigJSON, cfgJSON)
	layerDesc := v1.Descriptor{MediaType: types.OCILayer, Size: layer.size, Digest: layer.digest}
	manJSON, err := json.Marshal(v1.Manifest{
		SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
		Config: cfgDesc, Layers: []v1.Descriptor{layerDesc},
	})
	if err != nil {
		return Image{}, err
	}
	manDesc := descriptor(types.OCIManifestSchema1, manJSON)
	img := Image{Name: spec.Name, Tag: spec.Tag, Digest: manDesc.Digest.String(), Size: cfgDesc.Size + layer.size}
	if img.Tag == "" {
		img.Tag = "sha256-" + manDesc.Digest.Hex[:12]
	}
	// containerd names the import after io.containerd.image.name; ref.name
	// is for other OCI tools.
	manDesc.Platform = &v1.Platform{OS: "linux", Architecture: "amd64"}
	manDesc.Annotations = map[string]string{
		"io.containerd.image.name":          img.TagRef(),
		"org.opencontainers.image.ref.name": img.Tag,
	}
	idxJSON, err := json.Marshal(v1.IndexManifest{
		SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{manDesc},
	})
	if err != nil {
		return Image{}, err
	}
	img.Archive = filepath.Join(outDir, strings.NewReplacer("/", "_", ":", "_").Replace(spec.Name)+"_"+img.Tag+".oci.tar")
	err = writeArchive(img.Archive, []blob{
		{digest: cfgDesc.Digest, data: cfgJSON},
		{digest: manDesc.Digest, data: manJSON},
		{digest: layer.digest, path: layer.path, size: layer.size},
	}, idxJSON)
	if err != nil {
		return Image{}, err
	}
	remember(outDir, key, img)
	return img, nil
}

func descriptor(mt types.MediaType, b []byte) v1.Descriptor {
	sum := sha256.Sum256(b)
	return v1.Descriptor{MediaType: mt, Size: int64(len(b)), Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}}
}

func checkName(name string) error {
	host, rest, ok := strings.Cut(name, "/")
	if !ok || rest == "" || !(strings.ContainsAny(host, ".:") || host == "localhost") {
		return fmt.Errorf("image name %q: want <registry host>/<path> (CRI rewrites other names to docker.io)", name)
	}
	if name != strings.ToLower(name) || strings.ContainsAny(rest, ":@ ") {
		return fmt.Errorf("image name %q: lower case, no tag or digest", name)
	}
	return nil
}

// normalize cleans paths, lets later entries win, adds missing parents and
// sorts, so the tar never depends on the order the caller listed files in.
func normalize(in []File) ([]File, error) {
	byPath := map[string]File{}
	for _, f := range in {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
			return nil, fmt.Errorf("bad path %q: want a clean absolute path", f.Path)
		}
		if f.Link != "" {
			f.Mode = os.ModeSymlink | 0o777
		}
		byPath[f.Path] = f
	}
	for p := range byPath {
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			parent, ok := byPath[d]
			if !ok {
				byPath[d] = Dir(d, 0o755, 0, 0)
			} else if !parent.Mode.IsDir() {
				// A symlinked directory would send later entries elsewhere on unpack.
				return nil, fmt.Errorf("%s: parent %s is not a directory", p, d)
			}
		}
	}
	out := make([]File, 0, len(byPath))
	for _, f := range byPath {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

type layerFile struct {
	path           string
	size           int64
	digest, diffID v1.Hash
}

func writeLayer(dir string, files []File) (layerFile, error) {
	tmp, err := os.CreateTemp(dir, ".layer-*")
	if err != nil {
		return layerFile{}, err
	}
	lf := layerFile{path: tmp.Name()}
	fail := func(err error) (layerFile, error) {
		tmp.Close()
		os.Remove(lf.path)
		return layerFile{}, err
	}
	gzSum, tarSum := sha256.New(), sha256.New()
	counter := &countWriter{w: io.MultiWriter(tmp, gzSum)}
	// Best compression saves ~1% for 3x the time.
	zw, _ := gzip.NewWriterLevel(counter, gzip.DefaultCompression)
	tw := tar.NewWriter(io.MultiWriter(zw, tarSum))
	for _, f := range files {
		if err := writeEntry(tw, f); err != nil {
			return fail(fmt.Errorf("%s: %w", f.Path, err))
		}
	}
	if err := tw.Close(); err != nil {
		return fail(err)
	}
	if err := zw.Close(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fail(err)
	}
	lf.size, lf.digest, lf.diffID = counter.n, sum(gzSum), sum(tarSum)
	return lf, nil
}

func sum(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func writeEntry(tw *tar.Writer, f File) error {
	hdr := &tar.Header{
		Name: strings.TrimPrefix(f.Path, "/"), ModTime: epoch,
		Uid: f.UID, Gid: f.GID, Mode: tarMode(f.Mode),
	}
	if len(f.Capabilities) > 0 {
		xa, err := capabilityXattr(f.Capabilities)
		if err != nil {
			return err
		}
		hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": string(xa)}
	}
	switch {
	case f.Mode&os.ModeSymlink != 0:
		if f.Link == "" {
			return fmt.Errorf("symlink without a target")
		}
		hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, f.Link, 0o777
		return tw.WriteHeader(hdr)
	case f.Mode.IsDir():
		hdr.Typeflag, hdr.Name = tar.TypeDir, hdr.Name+"/"
		if f.Mode.Perm() == 0 {
			hdr.Mode |= 0o755
		}
		return tw.WriteHeader(hdr)
	}
	hdr.Typeflag = tar.TypeReg
	var src io.Reader = bytes.NewReader(f.Content)
	hdr.Size = int64(len(f.Content))
	if f.Source != "" {
		r, err := os.Open(f.Source)
		if err != nil {
			return err
		}
		defer r.Close()
		st, err := r.Stat()
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("source %s is not a regular file", f.Source)
		}
		if f.Mode&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky) == 0 {
			hdr.Mode = tarMode(st.Mode())
		}
		src, hdr.Size = r, st.Size()
	} else if f.Mode.Perm() == 0 {
		hdr.Mode |= 0o644
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err := io.CopyN(tw, src, hdr.Size)
	return err
}

// tarMode turns Go's mode flags into the Unix permission bits tar stores.
func tarMode(m os.FileMode) int64 {
	mode := int64(m.Perm())
	if m&os.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

type blob struct {
	digest v1.Hash
	data   []byte
	path   string // instead of data
	size   int64
}

// writeArchive writes an OCI image layout as a tar, atomically.
func writeArchive(dst string, blobs []blob, index []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".archive-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	tw := tar.NewWriter(tmp)
	put := func(name string, size int64, r io.Reader) error {
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: epoch, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := io.CopyN(tw, r, size)
		return err
	}
	layout := []byte(`{"imageLayoutVersion":"1.0.0"}`)
	err = put("oci-layout", int64(len(layout)), bytes.NewReader(layout))
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err == nil {
			err = tw.WriteHeader(&tar.Header{Name: d, Mode: 0o755, ModTime: epoch, Typeflag: tar.TypeDir})
		}
	}
	for _, b := range blobs {
		if err != nil {
			break
		}
		name := "blobs/sha256/" + b.digest.Hex
		if b.path == "" {
			err = put(name, int64(len(b.data)), bytes.NewReader(b.data))
			continue
		}
		var f *os.File
		if f, err = os.Open(b.path); err == nil {
			err = put(name, b.size, f)
			f.Close()
		}
	}
	if err == nil {
		err = put("index.json", int64(len(index)), bytes.NewReader(index))
	}
	if err == nil {
		err = tw.Close()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

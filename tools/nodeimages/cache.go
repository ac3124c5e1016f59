package nodeimages

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
)

// Packing a layer gzips every file again (tens of seconds for the larger
// binaries), so Build remembers what it made: the key covers the spec and
// each source file's path, size, mode and modification time; an unchanged
// key returns the archive already written.

// buildKey identifies spec and the current state of its source files.
func buildKey(spec Spec) (string, error) {
	type src struct {
		Path    string
		Size    int64
		ModTime int64
		Mode    os.FileMode
	}
	srcs := make([]src, 0, len(spec.Files))
	for _, f := range spec.Files {
		if f.Source == "" {
			continue
		}
		st, err := os.Stat(f.Source)
		if err != nil {
			return "", err
		}
		srcs = append(srcs, src{f.Source, st.Size(), st.ModTime().UnixNano(), st.Mode()})
	}
	b, err := json.Marshal(struct {
		Spec    Spec
		Sources []src
		Version int
	}{spec, srcs, 1})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16]), nil
}

func cacheFile(outDir, key string) string { return filepath.Join(outDir, ".build-"+key+".json") }

// cached returns the image a previous Build of the same key wrote.
func cached(outDir, key string) (Image, bool) {
	b, err := os.ReadFile(cacheFile(outDir, key))
	if err != nil {
		return Image{}, false
	}
	var img Image
	if json.Unmarshal(b, &img) != nil {
		return Image{}, false
	}
	if _, err := os.Stat(img.Archive); err != nil {
		return Image{}, false
	}
	return img, true
}

// remember records img for key (atomically: concurrent builders may race).
func remember(outDir, key string, img Image) {
	b, err := json.Marshal(img)
	if err != nil {
		return
	}
	tmp, err := os.CreateTemp(outDir, ".build-*")
	if err != nil {
		return
	}
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil && cerr == nil {
		_ = os.Rename(tmp.Name(), cacheFile(outDir, key))
	} else {
		_ = os.Remove(tmp.Name())
	}
}

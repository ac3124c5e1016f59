package media

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Files is the content-addressed file tree under MEDIA_DIR:
//
//	<root>/<first two hex digits>/<hash>.<ext>   published files
//	<root>/.tmp/upload-*                         uploads in progress
//
// Uploads are written to .tmp (same filesystem), fsynced and renamed into
// place, so a published name always holds complete bytes.
type Files struct {
	root string
	tmp  string
}

// StaleTemp is how old a temp file must be before Sweep removes it: younger
// ones may belong to an upload still running (in this or another replica).
const StaleTemp = time.Hour

// OpenFiles prepares root (creating it and its tmp dir if needed).
func OpenFiles(root string) (*Files, error) {
	if root == "" {
		return nil, errors.New("MEDIA_DIR is empty: set it to a writable directory")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("MEDIA_DIR %q: %w", root, err)
	}
	f := &Files{root: abs, tmp: filepath.Join(abs, ".tmp")}
	if err := os.MkdirAll(f.tmp, 0o750); err != nil {
		return nil, fmt.Errorf("MEDIA_DIR %q must be a writable directory: %w", root, err)
	}
	return f, nil
}

// Root is the absolute media directory.
func (f *Files) Root() string { return f.root }

// Path is where a name lives. Only a parsed Name can become a path.
func (f *Files) Path(n Name) string {
	return filepath.Join(f.root, n.Hash[:2], n.String())
}

// CreateTemp opens a new temp file for an upload.
func (f *Files) CreateTemp() (*os.File, error) {
	return os.CreateTemp(f.tmp, "upload-*")
}

// Publish moves a complete, synced temp file to n's path. When the name
// already exists (same bytes uploaded before) the temp file is dropped.
// Callers hold the hash lock, so no delete of n runs meanwhile.
func (f *Files) Publish(tmpPath string, n Name) (created bool, err error) {
	dst := f.Path(n)
	if _, err := os.Lstat(dst); err == nil {
		return false, os.Remove(tmpPath)
	}
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return false, err
	}
	if err := os.Rename(tmpPath, dst); err != nil {
		return false, err
	}
	// The rename is durable only once the directory entry is on disk.
	return true, syncDir(dir)
}

// Remove deletes n's file; a missing file is not an error.
func (f *Files) Remove(n Name) error {
	err := os.Remove(f.Path(n))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// Open opens n's file for reading.
func (f *Files) Open(n Name) (*os.File, error) { return os.Open(f.Path(n)) }

// CheckWritable proves the directory accepts writes (readiness).
func (f *Files) CheckWritable() error {
	t, err := os.CreateTemp(f.tmp, "ready-*")
	if err != nil {
		return fmt.Errorf("media dir not writable: %w", err)
	}
	name := t.Name()
	_, werr := t.Write([]byte("ok"))
	cerr := t.Close()
	rerr := os.Remove(name)
	return errors.Join(werr, cerr, rerr)
}

// SweepTemp removes temp files older than StaleTemp, left by a crash.
func (f *Files) SweepTemp(now time.Time) (removed int, err error) {
	entries, err := os.ReadDir(f.tmp)
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || now.Sub(info.ModTime()) < StaleTemp {
			continue
		}
		if os.Remove(filepath.Join(f.tmp, e.Name())) == nil {
			removed++
		}
	}
	return removed, nil
}

// Published lists every published file's name with its modification time.
// Files that don't parse as names are ignored (never touched).
func (f *Files) Published() (map[Name]time.Time, error) {
	out := map[Name]time.Time{}
	shards, err := os.ReadDir(f.root)
	if err != nil {
		return nil, err
	}
	for _, s := range shards {
		if !s.IsDir() || len(s.Name()) != 2 || strings.HasPrefix(s.Name(), ".") {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(f.root, s.Name()))
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			n, err := ParseName(e.Name())
			if err != nil || n.Hash[:2] != s.Name() {
				continue
			}
			if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
				out[n] = info.ModTime()
			}
		}
	}
	return out, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}

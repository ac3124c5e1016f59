package nodeimages

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// libDirs is the host's library search order: /etc/ld.so.conf (with its
// includes), then the loader's built-in multiarch and system directories.
func libDirs() []string {
	var dirs []string
	seen := map[string]bool{}
	add := func(d string) {
		if d = path.Clean(d); !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	var readConf func(string, int)
	readConf = func(file string, depth int) {
		f, err := os.Open(file)
		if err != nil || depth > 8 {
			return
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line, _, _ := strings.Cut(sc.Text(), "#")
			line = strings.TrimSpace(line)
			if inc, ok := strings.CutPrefix(line, "include "); ok {
				matches, _ := filepath.Glob(strings.TrimSpace(inc))
				for _, m := range matches {
					readConf(m, depth+1)
				}
			} else if strings.HasPrefix(line, "/") {
				add(line)
			}
		}
	}
	readConf("/etc/ld.so.conf", 0)
	for _, d := range []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"} {
		add(d)
	}
	return dirs
}

// closure collects ELF files with everything the loader maps for them:
// PT_INTERP and DT_NEEDED (via RPATH/RUNPATH, then libDirs), recursively.
// Files keep their host paths; symlinks on the way are kept as symlinks.
type closure struct {
	dirs    []string
	files   map[string]File
	scanned map[string]bool
}

func newClosure() *closure {
	return &closure{dirs: libDirs(), files: map[string]File{}, scanned: map[string]bool{}}
}

// addELF adds p (a host path, kept as the image path) and its libraries.
func (c *closure) addELF(p string) error {
	real, err := c.addPath(p)
	if err != nil {
		return err
	}
	if c.scanned[real] {
		return nil
	}
	c.scanned[real] = true
	f, err := elf.Open(real)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			b := make([]byte, prog.Filesz)
			if _, err := prog.ReadAt(b, 0); err != nil {
				return fmt.Errorf("%s: interpreter: %w", p, err)
			}
			if err := c.addELF(strings.TrimRight(string(b), "\x00")); err != nil {
				return err
			}
		}
	}
	needed, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	var search []string
	for _, tag := range []elf.DynTag{elf.DT_RPATH, elf.DT_RUNPATH} {
		vals, _ := f.DynString(tag)
		for _, v := range vals {
			for _, d := range strings.Split(v, ":") {
				search = append(search, strings.ReplaceAll(strings.ReplaceAll(d, "${ORIGIN}", path.Dir(real)), "$ORIGIN", path.Dir(real)))
			}
		}
	}
	search = append(search, c.dirs...)
	for _, lib := range needed {
		found := ""
		if strings.Contains(lib, "/") {
			found = lib
		} else {
			for _, d := range search {
				if isELF64(path.Join(d, lib)) {
					found = path.Join(d, lib)
					break
				}
			}
		}
		if found == "" {
			return fmt.Errorf("%s: library %s not found in %v", p, lib, search)
		}
		if err := c.addELF(found); err != nil {
			return err
		}
	}
	return nil
}

// isELF64 skips same-named libraries of another ABI, as ld.so does.
func isELF64(p string) bool {
	f, err := elf.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	return f.Class == elf.ELFCLASS64 && f.Machine == elf.EM_X86_64
}

// addPath adds p, following a symlink in its last component and adding
// the link and its target. Directory symlinks on the host (usrmerge) are
// not reproduced: the image gets real directories. It returns the host
// path of the final file.
func (c *closure) addPath(p string) (string, error) {
	for range 40 {
		st, err := os.Lstat(p)
		if err != nil {
			return "", err
		}
		if st.Mode()&os.ModeSymlink == 0 {
			if !st.Mode().IsRegular() {
				return "", fmt.Errorf("%s: not a regular file", p)
			}
			c.files[p] = File{Path: p, Source: p, Mode: st.Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid)}
			return p, nil
		}
		link, err := os.Readlink(p)
		if err != nil {
			return "", err
		}
		c.files[p] = Symlink(p, link)
		if !path.IsAbs(link) {
			link = path.Join(path.Dir(p), link)
		}
		p = path.Clean(link)
	}
	return "", fmt.Errorf("%s: too many symlinks", p)
}

// isELFFile reports whether p starts with the ELF magic.
func isELFFile(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 4)
	_, err = f.Read(b)
	return err == nil && string(b) == elf.ELFMAG
}

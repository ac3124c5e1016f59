// Package boottest runs a server's user-data script under bash in a scratch
// root, with the outside world replaced by stub commands that record every
// call: curl serves fixtures (and fails like `curl -f` for anything else),
// systemctl, mount, mountpoint and sleep only record. The script's own file
// work (mkdir, install, chmod, sha256sum ...) is real.
package boottest

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// File is one regular file under the scratch root.
type File struct {
	Content string
	Mode    fs.FileMode
}

// Node is a scratch root and its stubs; Run may be called more than once.
type Node struct {
	t        *testing.T
	Root     string            // the node's "/"
	Fixtures map[string]string // URL → body served by the curl stub
	dir      string
}

// Result is what one run did.
type Result struct {
	Err    error
	Stderr string
	Calls  []string // the stubs' calls in order ("systemctl daemon-reload", "curl URL", ...)
	Files  map[string]File
}

// New makes an empty scratch root; fixtures may be added before Run.
func New(t *testing.T) *Node {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	dir := t.TempDir()
	n := &Node{t: t, dir: dir, Root: filepath.Join(dir, "root"), Fixtures: map[string]string{}}
	for _, d := range []string{n.Root, filepath.Join(dir, "bin"), filepath.Join(dir, "fixtures"), filepath.Join(dir, "state")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range stubs {
		if err := os.WriteFile(filepath.Join(dir, "bin", name), []byte("#!/bin/bash\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// Device creates a block device stand-in under the root (e.g. the volume's by-id link).
func (n *Node) Device(path string) {
	n.t.Helper()
	p := filepath.Join(n.Root, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		n.t.Fatal(err)
	}
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		n.t.Fatal(err)
	}
}

// Run executes script as the node's user data.
func (n *Node) Run(script string) Result {
	n.t.Helper()
	fixtures := filepath.Join(n.dir, "fixtures")
	for url, body := range n.Fixtures {
		if err := os.WriteFile(filepath.Join(fixtures, key(url)), []byte(body), 0o644); err != nil {
			n.t.Fatal(err)
		}
	}
	calls := filepath.Join(n.dir, "calls")
	_ = os.Remove(calls)
	path := filepath.Join(n.dir, "script")
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		n.t.Fatal(err)
	}
	cmd := exec.Command("bash", path)
	cmd.Env = []string{
		"PATH=" + filepath.Join(n.dir, "bin") + ":/usr/local/bin:/usr/bin:/bin",
		"PRESSROOM_ROOT=" + n.Root,
		"BOOT_CALLS=" + calls,
		"BOOT_FIXTURES=" + fixtures,
		"BOOT_STATE=" + filepath.Join(n.dir, "state"),
		"TMPDIR=" + n.dir,
		"LANG=C",
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	err := cmd.Run()
	r := Result{Err: err, Stderr: stderr.String(), Files: n.Snapshot()}
	if b, rerr := os.ReadFile(calls); rerr == nil {
		r.Calls = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	}
	return r
}

// Snapshot lists every regular file under the root by its path on the node.
func (n *Node) Snapshot() map[string]File {
	n.t.Helper()
	out := map[string]File{}
	err := filepath.WalkDir(n.Root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(n.Root, p)
		out["/"+filepath.ToSlash(rel)] = File{Content: string(b), Mode: info.Mode().Perm()}
		return nil
	})
	if err != nil {
		n.t.Fatal(err)
	}
	return out
}

// Index returns the position of the first call starting with prefix, or -1.
func (r Result) Index(prefix string) int {
	for i, c := range r.Calls {
		if strings.HasPrefix(c, prefix) {
			return i
		}
	}
	return -1
}

// Paths lists the snapshot's paths, sorted.
func (r Result) Paths() []string {
	out := make([]string, 0, len(r.Files))
	for p := range r.Files {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// SHA256 is the hex sha256 of s (what a fixture's checksum is).
func SHA256(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func key(url string) string { return SHA256(url)[:24] }

// Installer is a stand-in for K3s's install.sh: it records how it was
// called and what was in place when it ran (the volume mounted, the
// drop-in that orders K3s after it, the binary it was told not to download).
const Installer = `#!/bin/sh
set -eu
R="${PRESSROOM_ROOT}"
state=""
[ -f "$R/etc/systemd/system/k3s.service.d/10-pressroom-data.conf" ] && state="$state dropin"
[ -x "$R/usr/local/bin/k3s" ] && state="$state binary"
ls "$BOOT_STATE"/mounted:* >/dev/null 2>&1 && state="$state mounted"
echo "installer skip=${INSTALL_K3S_SKIP_DOWNLOAD:-} version=${INSTALL_K3S_VERSION:-} exec=${INSTALL_K3S_EXEC:-} with:$state" >>"$BOOT_CALLS"
`

var stubs = map[string]string{
	"curl": `out=""; url=""
while [ $# -gt 0 ]; do
	case "$1" in
	-o) out=$2; shift 2 ;;
	--retry|--max-time) shift 2 ;;
	-*) shift ;;
	*) url=$1; shift ;;
	esac
done
echo "curl $url" >>"$BOOT_CALLS"
f="$BOOT_FIXTURES/$(printf %s "$url" | sha256sum | cut -c1-24)"
[ -f "$f" ] || { echo "curl: (22) The requested URL returned error: 404" >&2; exit 22; }
if [ -n "$out" ]; then cp "$f" "$out"; else cat "$f"; fi
`,
	"systemctl": `echo "systemctl $*" >>"$BOOT_CALLS"
`,
	"mount": `echo "mount $*" >>"$BOOT_CALLS"
touch "$BOOT_STATE/mounted:$(printf %s "$1" | tr / _)"
`,
	"mountpoint": `[ "$1" = -q ] && shift
[ -f "$BOOT_STATE/mounted:$(printf %s "$1" | tr / _)" ]
`,
	"sleep": `echo "sleep $*" >>"$BOOT_CALLS"
`,
}

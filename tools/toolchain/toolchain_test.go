package toolchain

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestUnquoteUndoesBashPrintfQ(t *testing.T) {
	for _, s := range []string{"/plain/path", "/with space/x", `/odd'quote"/y`, "/a(b)&c"} {
		out, err := exec.Command("bash", "-c", `printf '%q' "$1"`, "_", s).Output()
		if err != nil {
			t.Fatal(err)
		}
		if got := unquote(string(out)); got != s {
			t.Errorf("unquote(%q) = %q, want %q", out, got, s)
		}
	}
}

// A complete cache is used as is: no build, just the paths.
func TestEnsureKubeUsesCompleteCache(t *testing.T) {
	cache := t.TempDir()
	root := filepath.Join(cache, kubeCacheKey(t))
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, ".done"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("etcd"); err != nil {
		t.Skip("etcd not installed (make deps installs it)")
	}
	t.Setenv("PRESSROOM_CACHE", cache)
	k, err := EnsureKube(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if k.Bin != filepath.Join(root, "bin") || !strings.HasSuffix(k.Etcd, "etcd") {
		t.Fatalf("EnsureKube = %+v, want bin %s", k, filepath.Join(root, "bin"))
	}
}

// kubeCacheKey is the cache directory kube-toolchain.sh names, read from its
// version= and recipe= lines, so a recipe bump cannot leave this test behind.
func kubeCacheKey(t *testing.T) string {
	b, err := os.ReadFile("kube-toolchain.sh")
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		for _, k := range []string{"version", "recipe"} {
			if v, ok := strings.CutPrefix(line, k+"="); ok {
				vals[k] = strings.Fields(v)[0]
			}
		}
	}
	if vals["version"] == "" || vals["recipe"] == "" {
		t.Fatal("kube-toolchain.sh: no version= or recipe= line")
	}
	return "kube-" + vals["version"] + "-r" + vals["recipe"]
}

// Without a cache the builder really builds; with a broken Go proxy it must
// fail with the builder's own message, not hang or half-fill the cache.
func TestBuildFailureLeavesNoCache(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("PRESSROOM_CACHE", cache)
	t.Setenv("PRESSROOM_IGNORE_SYSTEM_KUBE", "1")
	t.Setenv("GOPROXY", "off")
	t.Setenv("GOMODCACHE", t.TempDir()) // nothing cached: the download must fail
	t.Setenv("GOFLAGS", "-modcacherw")
	_, err := EnsureKube(t.Context())
	if err == nil || !strings.Contains(err.Error(), "go mod download k8s.io/kubernetes@v1.33.13") {
		t.Fatalf("want a clear download error, got %v", err)
	}
	entries, _ := os.ReadDir(cache)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "kube-") {
			t.Errorf("failed build left %s in the cache", e.Name())
		}
	}
}

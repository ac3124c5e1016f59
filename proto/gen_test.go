package proto_test

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedCodeIsFresh regenerates the Connect/protobuf code into a temp
// dir with the pinned generators and fails when the committed gen/ differs,
// so a .proto edit without `make generate` cannot land.
func TestGeneratedCodeIsFresh(t *testing.T) {
	bin := pinnedTools(t)
	out := t.TempDir()
	tmpl, err := os.ReadFile("buf.gen.yaml")
	if err != nil {
		t.Fatal(err)
	}
	genCfg := filepath.Join(out, "buf.gen.yaml")
	cfg := strings.ReplaceAll(string(tmpl), "out: gen", "out: "+filepath.Join(out, "gen"))
	if err := os.WriteFile(genCfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, bin, filepath.Join(bin, "buf"), "generate", "--template", genCfg)

	want := readTree(t, filepath.Join(out, "gen"))
	got := readTree(t, "gen")
	for name, body := range want {
		if have, ok := got[name]; !ok {
			t.Errorf("gen/%s is missing: run `make generate` and commit", name)
		} else if !bytes.Equal(have, body) {
			t.Errorf("gen/%s is stale: run `make generate` and commit", name)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("gen/%s is no longer generated: delete it (`make generate`)", name)
		}
	}
}

// TestLint keeps the contracts within buf's STANDARD rules.
func TestLint(t *testing.T) {
	bin := pinnedTools(t)
	run(t, bin, filepath.Join(bin, "buf"), "lint")
}

// pinnedTools builds (or reuses from the cache) buf and the protoc plugins at
// the versions tools/gotools.sh pins, and returns their directory.
func pinnedTools(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("bash", "../tools/gotools.sh")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("building the pinned generators with tools/gotools.sh: %v", err)
	}
	cache := os.Getenv("PRESSROOM_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Fatal(err)
		}
		cache = filepath.Join(home, ".cache", "pressroom")
	}
	return filepath.Join(cache, "bin")
}

func run(t *testing.T, bin, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
}

func readTree(t *testing.T, root string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		body, err := os.ReadFile(path)
		files[filepath.ToSlash(rel)] = body
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

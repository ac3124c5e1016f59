package offline

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// pulumiShQuick runs tools/pulumi.sh in dir with an empty toolchain cache and
// a `go` that fails at once: the run must end before any toolchain build.
func pulumiShQuick(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	repo, err := Repo()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	stub := "#!/bin/sh\necho 'test: pulumi.sh went on to build the Pulumi toolchain' >&2\nexit 97\n"
	if err := os.WriteFile(filepath.Join(bin, "go"), []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(repo, "tools", "pulumi.sh"), args...)
	cmd.Dir = dir
	cmd.Env = append(cmd.Environ(),
		"PRESSROOM_CACHE="+t.TempDir(), // would build if it got that far
		"PRESSROOM_IGNORE_SYSTEM_PULUMI=1",
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Bad arguments to tools/pulumi.sh fail at once, before any build, with a
// message that says what to fix.
func TestPulumiShRejectsBadArguments(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "usage: tools/pulumi.sh"},
		{[]string{"rollback", "-s", "prod", "--to", "twelve"}, "--to must be an update number"},
		{[]string{"rollback", "-s", "prod"}, "--to must be an update number"},
		{[]string{"rollback", "--to", "3"}, "name the stack: -s STACK"},
		{[]string{"rollback", "-s", "prod", "--to"}, "--to needs an update number"},
		{[]string{"manifests", "-s", "prod", "--bogus"}, "unknown argument '--bogus'"},
		{[]string{"manifests"}, "name the stack"},
		// An option where a value belongs is a missing value, not a value.
		{[]string{"rollback", "-s", "--to", "3"}, "-s needs a stack name"},
		{[]string{"rollback", "--stack", "--to", "3"}, "--stack needs a stack name"},
		{[]string{"rollback", "--stack=", "--to", "3"}, "--stack needs a stack name"},
		{[]string{"rollback", "-s", "prod", "--to", "--yes"}, "--to needs an update number"}, // make rollback TO= YES=1
		{[]string{"manifests", "-s", "prod", "--out"}, "--out needs a directory"},
		{[]string{"manifests", "-s", "prod", "--out", "-s"}, "--out needs a directory"},
		{[]string{"manifests", "-s", "prod", "--out="}, "--out needs a directory"},
		// Update numbers are decimal, without leading zeros: 012 is not 12.
		{[]string{"rollback", "-s", "prod", "--to", "012"}, "--to must be an update number"},
		{[]string{"rollback", "-s", "prod", "--to", "0"}, "--to must be an update number"},
		{[]string{"rollback", "-s", "prod", "--to", "0x1f"}, "--to must be an update number"},
		{[]string{"rollback", "-s", "prod", "--to", "+3"}, "--to must be an update number"},
		{[]string{"rollback", "-s", "prod", "--to=12a"}, "--to must be an update number"},
		// Options a command does not use are refused, not ignored.
		{[]string{"history", "-s", "prod", "--to", "3"}, "history takes no --to"},
		{[]string{"history", "-s", "prod", "--to=3"}, "history takes no --to"},
		{[]string{"history", "-s", "prod", "--out", "x"}, "history takes no --out"},
		{[]string{"history", "-s", "prod", "--yes"}, "history takes no --yes"},
		{[]string{"history", "-s", "prod", "-y"}, "history takes no --yes"},
		{[]string{"manifests", "-s", "prod", "--to", "3"}, "manifests takes no --to"},
		{[]string{"manifests", "-s", "prod", "--yes"}, "manifests takes no --yes"},
		{[]string{"rollback", "-s", "prod", "--to", "3", "--out", "x"}, "rollback takes no --out"},
		{[]string{"images", "-s", "prod"}, "--to must be an update number"},
		{[]string{"images", "-s", "prod", "--to", "3", "--yes"}, "images takes no --yes"},
		{[]string{"images", "-s", "prod", "--to", "3", "--image", "web=x"}, "images takes no --image"},
		{[]string{"history", "-s", "prod", "--downgrade-cert-manager"}, "history takes no --downgrade-cert-manager"},
		{[]string{"manifests", "-s", "prod", "--image=web=x"}, "manifests takes no --image"},
		// --image names a service and its image by digest.
		{[]string{"rollback", "-s", "prod", "--to", "3", "--image"}, "--image needs SERVICE=IMAGE@sha256:DIGEST"},
		{[]string{"rollback", "-s", "prod", "--to", "3", "--image", "web"}, "--image takes SERVICE=IMAGE@sha256:DIGEST with SERVICE one of auth article media notification web (got 'web')"},
		{[]string{"rollback", "-s", "prod", "--to", "3", "--image", "blog=registry.example.com/pressroom/blog@sha256:" + strings.Repeat("a", 64)}, "SERVICE one of auth"},
		{[]string{"rollback", "-s", "prod", "--to", "3", "--image=web=registry.example.com/pressroom/web:latest"}, "--image web: give the image by digest"},
	} {
		out, err := pulumiShQuick(t, t.TempDir(), tc.args...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("pulumi.sh %q: err=%v, output %q; want an error containing %q", tc.args, err, out, tc.want)
		}
	}
}

// tree records every entry under dir: path -> mode and content.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		v := info.Mode().String()
		if d.Type().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			v += " " + string(b)
		}
		m[rel] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// foreignDir makes a directory holding someone's files, with their modes.
func foreignDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "work")
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{"notes.txt", 0o644}, {".hidden", 0o600}, {"src/main.go", 0o640}} {
		p := filepath.Join(dir, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("keep "+f.path), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// `manifests --out DIR` never deletes or re-modes what it did not write: a
// non-empty directory without the marker of a previous render (the working
// tree, a home directory), a marked one holding other files too, or a file,
// are refused before anything runs, and left exactly as they were.
func TestPulumiShManifestsRefusesForeignOutput(t *testing.T) {
	foreign := foreignDir(t)
	marked := foreignDir(t)
	if err := os.WriteFile(filepath.Join(marked, ".pressroom-manifests"), []byte("# a previous render\n1-manifest\n1-manifest/x.yaml\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "manifests.yaml")
	if err := os.WriteFile(file, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, cwd, out, keep, want string
	}{
		{"foreign directory", t.TempDir(), foreign, foreign, "is not empty and was not written by 'tools/pulumi.sh manifests'"},
		{"the working directory", foreign, ".", foreign, "is not empty and was not written by 'tools/pulumi.sh manifests'"},
		{"marked, with other files", t.TempDir(), marked, marked, "holds files that its previous render did not write"},
		{"a file", t.TempDir(), file, filepath.Dir(file), "exists and is not a directory"},
	} {
		before := tree(t, tc.keep)
		out, err := pulumiShQuick(t, tc.cwd, "manifests", "-s", "staging", "--out", tc.out)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("%s: manifests --out %s: err=%v, output %q; want a refusal containing %q", tc.name, tc.out, err, out, tc.want)
		}
		if after := tree(t, tc.keep); !mapsEqual(before, after) {
			t.Errorf("%s: manifests --out %s changed it:\n before %v\n after  %v", tc.name, tc.out, before, after)
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// tools/pulumi.sh pins, for a render, an image for every service that
// stacks.Services lists: the two lists must stay equal.
func TestPulumiShServicesMatchStacks(t *testing.T) {
	repo, err := Repo()
	if err != nil {
		t.Fatal(err)
	}
	read := func(path string, re *regexp.Regexp) []string {
		b, err := os.ReadFile(filepath.Join(repo, path))
		if err != nil {
			t.Fatal(err)
		}
		m := re.FindSubmatch(b)
		if m == nil {
			t.Fatalf("%s: no match for %s", path, re)
		}
		return strings.FieldsFunc(string(m[1]), func(r rune) bool { return strings.ContainsRune(", \"\n\t", r) })
	}
	sh := read("tools/pulumi.sh", regexp.MustCompile(`(?m)^services=\(([^)]*)\)`))
	st := read("stacks/config.go", regexp.MustCompile(`var Services = \[\]string\{([^}]*)\}`))
	if !slices.Equal(sh, st) {
		t.Fatalf("tools/pulumi.sh services=(%v), stacks.Services = %v: keep them equal", sh, st)
	}
}

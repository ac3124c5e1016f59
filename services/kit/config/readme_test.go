package config

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every environment variable a service reads (an `env:"…"` tag in any
// service's code, the kit's included) is in the README or in the README
// beside the service's code (services/<svc>/README.md, the kit's for the
// settings every service shares), where operators and the stack's authors
// look for it.
func TestReadmeDocumentsEveryVariable(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	beside, err := filepath.Glob(filepath.Join(root, "services", "*", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range beside {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		readme = append(append(readme, '\n'), b...)
	}
	tag := regexp.MustCompile("`env:\"([A-Z0-9_]+)")
	seen := map[string]string{}
	err = filepath.WalkDir(filepath.Join(root, "services"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range tag.FindAllSubmatch(src, -1) {
			seen[string(m[1])] = path
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) < 30 {
		t.Fatalf("found only %d variables: the walk missed the services", len(seen))
	}
	for name, path := range seen {
		if !strings.Contains(string(readme), "`"+name+"`") {
			t.Errorf("%s (read in %s) is not documented in the README", name, path)
		}
	}
}

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
// service's code, the kit's included) is in the page beside that service's
// code (services/<svc>/README.md) or in the kit's, which holds the settings
// every service shares: where operators and the stack's authors look for it.
func TestReadmeDocumentsEveryVariable(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	page := func(svc string) string {
		b, err := os.ReadFile(filepath.Join(root, "services", svc, "README.md"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	kit := page("kit")
	tag := regexp.MustCompile("`env:\"([A-Z0-9_]+)")
	seen := map[string]string{}
	err := filepath.WalkDir(filepath.Join(root, "services"), func(path string, d fs.DirEntry, err error) error {
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
		rel, _ := filepath.Rel(filepath.Join(root, "services"), path)
		svc, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
		if !strings.Contains(kit, "`"+name+"`") && !strings.Contains(page(svc), "`"+name+"`") {
			t.Errorf("%s (read in %s) is not documented in services/%s/README.md or services/kit/README.md", name, path, svc)
		}
	}
}

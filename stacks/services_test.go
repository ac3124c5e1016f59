package stacks

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// Services and Databases are the one list of each in Go; the repository's
// layout is where they are: a service is a directory under services/ with
// a Dockerfile, and has a database when it embeds migrations
// (services/<svc>/internal/<pkg>/migrations).
func TestServicesAreTheServiceDirectories(t *testing.T) {
	// svcOf names the service directory n levels above each match.
	svcOf := func(pattern string, up int) []string {
		matches, err := filepath.Glob(filepath.Join("..", "services", pattern))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, m := range matches {
			for range up {
				m = filepath.Dir(m)
			}
			names = append(names, filepath.Base(m))
		}
		return slices.Compact(slices.Sorted(slices.Values(names)))
	}
	dirs := svcOf(filepath.Join("*", "Dockerfile"), 1)
	if len(dirs) == 0 {
		wd, _ := os.Getwd()
		t.Fatalf("no services/*/Dockerfile found from %s", wd)
	}
	if got := slices.Sorted(slices.Values(Services)); !slices.Equal(got, dirs) {
		t.Errorf("stacks.Services = %v, but services/*/Dockerfile names %v: add or remove the service in stacks/config.go", Services, dirs)
	}
	withDB := svcOf(filepath.Join("*", "internal", "*", "migrations"), 3)
	if got := slices.Sorted(slices.Values(Databases)); len(withDB) == 0 || !slices.Equal(got, withDB) {
		t.Errorf("stacks.Databases = %v, but the services with migrations are %v: keep them equal", Databases, withDB)
	}
}

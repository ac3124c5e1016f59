package stacks

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// Services is the one list of the deployable services in Go; the
// repository's layout is where they are: a directory under services/ with
// a Dockerfile each.
func TestServicesAreTheServiceDirectories(t *testing.T) {
	dockerfiles, err := filepath.Glob(filepath.Join("..", "services", "*", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, f := range dockerfiles {
		dirs = append(dirs, filepath.Base(filepath.Dir(f)))
	}
	if len(dirs) == 0 {
		wd, _ := os.Getwd()
		t.Fatalf("no services/*/Dockerfile found from %s", wd)
	}
	got := slices.Sorted(slices.Values(Services))
	if !slices.Equal(got, dirs) {
		t.Errorf("stacks.Services = %v, but services/*/Dockerfile names %v: add or remove the service in stacks/config.go", Services, dirs)
	}
}

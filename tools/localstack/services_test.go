package localstack

import (
	"maps"
	"path/filepath"
	"slices"
	"testing"

	"pressroom.dev/stacks"
	"pressroom.dev/tools/devlaunch"
	"pressroom.dev/tools/nodeimages"
)

// The tools cannot import infra, so they keep their own lists of the
// services; each must name what stacks.Services names, with the port its
// Dockerfile exposes, and the databases are the services with migrations.
func TestToolsListTheServicesTheStackDeploys(t *testing.T) {
	repo, err := devlaunch.FindRepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Sorted(slices.Values(stacks.Services))
	if got := slices.Sorted(slices.Values(devlaunch.Services)); !slices.Equal(got, want) {
		t.Errorf("devlaunch.Services = %v, stacks.Services = %v: keep them equal", devlaunch.Services, stacks.Services)
	}
	if got := slices.Sorted(maps.Keys(Services)); !slices.Equal(got, want) {
		t.Errorf("localstack.Services names %v, stacks.Services = %v: keep them equal", got, stacks.Services)
	}
	for svc, port := range Services {
		if exposed, err := nodeimages.ServicePort(repo, svc); err != nil || exposed != port {
			t.Errorf("localstack.Services[%s] = %d, services/%s/Dockerfile EXPOSEs %d (%v)", svc, port, svc, exposed, err)
		}
	}
	migrations, err := filepath.Glob(filepath.Join(repo, "services", "*", "internal", "*", "migrations"))
	if err != nil {
		t.Fatal(err)
	}
	var withDB []string
	for _, d := range migrations {
		withDB = append(withDB, filepath.Base(filepath.Dir(filepath.Dir(filepath.Dir(d)))))
	}
	withDB = slices.Compact(slices.Sorted(slices.Values(withDB)))
	if got := slices.Sorted(slices.Values(devlaunch.Databases)); len(withDB) == 0 || !slices.Equal(got, withDB) {
		t.Errorf("devlaunch.Databases = %v, but the services with migrations are %v", devlaunch.Databases, withDB)
	}
}

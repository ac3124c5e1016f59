package localstack

import (
	"maps"
	"slices"
	"testing"

	"pressroom.dev/stacks"
	"pressroom.dev/tools/devlaunch"
	"pressroom.dev/tools/nodeimages"
)

// make dev and the local stack keep their own lists of the services (the
// dev launcher does not link the stack config); each must name what
// stacks.Services and stacks.Databases name, with the port its Dockerfile
// exposes.
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
	if got := slices.Sorted(slices.Values(devlaunch.Databases)); !slices.Equal(got, slices.Sorted(slices.Values(stacks.Databases))) {
		t.Errorf("devlaunch.Databases = %v, stacks.Databases = %v: keep them equal", devlaunch.Databases, stacks.Databases)
	}
}

package offline

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

const digest = "registry.example.com/pressroom/%s@sha256:%064d"

func img(svc string, n int) string { return fmt.Sprintf(digest, svc, n) }

// TestFixtureProgram runs the whole scenario on testdata/program, a small
// program with the real program's config shape, on an API server without a
// node (its Deployments skip the readiness wait). It proves the toolchain,
// localkube's control plane, tools/pulumi.sh (rollback, manifests) and the
// harness on their own, independent of infra/ (which TestLivePlatform in
// tools/e2e runs on a real node).
func TestFixtureProgram(t *testing.T) {
	ctx, tools := engineTest(t, 55*time.Minute)
	c, kubeconfig := startCluster(ctx, t)
	program, err := filepath.Abs("testdata/program")
	if err != nil {
		t.Fatal(err)
	}
	// The fixture is its own module, outside go.work.
	p, err := NewProject(t.TempDir(), "pressroom", program, tools, "GOWORK=off", RaceBuild("-mod=readonly", "-buildvcs=false"))
	if err != nil {
		t.Fatal(err)
	}
	Scenario{
		Stack:      "ci",
		Config:     map[string]string{"pressroom:cluster.mode": "existing"},
		Secrets:    map[string]string{"pressroom:kubeconfig": string(kubeconfig)},
		ImagesKey:  "pressroom:images",
		Images:     map[string]string{"web": img("web", 1), "auth": img("auth", 1)},
		Change:     "web",
		NewImage:   img("web", 2),
		Namespace:  "fixture",
		WantCounts: map[string]int{"Namespace": 1, "Secret": 1, "Deployment": 2},
	}.Run(ctx, t, c, p)
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(string(p))
	return len(p), nil
}

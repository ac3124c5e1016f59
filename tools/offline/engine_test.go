package offline

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"pressroom.dev/tools/localkube"
	"pressroom.dev/tools/toolchain"
)

// engineTest is the start of every test that runs the real Pulumi engine:
// skipped under -short, bounded by d, with the Pulumi toolchain.
func engineTest(t *testing.T, d time.Duration) (context.Context, toolchain.Pulumi) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the real Pulumi engine")
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	tools, err := toolchain.EnsurePulumi(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ctx, tools
}

// startCluster starts a localkube API server, stopped when the test ends,
// and returns it with its admin kubeconfig.
func startCluster(ctx context.Context, t *testing.T) (*localkube.Cluster, []byte) {
	t.Helper()
	c, err := localkube.Start(ctx, localkube.Options{Log: testLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	kubeconfig, err := os.ReadFile(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return c, kubeconfig
}

// exampleStack is the infra program in a new project with the repository's
// Pulumi.<stack>.yaml, as an operator starts from it, its stack created in
// a local file backend and the given secrets set.
func exampleStack(t *testing.T, d time.Duration, stack string, secrets map[string]string) (context.Context, *Project) {
	t.Helper()
	ctx, tools := engineTest(t, d)
	repo, err := Repo()
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewProject(t.TempDir(), "pressroom", filepath.Join(repo, "infra"), tools, RaceBuild())
	if err != nil {
		t.Fatal(err)
	}
	file := "Pulumi." + stack + ".yaml"
	example, err := os.ReadFile(filepath.Join(repo, file))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.Dir, file), example, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := p.Run(ctx, "", "stack", "init", stack); err != nil {
		t.Fatalf("stack init: %v\n%s", err, out)
	}
	for k, v := range secrets {
		if err := p.SetSecret(ctx, stack, k, v); err != nil {
			t.Fatal(err)
		}
	}
	return ctx, p
}

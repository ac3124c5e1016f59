package offline

import (
	"context"
	"os"
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

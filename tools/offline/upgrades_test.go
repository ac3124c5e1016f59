package offline

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A digitalocean stack's first `pulumi preview` runs before any droplet
// exists, so the Kubernetes provider's kubeconfig is unknown. The upgrades
// component applies the controller's release with a provider-side component
// (yaml/v2 ConfigGroup), the kind helm/v4 Chart is, which fails in exactly
// that preview while the kubeconfig is unknown. This keeps "preview works on
// an empty stack" (infra/README.md) true for it, in the real engine and provider.
func TestUpgradesPreviewBeforeTheClusterExists(t *testing.T) {
	ctx, tools := engineTest(t, 30*time.Minute)
	repo, err := Repo()
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewProject(t.TempDir(), "previewcheck", filepath.Join(repo, "infra", "internal", "previewcheck"), tools, RaceBuild())
	if err != nil {
		t.Fatal(err)
	}
	if out, err := p.Run(ctx, "", "stack", "init", "staging"); err != nil {
		t.Fatalf("stack init: %v\n%s", err, out)
	}
	out, err := p.Run(ctx, "", "preview", "-s", "staging", "--non-interactive", "--diff")
	if err != nil {
		t.Fatalf("preview before the cluster exists fails: %v\n%s", err, out)
	}
	for _, want := range []string{"kubernetes:yaml/v2:ConfigGroup", "kubernetes:upgrade.cattle.io/v1:Plan", "v1.36.4+k3s1"} {
		if !strings.Contains(out, want) {
			t.Errorf("preview does not show %s:\n%s", want, out)
		}
	}
}

package offline

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pressroom.dev/kit/server"
	"pressroom.dev/tools/localkube"
)

var services = []string{"auth", "article", "media", "notification", "web"}

// TestInfraProgram is issue 9's proof on the real program (infra/): a `ci`
// stack in existing mode against a localkube API server (fake node, so the
// provider's readiness waits complete), local file backend, prebuilt image
// references, cert-manager install off, fixture CRDs.
func TestInfraProgram(t *testing.T) {
	repo, err := Repo()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(repo, "infra", "main.go")); err != nil {
		t.Skip("infra/main.go is not in the tree yet (issue 7)")
	}
	ctx, tools := engineTest(t, 55*time.Minute)
	c, kubeconfig := startCluster(ctx, t)
	fixtures, err := os.ReadFile("testdata/fixture-crds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewProject(t.TempDir(), "pressroom", filepath.Join(repo, "infra"), tools, RaceBuild())
	if err != nil {
		t.Fatal(err)
	}
	images := map[string]string{}
	for _, s := range services {
		images[s] = img(s, 1)
	}
	Scenario{
		Stack: "ci",
		Config: map[string]string{
			"pressroom:domain":                 "example.com",
			"pressroom:cluster.mode":           "existing",
			"pressroom:acme.email":             "ops@example.com",
			"pressroom:acme.issuer":            "staging",
			"pressroom:certManager.install":    "false",
			"pressroom:app.googleLoginEnabled": "false",
			"pressroom:registry.kind":          "none",
			// as on a K3s cluster that already runs system-upgrade-controller,
			// at the version the fake node reports (v1.33.13)
			"pressroom:upgrades.enabled":   "true",
			"pressroom:upgrades.install":   "false",
			"pressroom:cluster.k3sVersion": "v1.33.13+k3s1",
		},
		Secrets:   map[string]string{"pressroom:kubeconfig": string(kubeconfig)},
		ImagesKey: "pressroom:images",
		Images:    images,
		Change:    "web",
		NewImage:  img("web", 2),
		Namespace: "pressroom",
		Fixtures:  string(fixtures),
		// = infra/platform's TestObjectCountsPerStack (staging) without
		// cert-manager's namespace and Helm release (install is off here),
		// plus the K3s upgrade Plan (infra/upgrades). Keep the tables in step.
		WantCounts: map[string]int{
			"Namespace": 1, "ClusterIssuer": 2, "Certificate": 1, "Middleware": 4,
			"Deployment": 6, "StatefulSet": 3, "Service": 9, "ServiceAccount": 10, "Ingress": 3,
			"HorizontalPodAutoscaler": 2, "PodDisruptionBudget": 2, "NetworkPolicy": 13,
			"PersistentVolumeClaim": 2, "ConfigMap": 2, "Secret": 7, "CronJob": 1,
			"Plan": 1,
		},
		AfterUp: func(ctx context.Context, t *testing.T, c *localkube.Cluster) {
			readmeJobsAdmitted(ctx, t, c, filepath.Join(repo, "README.md"))
			internalPathsRefused(ctx, t, c)
			upgradePlanOnServer(ctx, t, c, "v1.33.13+k3s1")
			upgradeK3s(ctx, t, c, p, "ci")
		},
		AfterRollback: func(ctx context.Context, t *testing.T, c *localkube.Cluster) {
			// The rollback restored update 1's config but kept the K3s
			// version and the JWT key generation.
			upgradePlanOnServer(ctx, t, c, "v1.33.13+k3s2")
			out, err := p.Run(ctx, "", "config", "get", "-s", "ci", "--path", "pressroom:jwt.keyGeneration")
			if err != nil || strings.TrimSpace(out) != "2" {
				t.Fatalf("after the rollback jwt.keyGeneration = %q (%v), want 2 kept", out, err)
			}
		},
	}.Run(ctx, t, c, p)
}

// internalPathsRefused: the Ingress that refuses the servers' probes and
// metrics to the public lists exactly the paths the kit serves them on, for
// each host. infra cannot import the kit, so its copy of the list is checked
// here, against the objects on the API server.
func internalPathsRefused(ctx context.Context, t *testing.T, c *localkube.Cluster) {
	t.Helper()
	out, err := c.Kubectl(ctx, "get", "ingress", "pressroom-internal", "-n", "pressroom", "-o",
		`jsonpath={range .spec.rules[*]}{.host}:{range .http.paths[*]} {.pathType}={.path}{end};{end}`)
	if err != nil {
		t.Fatalf("internal-paths ingress: %v\n%s", err, out)
	}
	var want string
	for _, host := range []string{"example.com", "www.example.com"} {
		want += host + ":"
		for _, p := range server.InternalPaths {
			want += " Exact=" + p
		}
		want += ";"
	}
	if got := string(out); got != want {
		t.Fatalf("internal-paths ingress routes:\n got  %s\n want %s (kit/server.InternalPaths)", got, want)
	}
	t.Logf("   internal-paths ingress refuses %v on both hosts", server.InternalPaths)
}

// upgradePlanOnServer: the Plan the controller acts on is on the API server
// with the stack's K3s version, one server at a time, every server selected.
func upgradePlanOnServer(ctx context.Context, t *testing.T, c *localkube.Cluster, k3sVersion string) {
	t.Helper()
	out, err := c.Kubectl(ctx, "get", "plans.upgrade.cattle.io", "k3s-server", "-n", "system-upgrade", "-o",
		`jsonpath={.spec.version} {.spec.concurrency} {.spec.cordon} {.spec.nodeSelector.matchExpressions[0].key}={.spec.nodeSelector.matchExpressions[0].values[0]} {.spec.upgrade.image}`)
	if err != nil {
		t.Fatalf("upgrade plan: %v\n%s", err, out)
	}
	want := k3sVersion + " 1 true node-role.kubernetes.io/control-plane=true rancher/k3s-upgrade"
	if got := strings.TrimSpace(string(out)); got != want {
		t.Fatalf("upgrade plan on the server:\n got  %s\n want %s", got, want)
	}
	t.Logf("   upgrade plan on the server: %s", want)
}

// upgradeK3s: raising cluster.k3sVersion and running `pulumi up` is the
// upgrade (the Plan changes); a version below the node's is refused and
// leaves the Plan as it was.
func upgradeK3s(ctx context.Context, t *testing.T, c *localkube.Cluster, p *Project, stack string) {
	t.Helper()
	set := func(v string) {
		if out, err := p.Run(ctx, "", "config", "set", "-s", stack, "--path", "pressroom:cluster.k3sVersion", v); err != nil {
			t.Fatalf("config set: %v\n%s", err, out)
		}
	}
	set("v1.32.9+k3s1")
	out, err := p.Run(ctx, "", "up", "-s", stack, "--yes", "--skip-preview")
	if err == nil || !strings.Contains(out+err.Error(), "cluster.k3sVersion v1.32.9+k3s1 is older than v1.33.13, which a node runs: K3s does not support downgrades") {
		t.Fatalf("a K3s downgrade should fail the update with what to set instead; got %v\n%s", err, out)
	}
	upgradePlanOnServer(ctx, t, c, "v1.33.13+k3s1")
	t.Logf("   K3s downgrade refused, the Plan kept its version")
	set("v1.33.13+k3s2")
	// The same update rotates the JWT key, which the rollback must keep too.
	if out, err := p.Run(ctx, "", "config", "set", "-s", stack, "--path", "pressroom:jwt.keyGeneration", "2"); err != nil {
		t.Fatalf("config set: %v\n%s", err, out)
	}
	if out, err := p.Run(ctx, "", "up", "-s", stack, "--yes", "--skip-preview"); err != nil {
		t.Fatalf("K3s upgrade: %v\n%s", err, out)
	}
	upgradePlanOnServer(ctx, t, c, "v1.33.13+k3s2")
}

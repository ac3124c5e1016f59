package offline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"pressroom.dev/tools/localkube"
)

// Scenario is the issue-9 proof, run against one stack of a project:
// preview, up, no perpetual diff, one image change = one Deployment update,
// rollback via stack history, render + server dry-run, destroy.
type Scenario struct {
	Stack     string
	Config    map[string]string // plain values, set with --path (e.g. pressroom:cluster.mode)
	Secrets   map[string]string // secret values (e.g. pressroom:kubeconfig)
	ImagesKey string            // config key of the service -> image map, e.g. pressroom:images
	Images    map[string]string // service -> image reference
	Change    string            // the service whose image step 4 changes
	NewImage  string            // its new image reference
	Namespace string            // the app namespace; must be gone after destroy
	Fixtures  string            // YAML applied before `up` (CRDs a bare API server lacks)
	// Prepared says the stack exists and is configured already (Config,
	// Secrets and Images are then not set again).
	Prepared bool
	// WantCounts, when set, must equal the per-kind counts on the server.
	WantCounts map[string]int
	// BeforeUp, when set, runs just before the first up starts.
	BeforeUp func(ctx context.Context, t *testing.T, c *localkube.Cluster)
	// AfterUp, when set, runs its checks against the stack the first up made.
	AfterUp func(ctx context.Context, t *testing.T, c *localkube.Cluster)
	// AfterRollback, when set, runs its checks after the rollback.
	AfterRollback func(ctx context.Context, t *testing.T, c *localkube.Cluster)
	// RenderOmits are objects of the stack the render leaves out by design
	// (infra/README.md, Render the manifests: e.g. cert-manager's namespace
	// goes with its Helm release).
	RenderOmits []KubeObject
}

// Run executes every step, failing t with the engine's own output on error.
func (s Scenario) Run(ctx context.Context, t *testing.T, c *localkube.Cluster, p *Project) {
	must := func(out string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	step := func(name string) func() {
		t0 := time.Now()
		t.Logf("== %s", name)
		return func() { t.Logf("   %s took %s", name, time.Since(t0).Round(100*time.Millisecond)) }
	}

	done := step("stack init + config")
	if !s.Prepared {
		s.configure(ctx, t, p)
	}
	if s.Fixtures != "" {
		if out, err := c.KubectlStdin(ctx, strings.NewReader(s.Fixtures), "apply", "--server-side", "-f", "-"); err != nil {
			t.Fatalf("fixture CRDs: %v\n%s", err, out)
		}
	}
	done()

	// 1. preview in the real engine with the real Kubernetes provider.
	done = step("1. pulumi preview")
	must(p.Run(ctx, "", "preview", "-s", s.Stack, "--diff"))
	done()

	// 2. up creates every object; the server has each one the engine recorded.
	done = step("2. pulumi up")
	if s.BeforeUp != nil {
		s.BeforeUp(ctx, t, c)
	}
	must(p.Run(ctx, "", "up", "-s", s.Stack, "--yes", "--skip-preview"))
	res, err := p.Export(ctx, s.Stack)
	if err != nil {
		t.Fatal(err)
	}
	objs := KubeObjects(res)
	counts, err := CountOnServer(ctx, c, objs)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("   objects on the API server per kind: %s", FormatCounts(counts))
	if s.WantCounts != nil && FormatCounts(counts) != FormatCounts(s.WantCounts) {
		t.Fatalf("per-kind counts on the server:\n got  %s\n want %s", FormatCounts(counts), FormatCounts(s.WantCounts))
	}
	hist, err := p.History(ctx, s.Stack)
	if err != nil {
		t.Fatal(err)
	}
	firstUp := hist[0].Version
	if s.AfterUp != nil {
		s.AfterUp(ctx, t, c)
	}
	done()

	// 3. idempotent: no perpetual diffs.
	done = step("3. pulumi preview --expect-no-changes")
	must(p.Run(ctx, "", "preview", "-s", s.Stack, "--expect-no-changes"))
	done()

	// 4. one image reference changes -> exactly one Deployment update.
	done = step("4. one image change")
	deploy := findDeployment(t, res, s.Images[s.Change])
	must(p.Run(ctx, "", "config", "set", "-s", s.Stack, "--path", s.ImagesKey+"."+s.Change, s.NewImage))
	summary, steps, err := p.PreviewSteps(ctx, s.Stack)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 1 || !strings.HasPrefix(steps[0], "update kubernetes:apps/v1:Deployment ") || summary["update"] != 1 {
		t.Fatalf("changing %s's image should update exactly one Deployment; preview: %v %v", s.Change, summary, steps)
	}
	must(p.Run(ctx, "", "up", "-s", s.Stack, "--yes", "--skip-preview"))
	if got := deploymentImage(ctx, t, c, deploy); got != s.NewImage {
		t.Fatalf("after up, deployment %s image = %q, want %q", deploy, got, s.NewImage)
	}
	done()

	// 5. rollback via stack history (the Makefile's entry point).
	done = step(fmt.Sprintf("5. rollback to update %d", firstUp))
	if _, err := p.Script(ctx, "rollback", "-s", s.Stack, "--to", "999", "--yes"); err == nil || !strings.Contains(err.Error(), "has no update 999") {
		t.Fatalf("rollback to a missing update should say so, got: %v", err)
	}
	must(p.Script(ctx, "rollback", "-s", s.Stack, "--to", fmt.Sprint(firstUp), "--yes"))
	if got := deploymentImage(ctx, t, c, deploy); got != s.Images[s.Change] {
		t.Fatalf("after rollback, deployment %s image = %q, want the earlier %q", deploy, got, s.Images[s.Change])
	}
	hist, err = p.History(ctx, s.Stack)
	if err != nil {
		t.Fatal(err)
	}
	if h := hist[0]; h.Kind != "update" || h.Result != "succeeded" || h.Message != fmt.Sprintf("rollback to update %d", firstUp) {
		t.Fatalf("the rollback should be the newest update in the history, got %+v", h)
	}
	must(p.Run(ctx, "", "preview", "-s", s.Stack, "--expect-no-changes"))
	if s.AfterRollback != nil {
		s.AfterRollback(ctx, t, c)
	}
	done()

	// 6. render every object to YAML and let the server validate it.
	done = step("6. render manifests + server dry-run")
	out := filepath.Join(t.TempDir(), "manifests")
	must(p.Script(ctx, "manifests", "-s", s.Stack, "--out", out))
	files := yamlFiles(t, out)
	if want := len(objs) - len(s.RenderOmits); len(files) != want {
		t.Fatalf("rendered %d manifests, want one per object (%d) less the %d the render leaves out", len(files), len(objs), len(s.RenderOmits))
	}
	for _, o := range s.RenderOmits {
		kind := strings.ToLower(o.Type[strings.LastIndex(o.Type, ":")+1:])
		for _, f := range files {
			if base := strings.ToLower(filepath.Base(f)); strings.Contains(base, kind) && strings.HasSuffix(base, "-"+o.Name+".yaml") {
				t.Fatalf("%s %s was rendered (%s), but the render is meant to leave it out", kind, o.Name, f)
			}
		}
	}
	for _, sub := range []string{"0-crd", "1-manifest"} {
		d := filepath.Join(out, sub)
		if _, err := os.Stat(d); err != nil || len(yamlFiles(t, d)) == 0 {
			continue // e.g. no CRDs in the program
		}
		if o, err := c.Kubectl(ctx, "apply", "--server-side", "--dry-run=server", "--force-conflicts", "--field-manager=render-check", "-R", "-f", d); err != nil {
			t.Fatalf("server rejected rendered manifests in %s: %v\n%s", sub, err, o)
		}
	}
	t.Logf("   %d rendered manifests accepted by the API server (dry-run)", len(files))
	done()

	// 7. destroy removes everything, the namespace included.
	done = step("7. pulumi destroy")
	must(p.Run(ctx, "", "destroy", "-s", s.Stack, "--yes", "--skip-preview"))
	if o, err := c.Kubectl(ctx, "get", "namespace", s.Namespace, "--ignore-not-found", "-o", "name"); err != nil || strings.TrimSpace(string(o)) != "" {
		t.Fatalf("namespace %s still present after destroy: %v %s", s.Namespace, err, o)
	}
	if res, err := p.Export(ctx, s.Stack); err != nil || len(KubeObjects(res)) != 0 {
		t.Fatalf("stack still holds Kubernetes objects after destroy: %v %v", err, KubeObjects(res))
	}
	done()
}

// configure creates the stack and sets its configuration.
func (s Scenario) configure(ctx context.Context, t *testing.T, p *Project) {
	t.Helper()
	if out, err := p.Run(ctx, "", "stack", "init", s.Stack); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	cfg := map[string]string{}
	for k, v := range s.Config {
		cfg[k] = v
	}
	for svc, img := range s.Images {
		cfg[s.ImagesKey+"."+svc] = img
	}
	if err := p.SetConfig(ctx, s.Stack, cfg); err != nil {
		t.Fatal(err)
	}
	for k, v := range s.Secrets {
		if err := p.SetSecret(ctx, s.Stack, k, v); err != nil {
			t.Fatal(err)
		}
	}
}

// findDeployment returns namespace/name of the Deployment running image.
func findDeployment(t *testing.T, res []Resource, image string) string {
	t.Helper()
	for _, r := range res {
		if r.Type != "kubernetes:apps/v1:Deployment" {
			continue
		}
		spec, _ := r.Outputs["spec"].(map[string]any)
		tmpl, _ := spec["template"].(map[string]any)
		pspec, _ := tmpl["spec"].(map[string]any)
		containers, _ := pspec["containers"].([]any)
		for _, c := range containers {
			if m, _ := c.(map[string]any); m["image"] == image {
				md := r.Outputs["metadata"].(map[string]any)
				return fmt.Sprintf("%s/%s", md["namespace"], md["name"])
			}
		}
	}
	t.Fatalf("no Deployment in the stack runs %s", image)
	return ""
}

func deploymentImage(ctx context.Context, t *testing.T, c *localkube.Cluster, nsName string) string {
	t.Helper()
	ns, name, _ := strings.Cut(nsName, "/")
	out, err := c.Kubectl(ctx, "get", "deployment", name, "-n", ns, "-o", "jsonpath={.spec.template.spec.containers[0].image}")
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func yamlFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".yaml") {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return files
}

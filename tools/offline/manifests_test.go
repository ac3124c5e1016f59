package offline

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestManifestsDigitalOceanStack is `make manifests STACK=staging` on the
// example stack file as an operator fills it in (digitalocean mode, a
// DigitalOcean registry, no images pinned, upgrades on by default), in the
// real engine with a local file backend. A digitalocean stack cannot be
// deployed offline, so its last deployment is an imported checkpoint whose
// stack outputs carry the images, as infra/main.go exports them.
//
//   - never deployed and no images pinned: refused before any engine run,
//     saying what to do;
//   - deployed: the render uses the deployed images where the config pins
//     none, and holds the K3s upgrade Plan `up` deploys;
//   - a failed render leaves the previous output as it was; a rerun replaces it.
func TestManifestsDigitalOceanStack(t *testing.T) {
	const stack = "staging"
	ctx, p := exampleStack(t, 30*time.Minute, stack, map[string]string{
		"pressroom:googleClientSecret": "test-oauth-secret",
		"pressroom:resendApiKey":       "re_test",
		"digitalocean:token":           "dop_v1_test",
		"cloudflare:apiToken":          "cf-test-token",
	})
	must := func(out string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	// The controller's release is downloaded from GitHub when it is applied;
	// this test is offline. The Plan is rendered either way.
	if err := p.SetConfig(ctx, stack, map[string]string{"pressroom:upgrades.install": "false"}); err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	out := filepath.Join(parent, "manifests")
	render := func() (string, error) { return p.Script(ctx, "manifests", "-s", stack, "--out", out) }
	onlyOutput := func(step string) {
		t.Helper()
		entries, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if want := "manifests"; len(names) > 1 || (len(names) == 1 && names[0] != want) {
			t.Fatalf("%s: %s holds %v; want only %s (no temporary render directory left)", step, parent, names, want)
		}
	}

	// 1. Never deployed, nothing pinned: refused up front.
	t0 := time.Now()
	_, err := render()
	if err == nil {
		t.Fatal("rendering a stack with no images and no deployment should fail")
	}
	for _, want := range []string{
		"cannot render stack 'staging'", "never been deployed", "make up STACK=staging",
		"config set -s staging --path 'pressroom:images.web' ", "@sha256:",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal does not say %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "Updating (") || strings.Contains(err.Error(), `stack "render"`) {
		t.Errorf("the refusal should come before any engine run:\n%v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("a refused render created %s (%v)", out, err)
	}
	onlyOutput("refused render")
	t.Logf("   never deployed: refused in %s", time.Since(t0).Round(100*time.Millisecond))

	// 2. Deployed: its outputs name the images it runs; web is pinned anew.
	deployed := map[string]string{}
	for _, s := range []string{"auth", "article", "media", "notification", "web"} {
		deployed[s] = img(s, 3)
	}
	importDeployment(ctx, t, p, stack, map[string]any{"url": "https://staging.example.com", "images": deployed})
	if err := p.SetConfig(ctx, stack, map[string]string{"pressroom:images.web": img("web", 7)}); err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	must(render())
	t.Logf("   rendered in %s", time.Since(t0).Round(100*time.Millisecond))
	files := renderedFiles(t, out)
	info, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o700 {
		t.Errorf("%s has mode %v; want 0700 (it holds Secret values)", out, info.Mode().Perm())
	}
	plan := findManifest(files, "kind: Plan\n", "name: k3s-server\n")
	if plan == "" {
		t.Fatalf("the render has no K3s upgrade Plan k3s-server, which `up` deploys on a digitalocean stack (upgrades.enabled defaults to true there); files: %v", keys(files))
	}
	if !strings.Contains(files[plan], "version: v1.36.4+k3s1") {
		t.Errorf("the upgrade Plan does not keep the servers at the stack's cluster.k3sVersion:\n%s", files[plan])
	}
	all := strings.Join(values(files), "\n")
	for _, want := range []string{img("web", 7), img("auth", 3), img("article", 3), img("media", 3), img("notification", 3), "kind: ClusterIssuer"} {
		if !strings.Contains(all, want) {
			t.Errorf("the render does not contain %s", want)
		}
	}
	if strings.Contains(all, img("web", 3)) {
		t.Errorf("the render uses the deployed web image although the config pins another")
	}
	onlyOutput("render")
	t.Logf("   %d manifests, with the upgrade Plan (%s)", len(files), filepath.Base(plan))

	// 3. A failed render leaves the previous output as it was.
	before := tree(t, out)
	if err := p.SetConfig(ctx, stack, map[string]string{"pressroom:scaling.cpuTarget": "5"}); err != nil {
		t.Fatal(err)
	}
	_, err = render()
	if err == nil || !strings.Contains(err.Error(), `stack "staging" has 1 configuration problem`) || !strings.Contains(err.Error(), "scaling.cpuTarget") {
		t.Fatalf("a render of an invalid config should fail, naming stack staging and the setting; got %v", err)
	}
	if after := tree(t, out); !mapsEqual(before, after) {
		t.Fatalf("a failed render changed the previous output in %s: %d entries before, %d after", out, len(before), len(after))
	}
	onlyOutput("failed render")

	// 4. A rerun replaces the previous render.
	must(p.Run(ctx, "", "config", "rm", "-s", stack, "--path", "pressroom:scaling.cpuTarget"))
	if err := p.SetConfig(ctx, stack, map[string]string{"pressroom:images.web": img("web", 8)}); err != nil {
		t.Fatal(err)
	}
	must(render())
	all = strings.Join(values(renderedFiles(t, out)), "\n")
	if !strings.Contains(all, img("web", 8)) || strings.Contains(all, img("web", 7)) {
		t.Fatalf("the rerun did not replace the previous render (web image %s expected)", img("web", 8))
	}
	onlyOutput("rerun")

	// 5. With the real toolchain too, a directory it did not write is refused untouched.
	foreign := foreignDir(t)
	before = tree(t, foreign)
	if _, err := p.Script(ctx, "manifests", "-s", stack, "--out", foreign); err == nil || !strings.Contains(err.Error(), "was not written by 'tools/pulumi.sh manifests'") {
		t.Fatalf("manifests into a foreign directory should be refused, got %v", err)
	}
	if after := tree(t, foreign); !mapsEqual(before, after) {
		t.Fatalf("manifests changed a directory it did not write:\n before %v\n after  %v", before, after)
	}
}

// importDeployment makes outputs the stack outputs of stack's last
// deployment (a checkpoint holding just the root stack resource).
func importDeployment(ctx context.Context, t *testing.T, p *Project, stack string, outputs map[string]any) {
	t.Helper()
	raw, err := p.Run(ctx, "", "stack", "export", "-s", stack)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		t.Fatalf("stack export: %v", err)
	}
	st["deployment"].(map[string]any)["resources"] = []any{map[string]any{
		"urn":     "urn:pulumi:" + stack + "::pressroom::pulumi:pulumi:Stack::pressroom-" + stack,
		"custom":  false,
		"type":    "pulumi:pulumi:Stack",
		"outputs": outputs,
	}}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "deployment.json")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := p.Run(ctx, "", "stack", "import", "-s", stack, "--file", f); err != nil {
		t.Fatalf("stack import: %v\n%s", err, out)
	}
}

// renderedFiles reads every YAML file under dir: relative path -> content.
func renderedFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	for _, f := range yamlFiles(t, dir) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, f)
		files[rel] = string(b)
	}
	if len(files) == 0 {
		t.Fatalf("no manifests in %s", dir)
	}
	return files
}

// findManifest returns the file whose content has every one of wants.
func findManifest(files map[string]string, wants ...string) string {
	for name, content := range files {
		ok := true
		for _, w := range wants {
			ok = ok && strings.Contains(content, w)
		}
		if ok {
			return name
		}
	}
	return ""
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func values(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

package offline

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRollbackDeploysRecordedImages: a rollback brings back the images an
// update deployed even when its config pinned none (it built them), from
// the `images` output the update recorded in its own checkpoint, which the
// file backend keeps beside each history record. Real engine, the real
// program in render mode (no cluster needed), a real file backend:
//
//   - update 1 deploys images A with cert-manager v1.20.2; update 2 images B,
//     cert-manager v1.21.2 and jwt.keyGeneration 2; `pulumi.sh images --to N`
//     prints each update's own images;
//   - update 1's history record is made to look like a build (its config
//     pins no image). Without its checkpoint copy the rollback refuses,
//     changing nothing, and says what to do;
//   - with it, rollback --to 1 deploys A's digests, keeps cert-manager and
//     the key generation of update 2, and is update 3 in the history;
//   - --image names digests by hand where none is recorded, and
//     --downgrade-cert-manager takes cert-manager back too.
func TestRollbackDeploysRecordedImages(t *testing.T) {
	const stack = "staging"
	ctx, p := exampleStack(t, 30*time.Minute, stack, map[string]string{
		"pressroom:googleClientSecret": "test-oauth-secret", "pressroom:resendApiKey": "re_test",
	})
	must := func(out string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	get := func(key string) string {
		t.Helper()
		return strings.TrimSpace(must(p.Run(ctx, "", "config", "get", "-s", stack, "--path", key)))
	}
	render := filepath.Join(t.TempDir(), "render")
	services := []string{"auth", "article", "media", "notification", "web"}
	ref := func(svc, version string) string {
		return "registry.example.com/pressroom/" + svc + "@sha256:" + strings.Repeat(version, 64)
	}
	deploy := func(version, certManager, keyGeneration string) {
		t.Helper()
		cfg := map[string]string{
			"pressroom:cluster.mode": "render", "pressroom:cluster.renderDir": render,
			"pressroom:certManager.install": "false", "pressroom:certManager.version": certManager,
			"pressroom:registry.kind": "none", "pressroom:upgrades.enabled": "false",
			"pressroom:jwt.keyGeneration": keyGeneration,
		}
		for _, svc := range services {
			cfg["pressroom:images."+svc] = ref(svc, version)
		}
		if err := p.SetConfig(ctx, stack, cfg); err != nil {
			t.Fatal(err)
		}
		must(p.Run(ctx, "", "up", "-s", stack, "--yes", "--skip-preview", "--suppress-outputs"))
	}
	deployedWeb := func() string {
		t.Helper()
		b, err := os.ReadFile(renderedDeployment(t, render, "web"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	deploy("a", "v1.20.2", "1")
	deploy("b", "v1.21.2", "2")

	for n, version := range map[string]string{"1": "a", "2": "b"} {
		out := must(p.Script(ctx, "images", "-s", stack, "--to", n))
		for _, svc := range services {
			if want := svc + " " + ref(svc, version); !strings.Contains(out, want+"\n") {
				t.Fatalf("pulumi.sh images --to %s:\n%s\nwant the line %q", n, out, want)
			}
		}
	}

	// Update 1's record, as if it had built its images: no pins in its config.
	hist := historyFiles(t, p.State, stack)
	if len(hist) != 2 {
		t.Fatalf("the file backend holds %d history records, want 2: %v", len(hist), hist)
	}
	var rec map[string]any
	b, err := os.ReadFile(hist[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	cfg, _ := rec["config"].(map[string]any)
	if _, ok := cfg["pressroom:images"]; !ok {
		t.Fatalf("update 1's record has no pressroom:images in its config: %v", cfg)
	}
	delete(cfg, "pressroom:images")
	if b, err = json.Marshal(rec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hist[0], b, 0o600); err != nil {
		t.Fatal(err)
	}

	// Without the checkpoint copy no digest of update 1 is recorded: refused.
	cp := strings.TrimSuffix(hist[0], ".history.json") + ".checkpoint.json"
	saved, err := os.ReadFile(cp)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(cp); err != nil {
		t.Fatal(err)
	}
	out, err := p.Script(ctx, "rollback", "-s", stack, "--to", "1", "--yes")
	if err == nil || !strings.Contains(err.Error(), "nothing was changed: update 1 built auth article media notification web, and which digest it deployed is not recorded") ||
		!strings.Contains(err.Error(), "--image web=registry.example.com/pressroom/web@sha256:<digest>") {
		t.Fatalf("a rollback to an update whose built digests are nowhere recorded should be refused, saying what to do; got %v\n%s", err, out)
	}
	if got := get("pressroom:images.web"); got != ref("web", "b") {
		t.Fatalf("the refused rollback changed the config: images.web = %s", got)
	}
	history := func() []Update {
		t.Helper()
		h, err := p.History(ctx, stack)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	if h := history(); len(h) != 2 {
		t.Fatalf("the refused rollback deployed: %+v", h)
	}
	if err := os.WriteFile(cp, saved, 0o600); err != nil {
		t.Fatal(err)
	}

	// rolledBack: every service pinned to images of version, web deployed
	// with it, cert-manager at certManager, the key generation kept.
	rolledBack := func(how, version, certManager string) {
		t.Helper()
		for _, svc := range services {
			if got := get("pressroom:images." + svc); got != ref(svc, version) {
				t.Fatalf("after the rollback %s images.%s = %s, want %s", how, svc, got, ref(svc, version))
			}
		}
		if web := deployedWeb(); !strings.Contains(web, ref("web", version)) {
			t.Fatalf("after the rollback %s the deployed web Deployment does not run %s:\n%s", how, ref("web", version), web)
		}
		if got := get("pressroom:certManager.version"); got != certManager {
			t.Fatalf("after the rollback %s certManager.version = %s, want %s", how, got, certManager)
		}
		if got := get("pressroom:jwt.keyGeneration"); got != "2" {
			t.Fatalf("the rollback %s set jwt.keyGeneration to %s; it never goes back, want 2 kept", how, got)
		}
	}

	must(p.Script(ctx, "rollback", "-s", stack, "--to", "1", "--yes"))
	// cert-manager does not go back a version unless asked.
	rolledBack("to update 1's record", "a", "v1.21.2")
	if h := history(); len(h) != 3 || h[0].Kind != "update" || h[0].Message != "rollback to update 1" || h[0].Result != "succeeded" {
		t.Fatalf("the rollback should be update 3, succeeded; history: %+v", h)
	}
	must(p.Run(ctx, "", "preview", "-s", stack, "--expect-no-changes"))

	// No record again, but the operator names the digests (from the
	// registry) and asks for the older cert-manager.
	if err := os.Remove(cp); err != nil {
		t.Fatal(err)
	}
	args := []string{"rollback", "-s", stack, "--to", "1", "--yes", "--downgrade-cert-manager"}
	for _, svc := range services {
		args = append(args, "--image", svc+"="+ref(svc, "c"))
	}
	must(p.Script(ctx, args...))
	rolledBack("with --image and --downgrade-cert-manager", "c", "v1.20.2")
}

// historyFiles are the stack's history records in the project's file
// backend, oldest first (their names sort by time).
func historyFiles(t *testing.T, stateDir, stack string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(stateDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasPrefix(d.Name(), stack+"-") && strings.HasSuffix(d.Name(), ".history.json") {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// renderedDeployment is the file render mode wrote for Deployment name.
func renderedDeployment(t *testing.T, dir, name string) string {
	t.Helper()
	for _, f := range yamlFiles(t, dir) {
		if base := strings.ToLower(filepath.Base(f)); strings.Contains(base, "deployment") && strings.HasSuffix(base, "-"+name+".yaml") {
			return f
		}
	}
	t.Fatalf("render wrote no Deployment %s under %s", name, dir)
	return ""
}

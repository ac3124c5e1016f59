package offline

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"pressroom.dev/kit/server"
	"pressroom.dev/tools/localkube"
)

// Checks of a deployed stack that tests of several packages run.

var (
	shBlockRe = regexp.MustCompile("(?s)```sh\n(.*?)```")
	heredocRe = regexp.MustCompile(`(?s)<<YAML\n(.*?\n)YAML\n`)
	// A runbook's settings: WHEN=… DB=… (a comment may follow) and values
	// read from the cluster, IMAGE=$(kubectl …); the check runs them so the
	// Job is the one an operator's paste creates.
	assignRe = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`)
)

// readmeJobs: the database and the media restore Jobs (infra/OPERATIONS.md).
const readmeJobs = 2

// ReadmeJobsAdmitted checks the Jobs infra/OPERATIONS.md has operators apply against
// the deployed stack. A shell expands each heredoc as the operator's would
// (its image comes from the live CronJob through the runbook's own kubectl
// command); the API server must accept the Job, and a Pod of its template
// must pass the namespace's restricted Pod Security admission and the
// ServiceAccount admission (dry-run: nothing runs).
func ReadmeJobsAdmitted(ctx context.Context, t *testing.T, c *localkube.Cluster, readmePath string) {
	t.Helper()
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, block := range shBlockRe.FindAllStringSubmatch(string(readme), -1) {
		doc := heredocRe.FindStringSubmatch(block[1])
		if doc == nil {
			continue
		}
		var script strings.Builder
		script.WriteString("set -e\n") // a setting that cannot be read fails here, not as an empty field
		for _, line := range strings.Split(block[1], "\n") {
			if assignRe.MatchString(strings.TrimSpace(line)) {
				script.WriteString(line + "\n")
			}
		}
		script.WriteString("cat <<YAML\n" + doc[1] + "YAML\n")
		sh := exec.CommandContext(ctx, "/bin/sh", "-c", script.String())
		sh.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig)
		expanded, err := sh.Output()
		if err != nil {
			t.Fatalf("README heredoc does not expand: %v\n%s", err, script.String())
		}
		// A warning (Pod Security on the template, a deprecated field) fails
		// too, and keeps the JSON output clean.
		out, err := c.KubectlStdin(ctx, strings.NewReader(string(expanded)), "create", "--dry-run=server", "--warnings-as-errors", "-o", "json", "-f", "-")
		if err != nil {
			t.Fatalf("the API server rejects or warns about a Job from the README: %v\n%s", err, expanded)
		}
		var job struct {
			Metadata struct{ Name, Namespace string }
			Spec     struct {
				Template struct{ Spec json.RawMessage }
			}
		}
		if err := json.Unmarshal(out, &job); err != nil || len(job.Spec.Template.Spec) == 0 {
			t.Fatalf("README heredoc is not a Job: %v\n%s", err, out)
		}
		pod, _ := json.Marshal(map[string]any{
			"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]string{"name": job.Metadata.Name + "-check", "namespace": job.Metadata.Namespace},
			"spec":     job.Spec.Template.Spec,
		})
		if out, err := c.KubectlStdin(ctx, strings.NewReader(string(pod)), "create", "--dry-run=server", "-f", "-"); err != nil {
			t.Fatalf("the pod of README Job %s is not admitted: %v\n%s", job.Metadata.Name, err, out)
		}
		t.Logf("   README Job %s: accepted, and its pod admitted under restricted", job.Metadata.Name)
		checked++
	}
	if checked != readmeJobs {
		t.Fatalf("checked %d Jobs from the README, want %d: keep readmeJobs in step with the runbook", checked, readmeJobs)
	}
}

// InternalPathsRefused: the Ingress that refuses the servers' probes and
// metrics to the public lists exactly the paths the kit serves them on, for
// each host. infra cannot import the kit, so its copy of the list is checked
// here, against the objects on the API server.
func InternalPathsRefused(ctx context.Context, t *testing.T, c *localkube.Cluster) {
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

// UpgradePlanOnServer: the Plan the controller acts on is on the API server
// with the stack's K3s version, one server at a time, every server selected.
func UpgradePlanOnServer(ctx context.Context, t *testing.T, c *localkube.Cluster, k3sVersion string) {
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

// UpgradeK3s: raising cluster.k3sVersion and running `pulumi up` is the
// upgrade (the Plan changes); a version below the node's is refused and
// leaves the Plan as it was.
func UpgradeK3s(ctx context.Context, t *testing.T, c *localkube.Cluster, p *Project, stack string) {
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
	UpgradePlanOnServer(ctx, t, c, "v1.33.13+k3s1")
	t.Logf("   K3s downgrade refused, the Plan kept its version")
	set("v1.33.13+k3s2")
	// The same update rotates the JWT key, which the rollback must keep too.
	if out, err := p.Run(ctx, "", "config", "set", "-s", stack, "--path", "pressroom:jwt.keyGeneration", "2"); err != nil {
		t.Fatalf("config set: %v\n%s", err, out)
	}
	if out, err := p.Run(ctx, "", "up", "-s", stack, "--yes", "--skip-preview"); err != nil {
		t.Fatalf("K3s upgrade: %v\n%s", err, out)
	}
	UpgradePlanOnServer(ctx, t, c, "v1.33.13+k3s2")
}

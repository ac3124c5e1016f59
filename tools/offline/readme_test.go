package offline

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"pressroom.dev/tools/localkube"
)

var (
	shBlockRe = regexp.MustCompile("(?s)```sh\n(.*?)```")
	heredocRe = regexp.MustCompile(`(?s)<<YAML\n(.*?\n)YAML\n`)
	assignRe  = regexp.MustCompile(`^[A-Z_]+=\S+( [A-Z_]+=\S+)*$`)
)

// readmeJobs: the database and the media restore Jobs (Day-2 operations).
const readmeJobs = 2

// readmeJobsAdmitted checks the Jobs the README has operators apply against
// the deployed stack. A shell expands each heredoc as the operator's would
// (its image comes from the live CronJob through the README's own kubectl
// command); the API server must accept the Job, and a Pod of its template
// must pass the namespace's restricted Pod Security admission and the
// ServiceAccount admission (dry-run: nothing runs).
func readmeJobsAdmitted(ctx context.Context, t *testing.T, c *localkube.Cluster, readmePath string) {
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
		t.Fatalf("checked %d Jobs from the README, want %d: keep readmeJobs in step with the README", checked, readmeJobs)
	}
}

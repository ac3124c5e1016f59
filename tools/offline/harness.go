// Package offline drives the real Pulumi engine (built by tools/toolchain)
// against a real kube-apiserver (tools/localkube) with a local file backend:
// no cloud account, no Docker, no internet. Its tests are tier 4 of `make test`.
package offline

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"pressroom.dev/tools/localkube"
	"pressroom.dev/tools/toolchain"
)

// Repo is the repository root (found from this file's location).
func Repo() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return "", fmt.Errorf("offline: cannot locate the repository root")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..")), nil
}

// Project is a throw-away Pulumi project directory whose `main:` points at a
// program elsewhere (e.g. the repo's infra/), with its own file backend, so
// tests never write Pulumi.<stack>.yaml into the repository.
type Project struct {
	Dir   string   // holds Pulumi.yaml and Pulumi.<stack>.yaml
	State string   // file backend directory
	Env   []string // environment for pulumi and tools/pulumi.sh
	Repo  string
	Tools toolchain.Pulumi
}

// NewProject writes Pulumi.yaml (project name, runtime go, main: mainDir)
// into dir/project and a backend at dir/state. extraEnv is appended.
func NewProject(dir, name, mainDir string, tools toolchain.Pulumi, extraEnv ...string) (*Project, error) {
	repo, err := Repo()
	if err != nil {
		return nil, err
	}
	p := &Project{Dir: filepath.Join(dir, "project"), State: filepath.Join(dir, "state"), Repo: repo, Tools: tools}
	for _, d := range []string{p.Dir, p.State} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	y := fmt.Sprintf("name: %s\nruntime: go\nmain: %s\ndescription: throw-away project for the offline engine tests\n", name, mainDir)
	if err := os.WriteFile(filepath.Join(p.Dir, "Pulumi.yaml"), []byte(y), 0o600); err != nil {
		return nil, err
	}
	p.Env = append(tools.Env(os.Environ()),
		"PULUMI_BACKEND_URL=file://"+p.State,
		"PULUMI_CONFIG_PASSPHRASE=offline-test-passphrase",
		"PRESSROOM_PROJECT_DIR="+p.Dir,
		"NO_COLOR=1",
	)
	p.Env = append(p.Env, extraEnv...)
	return p, nil
}

// RaceBuild is the GOFLAGS the language host builds a test program with.
// make test compiles every module with -race, so a -race program reuses that
// build cache (a cold run saves the ~10 minutes the provider SDKs take to
// compile a second time) and the real engine run is race-checked too.
func RaceBuild(more ...string) string {
	return "GOFLAGS=" + strings.Join(append([]string{"-race"}, more...), " ")
}

// Run runs pulumi with args in the project dir; stdin may be nil.
func (p *Project) Run(ctx context.Context, stdin string, args ...string) (string, error) {
	return p.exec(ctx, stdin, p.Tools.CLI(), args...)
}

// Script runs tools/pulumi.sh (the Makefile's entry point) on this project.
func (p *Project) Script(ctx context.Context, args ...string) (string, error) {
	return p.exec(ctx, "", filepath.Join(p.Repo, "tools", "pulumi.sh"), args...)
}

func (p *Project) exec(ctx context.Context, stdin, bin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = p.Dir
	cmd.Env = p.Env
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\nstdout:\n%s\nstderr:\n%s", filepath.Base(bin), strings.Join(args, " "), err, tailLines(stdout.String(), 60), tailLines(stderr.String(), 60))
	}
	return stdout.String(), nil
}

// SetConfig sets plain values with --path (keys like pressroom:cluster.mode).
func (p *Project) SetConfig(ctx context.Context, stack string, kv map[string]string) error {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, err := p.Run(ctx, "", "config", "set", "-s", stack, "--path", k, kv[k]); err != nil {
			return err
		}
	}
	return nil
}

// SetSecret sets a secret value through stdin (never on a command line).
func (p *Project) SetSecret(ctx context.Context, stack, key, value string) error {
	_, err := p.Run(ctx, value, "config", "set", "-s", stack, "--secret", key)
	return err
}

// Resource is one resource of the stack's checkpoint.
type Resource struct {
	URN     string         `json:"urn"`
	Type    string         `json:"type"`
	Outputs map[string]any `json:"outputs"`
}

// Export returns the stack's current resources (pulumi stack export).
func (p *Project) Export(ctx context.Context, stack string) ([]Resource, error) {
	out, err := p.Run(ctx, "", "stack", "export", "-s", stack)
	if err != nil {
		return nil, err
	}
	var st struct {
		Deployment struct {
			Resources []Resource `json:"resources"`
		} `json:"deployment"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, fmt.Errorf("stack export: %w", err)
	}
	return st.Deployment.Resources, nil
}

// Update is one entry of `pulumi stack history --json`.
type Update struct {
	Version         int            `json:"version"`
	Kind            string         `json:"kind"`
	Message         string         `json:"message"`
	Result          string         `json:"result"`
	ResourceChanges map[string]int `json:"resourceChanges"`
}

// History returns the stack's updates, newest first, numbered as
// tools/pulumi.sh numbers them (file backends record no numbers: 1.. oldest first).
func (p *Project) History(ctx context.Context, stack string) ([]Update, error) {
	out, err := p.Run(ctx, "", "stack", "history", "-s", stack, "--json")
	if err != nil {
		return nil, err
	}
	var h []Update
	if err := json.Unmarshal([]byte(out), &h); err != nil {
		return nil, fmt.Errorf("stack history: %w", err)
	}
	unnumbered := true
	for _, u := range h {
		unnumbered = unnumbered && u.Version == 0
	}
	if unnumbered {
		for i := range h {
			h[i].Version = len(h) - i
		}
	}
	return h, nil
}

// PreviewSteps runs `pulumi preview --json` and returns the change summary and
// the non-"same" steps as "op type name" strings.
func (p *Project) PreviewSteps(ctx context.Context, stack string) (map[string]int, []string, error) {
	out, err := p.Run(ctx, "", "preview", "-s", stack, "--json")
	if err != nil {
		return nil, nil, err
	}
	var pv struct {
		Steps []struct {
			Op  string `json:"op"`
			URN string `json:"urn"`
		} `json:"steps"`
		ChangeSummary map[string]int `json:"changeSummary"`
	}
	if err := json.Unmarshal([]byte(out), &pv); err != nil {
		return nil, nil, fmt.Errorf("preview --json: %w\n%s", err, tailLines(out, 40))
	}
	var steps []string
	for _, s := range pv.Steps {
		if s.Op != "same" {
			parts := strings.Split(s.URN, "::")
			steps = append(steps, fmt.Sprintf("%s %s %s", s.Op, urnType(s.URN), parts[len(parts)-1]))
		}
	}
	return pv.ChangeSummary, steps, nil
}

func urnType(urn string) string {
	parts := strings.Split(urn, "::")
	if len(parts) < 4 {
		return ""
	}
	t := parts[len(parts)-2]
	if i := strings.LastIndex(t, "$"); i >= 0 {
		t = t[i+1:]
	}
	return t
}

// KubeObject names one Kubernetes object of the checkpoint.
type KubeObject struct {
	Type      string // Pulumi type token, e.g. kubernetes:apps/v1:Deployment
	Namespace string
	Name      string
}

// KubeObjects lists the Kubernetes objects in a checkpoint (not providers,
// not component resources, not Helm releases).
func KubeObjects(res []Resource) []KubeObject {
	var out []KubeObject
	for _, r := range res {
		if !strings.HasPrefix(r.Type, "kubernetes:") || strings.HasPrefix(r.Type, "pulumi:providers:") ||
			strings.HasPrefix(r.Type, "kubernetes:helm.sh/") || strings.HasPrefix(r.Type, "kubernetes:yaml/") {
			continue
		}
		md, _ := r.Outputs["metadata"].(map[string]any)
		name, _ := md["name"].(string)
		ns, _ := md["namespace"].(string)
		if name == "" {
			continue
		}
		out = append(out, KubeObject{Type: r.Type, Namespace: ns, Name: name})
	}
	return out
}

// kubectlResource maps kubernetes:apps/v1:Deployment to deployment.v1.apps
// (core group: namespace.v1.).
func kubectlResource(typ string) (string, error) {
	parts := strings.Split(typ, ":")
	if len(parts) != 3 {
		return "", fmt.Errorf("unexpected type token %q", typ)
	}
	gv, kind := parts[1], strings.ToLower(parts[2])
	group, version, ok := strings.Cut(gv, "/")
	if !ok {
		return "", fmt.Errorf("unexpected type token %q", typ)
	}
	if group == "core" {
		group = ""
	}
	return kind + "." + version + "." + group, nil
}

// CountOnServer checks that every object exists on the API server and
// returns the count per Kubernetes kind (as seen on the server).
func CountOnServer(ctx context.Context, c *localkube.Cluster, objs []KubeObject) (map[string]int, error) {
	byType := map[string][]KubeObject{}
	for _, o := range objs {
		byType[o.Type] = append(byType[o.Type], o)
	}
	counts := map[string]int{}
	var missing []string
	for typ, want := range byType {
		res, err := kubectlResource(typ)
		if err != nil {
			return nil, err
		}
		out, err := c.Kubectl(ctx, "get", res, "-A", "-o", "json")
		if err != nil {
			return nil, err
		}
		var list struct {
			Items []struct {
				Metadata struct{ Name, Namespace string } `json:"metadata"`
			} `json:"items"`
		}
		if err := json.Unmarshal(out, &list); err != nil {
			return nil, fmt.Errorf("kubectl get %s: %w", res, err)
		}
		have := map[string]bool{}
		for _, it := range list.Items {
			have[it.Metadata.Namespace+"/"+it.Metadata.Name] = true
		}
		kind := typ[strings.LastIndex(typ, ":")+1:]
		for _, o := range want {
			if have[o.Namespace+"/"+o.Name] {
				counts[kind]++
			} else {
				missing = append(missing, fmt.Sprintf("%s %s/%s", kind, o.Namespace, o.Name))
			}
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return counts, fmt.Errorf("in the stack but not on the API server: %s", strings.Join(missing, ", "))
	}
	return counts, nil
}

// FormatCounts renders counts as "Deployment=6 Service=9 ..." sorted by kind.
func FormatCounts(counts map[string]int) string {
	kinds := make([]string, 0, len(counts))
	for k := range counts {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var b strings.Builder
	total := 0
	for _, k := range kinds {
		fmt.Fprintf(&b, "%s=%d ", k, counts[k])
		total += counts[k]
	}
	fmt.Fprintf(&b, "(total %d)", total)
	return b.String()
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Package toolchain gives Go tests and tools the offline Pulumi engine and the
// Kubernetes control-plane binaries. It runs the cached builders beside this
// file (pulumi-toolchain.sh, kube-toolchain.sh): instant when warm, a long
// build from the Go module proxy when cold.
package toolchain

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Kube locates the Kubernetes binaries.
type Kube struct {
	Bin  string // directory with kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, pause
	Etcd string // path of the etcd binary
}

// APIServer is the kube-apiserver path.
func (k Kube) APIServer() string { return filepath.Join(k.Bin, "kube-apiserver") }

// ControllerManager is the kube-controller-manager path.
func (k Kube) ControllerManager() string { return filepath.Join(k.Bin, "kube-controller-manager") }

// Path is the path of one of the binaries in Bin.
func (k Kube) Path(name string) string { return filepath.Join(k.Bin, name) }

// NodeParts locates what the node-toolchain builds: the parts K3s bundles
// (CoreDNS, kube-router, local-path-provisioner, metrics-server, Traefik),
// cert-manager, Pebble, NATS and Jaeger, plus Traefik's CRDs and
// cert-manager's chart.
type NodeParts struct {
	Bin   string // the binaries
	Share string // traefik-crds.yaml, traefik-rbac.yaml, cert-manager-chart/
}

// Path is the path of one binary.
func (n NodeParts) Path(name string) string { return filepath.Join(n.Bin, name) }

// Pulumi locates the Pulumi CLI, its Go language host and a PULUMI_HOME with
// the kubernetes, tls and random plugins installed.
type Pulumi struct {
	Bin  string // directory with pulumi and pulumi-language-go
	Home string // PULUMI_HOME
}

// CLI is the pulumi binary path.
func (p Pulumi) CLI() string { return filepath.Join(p.Bin, "pulumi") }

// Env returns base with PATH, PULUMI_HOME and the offline switches set.
func (p Pulumi) Env(base []string) []string {
	out := make([]string, 0, len(base)+4)
	path := p.Bin
	for _, kv := range base {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "PATH":
			path = p.Bin + string(os.PathListSeparator) + v
			continue
		case "PULUMI_HOME", "PULUMI_SKIP_UPDATE_CHECK", "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION":
			continue
		}
		out = append(out, kv)
	}
	return append(out, "PATH="+path, "PULUMI_HOME="+p.Home,
		"PULUMI_SKIP_UPDATE_CHECK=true", "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true")
}

// Dir is the directory holding the builder scripts.
func Dir() (string, error) {
	if d := os.Getenv("PRESSROOM_TOOLCHAIN_DIR"); d != "" {
		return d, nil
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return "", fmt.Errorf("toolchain: cannot locate the builder scripts; set PRESSROOM_TOOLCHAIN_DIR to tools/toolchain")
	}
	return filepath.Dir(file), nil
}

// EnsureKube builds (once) and returns the control-plane binaries.
func EnsureKube(ctx context.Context) (Kube, error) {
	vals, err := run(ctx, "kube-toolchain.sh", "KUBE_BIN", "ETCD")
	if err != nil {
		return Kube{}, err
	}
	return Kube{Bin: vals["KUBE_BIN"], Etcd: vals["ETCD"]}, nil
}

// EnsureNode builds (once) and returns the node's parts.
func EnsureNode(ctx context.Context) (NodeParts, error) {
	vals, err := run(ctx, "node-toolchain.sh", "NODE_BIN", "NODE_SHARE")
	if err != nil {
		return NodeParts{}, err
	}
	return NodeParts{Bin: vals["NODE_BIN"], Share: vals["NODE_SHARE"]}, nil
}

// EnsurePulumi builds (once) and returns the Pulumi toolchain.
func EnsurePulumi(ctx context.Context) (Pulumi, error) {
	vals, err := run(ctx, "pulumi-toolchain.sh", "PULUMI_BIN", "PULUMI_HOME")
	if err != nil {
		return Pulumi{}, err
	}
	return Pulumi{Bin: vals["PULUMI_BIN"], Home: vals["PULUMI_HOME"]}, nil
}

// run executes a builder and parses its KEY=VALUE lines (bash %q quoting).
func run(ctx context.Context, script string, keys ...string) (map[string]string, error) {
	dir, err := Dir()
	if err != nil {
		return nil, err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(dir, script))
	cmd.Stdout = &stdout
	// Build progress goes to our stderr too, so a long cold build is visible.
	cmd.Stderr = &tail{w: os.Stderr, buf: &stderr}
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("toolchain: %s failed: %w\n%s", script, err, lastLines(stderr.String(), 30))
	}
	vals := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		vals[k] = unquote(v)
	}
	for _, k := range keys {
		if vals[k] == "" {
			return nil, fmt.Errorf("toolchain: %s printed no %s (output: %q)", script, k, stdout.String())
		}
	}
	return vals, nil
}

// unquote undoes bash printf %q for plain paths (backslash escapes).
func unquote(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

type tail struct {
	w   *os.File
	buf *bytes.Buffer
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf.Write(p)
	_, _ = t.w.Write(p)
	return len(p), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

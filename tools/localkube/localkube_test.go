package localkube

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"pressroom.dev/tools/toolchain"
)

const deployment = `apiVersion: v1
kind: Namespace
metadata:
  name: lk-test
  labels:
    pod-security.kubernetes.io/enforce: restricted
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: lk-test
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 0, maxSurge: 1}}
  template:
    metadata: {labels: {app: web}}
    spec:
      automountServiceAccountToken: false
      securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: web
        image: registry.example.com/web@sha256:0000000000000000000000000000000000000000000000000000000000000001
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}}
        resources: {requests: {cpu: 50m, memory: 64Mi}, limits: {cpu: 500m, memory: 256Mi}}
        securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
`

const crd = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.example.com
spec:
  group: test.example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
`

func TestControlPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real control plane")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{Log: testLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = c.Stop()
		}
	}()
	kc := func(stdin string, args ...string) string {
		t.Helper()
		out, err := c.KubectlStdin(ctx, strings.NewReader(stdin), args...)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}

	// Server-side apply creates the objects; a second apply changes nothing.
	kc(deployment, "apply", "--server-side", "--field-manager=localkube-test", "-f", "-")
	var dep struct {
		Spec struct{ Replicas int } `json:"spec"`
	}
	if err := json.Unmarshal([]byte(kc("", "get", "deployment", "web", "-n", "lk-test", "-o", "json")), &dep); err != nil {
		t.Fatal(err)
	}
	if dep.Spec.Replicas != 2 {
		t.Fatalf("deployment replicas = %d, want 2", dep.Spec.Replicas)
	}
	if out := kc(deployment, "apply", "--server-side", "--field-manager=localkube-test", "-f", "-"); !strings.Contains(out, "serverside-applied") {
		t.Fatalf("re-apply: %s", out)
	}
	// The controller manager is really running: the namespace got its ServiceAccount.
	waitUntil(t, func() bool {
		_, err := c.Kubectl(ctx, "get", "serviceaccount", "default", "-n", "lk-test")
		return err == nil
	})

	// The controller manager acts on it: a ReplicaSet with two pods (which no
	// node runs here: see TestNode).
	waitUntil(t, func() bool {
		out, err := c.Kubectl(ctx, "get", "pods", "-n", "lk-test", "-l", "app=web", "-o", "name")
		return err == nil && strings.Count(string(out), "pod/") == 2
	})

	// Dry-run on the server validates without storing.
	dry := strings.ReplaceAll(deployment, "name: web\n  namespace", "name: web-dry\n  namespace")
	kc(dry, "apply", "--server-side", "--dry-run=server", "-f", "-")
	if out, err := c.Kubectl(ctx, "get", "deployment", "web-dry", "-n", "lk-test"); err == nil {
		t.Fatalf("dry-run stored the object: %s", out)
	}
	// A bad object is rejected with a precise message.
	bad := strings.ReplaceAll(deployment, "replicas: 2", "replicas: -1")
	out, err := c.KubectlStdin(ctx, strings.NewReader(bad), "apply", "--server-side", "--dry-run=server", "-f", "-")
	if err == nil || !strings.Contains(string(out), "spec.replicas") {
		t.Fatalf("negative replicas accepted or unclear error: %v\n%s", err, out)
	}

	// A CRD, then an instance validated against its schema.
	kc(crd, "apply", "--server-side", "-f", "-")
	kc("", "wait", "--for=condition=Established", "--timeout=60s", "crd/widgets.test.example.com")
	widget := "apiVersion: test.example.com/v1\nkind: Widget\nmetadata: {name: w1, namespace: lk-test}\nspec: {size: 3}\n"
	kc(widget, "apply", "--server-side", "-f", "-")
	if got := kc("", "get", "widget", "w1", "-n", "lk-test", "-o", "jsonpath={.spec.size}"); got != "3" {
		t.Fatalf("widget size = %q, want 3", got)
	}
	if out, err := c.KubectlStdin(ctx, strings.NewReader(strings.Replace(widget, "size: 3", "size: 0", 1)), "apply", "--server-side", "-f", "-"); err == nil || !strings.Contains(string(out), "spec.size") {
		t.Fatalf("widget with size 0 accepted or unclear error: %v\n%s", err, out)
	}

	// Namespace deletion completes (needs the controller manager).
	kc("", "delete", "namespace", "lk-test", "--timeout=120s")

	// Stop kills exactly our processes and removes the state.
	pids, dir := c.PIDs(), c.Dir
	if len(pids) != 3 {
		t.Fatalf("PIDs = %v, want etcd, kube-apiserver, kube-controller-manager", pids)
	}
	stopped = true
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("pid %d still running after Stop", pid)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("state dir %s not removed: %v", dir, err)
	}
}

func TestStartRejectsMissingBinaries(t *testing.T) {
	_, err := Start(context.Background(), Options{Kube: kubeAt(t.TempDir())})
	if err == nil || !strings.Contains(err.Error(), "is missing") {
		t.Fatalf("want a 'missing binary' error, got %v", err)
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func waitUntil(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatal("condition not met within 2 minutes")
}

func kubeAt(dir string) toolchain.Kube {
	return toolchain.Kube{Bin: dir, Etcd: dir + "/etcd"}
}

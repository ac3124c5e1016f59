package localkube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// nodeWorkload: a web server pod with a volume behind a Service and an
// Ingress, and a client pod, all from the node's busybox image, under the
// restricted Pod Security Standard.
const nodeWorkload = `apiVersion: v1
kind: Namespace
metadata:
  name: node-test
  labels: {pod-security.kubernetes.io/enforce: restricted}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: node-test}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: node-test, labels: {app: server}}
spec:
  automountServiceAccountToken: false
  securityContext: {runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: httpd
    image: {{busybox}}
    command: [sh, -c, 'echo hello-from-the-node > /data/index.html && exec httpd -f -p 8080 -h /data']
    ports: [{containerPort: 8080, name: http}]
    readinessProbe: {httpGet: {path: /index.html, port: 8080}, periodSeconds: 2}
    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
---
apiVersion: v1
kind: Service
metadata: {name: server, namespace: node-test}
spec: {selector: {app: server}, ports: [{port: 80, targetPort: http}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: server, namespace: node-test}
spec:
  ingressClassName: traefik
  rules:
  - host: node-test.example.com
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: server, port: {number: 80}}}}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: node-test, labels: {app: client}}
spec:
  automountServiceAccountToken: false
  securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: client
    image: {{busybox}}
    command: [sleep, "3600"]
    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
`

const denyAll = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: node-test}
spec: {podSelector: {}, policyTypes: [Ingress]}
`

// TestNode starts a real node and checks what the platform relies on: pods
// run under the restricted standard, CoreDNS resolves Services, local-path
// binds a claim, kube-proxy routes a Service, kube-router enforces a
// NetworkPolicy, Traefik routes an Ingress on the node's port 80,
// metrics-server reports usage; and Stop leaves nothing behind.
func TestNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real node")
	}
	if os.Geteuid() != 0 {
		t.Fatal("a node needs root (network namespaces, mounts, cgroups, iptables): run the tests as root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{Log: testLog{t}, Node: true, Slot: AnySlot, TraefikCRDDelay: time.Second})
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
		return strings.TrimSpace(string(out))
	}
	exec := func(args ...string) (string, error) {
		out, err := c.Kubectl(ctx, append([]string{"exec", "-n", "node-test", "client", "--"}, args...)...)
		return strings.TrimSpace(string(out)), err
	}

	kc(strings.ReplaceAll(nodeWorkload, "{{busybox}}", c.node.images["busybox"].Ref()), "apply", "--server-side", "-f", "-")
	kc("", "wait", "--for=condition=Ready", "pod/server", "pod/client", "-n", "node-test", "--timeout=180s")
	if got := kc("", "get", "pvc", "data", "-n", "node-test", "-o", "jsonpath={.status.phase}/{.spec.storageClassName}"); got != "Bound/local-path" {
		t.Fatalf("claim: %s, want Bound/local-path", got)
	}

	// CoreDNS answers for the Service; kube-proxy routes its ClusterIP.
	// busybox 1.35's wget crashes with -T: timeout(1) bounds it instead.
	fetch := func() (string, error) {
		return exec("timeout", "5", "wget", "-q", "-O-", "http://server.node-test.svc."+ClusterDomain+"/index.html")
	}
	out, err := fetch()
	if err != nil || out != "hello-from-the-node" {
		t.Fatalf("client → Service by DNS name: %q %v", out, err)
	}

	// Traefik routes the Ingress from the node's address (its CRDs came 1s after start).
	waitUntil(t, func() bool { return getVia(c.NodeIP+":80", "node-test.example.com") == "hello-from-the-node" })

	// kube-router enforces a default-deny: the client is cut off, and Traefik
	// answers 502 (what a blocked ACME solver looked like in production).
	kc(denyAll, "apply", "--server-side", "-f", "-")
	waitUntil(t, func() bool {
		_, err := fetch()
		return err != nil && getVia(c.NodeIP+":80", "node-test.example.com") == "Bad Gateway"
	})
	kc("", "delete", "networkpolicy", "default-deny", "-n", "node-test")
	waitUntil(t, func() bool {
		out, err := fetch()
		return err == nil && out == "hello-from-the-node"
	})

	// metrics-server serves the metrics API the HPAs read.
	waitUntil(t, func() bool {
		out, err := c.Kubectl(ctx, "get", "--raw", "/apis/metrics.k8s.io/v1beta1/namespaces/node-test/pods")
		return err == nil && strings.Contains(string(out), `"name":"server"`)
	})

	// Stop removes what the node made.
	n := c.node
	pids := c.PIDs()
	dir := c.Dir
	stopped = true
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			t.Errorf("pid %d still running after Stop", pid)
		}
	}
	for _, ifc := range []string{n.net.hostNodeIf, n.net.hostInetIf} {
		if _, err := net.InterfaceByName(ifc); err == nil {
			t.Errorf("interface %s still present after Stop", ifc)
		}
	}
	for _, h := range hierarchies {
		if _, err := os.Stat(n.cg.dir(h)); err == nil {
			t.Errorf("cgroup %s still present after Stop", n.cg.dir(h))
		}
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("state dir %s still present after Stop", dir)
	}
}

// getVia GETs / from addr with Host host and returns the body ("" on error).
func getVia(addr, host string) string {
	client := &http.Client{Timeout: 5 * time.Second}
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/index.html", nil)
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// A slot runs one node: a second start in it is refused, naming the first.
func TestSlotIsExclusive(t *testing.T) {
	old := lockDir
	lockDir = t.TempDir()
	defer func() { lockDir = old }()
	first, err := lockSlot(0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = lockSlot(0)
	if err == nil || !errors.Is(err, ErrSlotBusy) || !strings.Contains(err.Error(), fmt.Sprintf("slot 0 by pid %d", os.Getpid())) {
		t.Fatalf("second lock of slot 0: %v, want ErrSlotBusy naming pid %d", err, os.Getpid())
	}
	any, err := lockSlot(AnySlot)
	if err != nil || any.slot != 1 {
		t.Fatalf("AnySlot: %+v %v, want slot 1", any, err)
	}
	first.release()
	again, err := lockSlot(0)
	if err != nil {
		t.Fatalf("slot 0 after release: %v", err)
	}
	again.release()
	any.release()
}

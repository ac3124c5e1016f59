package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"pressroom.dev/tools/devlaunch"
	"pressroom.dev/tools/localkube"
	"pressroom.dev/tools/localstack"
	"pressroom.dev/tools/offline"
)

// TestLivePlatform deploys infra/ with the real Pulumi engine onto a real
// K3s-equivalent node (tools/localkube) and uses it: the `local` stack as
// `make up STACK=local` configures it, every image built here. It proves
// what objects on an API server cannot: pods start under their security
// context, probes pass, migrations run against the in-cluster Postgres,
// services find each other by DNS, Traefik routes the Ingresses, and the
// NetworkPolicies let the real flows through. Then the browser journey runs
// through Traefik, and the stack goes through the same change, rollback,
// render and destroy steps the offline scenario has.
func TestLivePlatform(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a Kubernetes node and the whole platform; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the live node needs root (network namespaces, mounts, cgroups, iptables): run make test as root")
	}
	ctx, cancel := liveContext(t, 60*time.Minute)
	defer cancel()
	repo, err := devlaunch.FindRepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	logf := liveLog(t, repo)

	t0 := time.Now()
	c, err := localkube.Start(ctx, localkube.Options{
		Node: true, Slot: localkube.AnySlot, Log: logf,
		// Traefik's CRDs arrive only once the first `up` waits for them.
		TraefikCRDDelay: 24 * time.Hour,
	})
	if err != nil {
		t.Fatalf("start the node: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpNode(t, c)
			saveNodeLogs(t, c, filepath.Join(repo, ".artifacts", "live-node"))
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stop the node: %v", err)
		}
	})
	t.Logf("node ready in %s (%s)", time.Since(t0).Round(time.Second), c.NodeIP)

	inet, err := localstack.StartInternet(ctx, c, filepath.Join(c.Dir, "internet"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inet.Close() })
	cf := localstack.Describe(c, inet)

	t1 := time.Now()
	p, imgs, err := localstack.Prepare(ctx, repo, cf, filepath.Join(c.Dir, "local-stack"), logf, offline.RaceBuild())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("images built and imported, stack configured in %s", time.Since(t1).Round(time.Second))

	// A second web image: the same binary with a label, so a different digest.
	webB, err := localstack.Variant(filepath.Join(c.Dir, "local-stack", "images"), "web", map[string]string{"dev.pressroom.build": "b"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ImportImages(ctx, webB); err != nil {
		t.Fatal(err)
	}

	// As on a K3s cluster that already runs system-upgrade-controller: the
	// stack writes the Plan for the node's version (a stand-in CRD; nothing
	// acts on it).
	planCRD, err := os.ReadFile(filepath.Join(repo, "tools", "offline", "testdata", "upgrade-plan-crd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := c.KubectlStdin(ctx, strings.NewReader(string(planCRD)), "apply", "--server-side", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if err := p.SetConfig(ctx, localstack.StackName, map[string]string{
		"pressroom:upgrades.enabled": "true", "pressroom:upgrades.install": "false",
		"pressroom:cluster.k3sVersion": "v1.33.13+k3s1",
	}); err != nil {
		t.Fatal(err)
	}

	images := map[string]string{}
	for svc, img := range imgs.Services {
		images[svc] = img.Ref()
	}
	lc := &liveCluster{c: c, cf: cf, repo: repo, inet: inet}
	readme := filepath.Join(repo, "infra", "OPERATIONS.md")
	offline.Scenario{
		Stack: localstack.StackName, Prepared: true,
		ImagesKey: "pressroom:images", Images: images,
		Change: "web", NewImage: webB.Ref(),
		Namespace: "pressroom",
		// The render has no cert-manager Helm release, so no namespace for it.
		RenderOmits: []offline.KubeObject{{Type: "kubernetes:core/v1:Namespace", Name: "cert-manager"}},
		BeforeUp: func(ctx context.Context, t *testing.T, c *localkube.Cluster) {
			go lc.crdsWhenUpWaits(ctx, t)
		},
		AfterUp: func(ctx context.Context, t *testing.T, c *localkube.Cluster) {
			lc.crdRaceWon(t)
			lc.allReady(ctx, t)
			lc.certificateIssued(ctx, t)
			lc.hardened(ctx, t)
			lc.routes(ctx, t)
			lc.eventsFlow(ctx, t)
			lc.networkMatrix(ctx, t)
			lc.memory(t)
			lc.journey(ctx, t)
			lc.acmeSolverPolicyRegression(ctx, t)
			lc.renewal(ctx, t)
			lc.podsReplaced(ctx, t)
			offline.ReadmeJobsAdmitted(ctx, t, c, readme)
			offline.InternalPathsRefused(ctx, t, c)
			offline.UpgradePlanOnServer(ctx, t, c, "v1.33.13+k3s1")
			offline.UpgradeK3s(ctx, t, c, p, localstack.StackName)
		},
		AfterRollback: func(ctx context.Context, t *testing.T, c *localkube.Cluster) {
			// The rollback restored the first update's config but kept the
			// K3s version and the JWT key generation.
			offline.UpgradePlanOnServer(ctx, t, c, "v1.33.13+k3s2")
			out, err := p.Run(ctx, "", "config", "get", "-s", localstack.StackName, "--path", "pressroom:jwt.keyGeneration")
			if err != nil || strings.TrimSpace(out) != "2" {
				t.Fatalf("after the rollback jwt.keyGeneration = %q (%v), want 2 kept", out, err)
			}
		},
	}.Run(ctx, t, c, p)
}

// liveContext bounds a live test by d, and by go test's -timeout less the
// time its cleanup needs: a test stopped by -timeout panics without
// running its Cleanup, which would leave the node's processes running.
func liveContext(t *testing.T, d time.Duration) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(d)
	if end, ok := t.Deadline(); ok && end.Add(-3*time.Minute).Before(deadline) {
		deadline = end.Add(-3 * time.Minute)
	}
	return context.WithDeadline(context.Background(), deadline)
}

// liveLog is where the node and stack tooling write (the test prints its
// end when it fails).
func liveLog(t *testing.T, repo string) io.Writer {
	t.Helper()
	dir := filepath.Join(repo, ".artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "live-node.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		if t.Failed() {
			t.Logf("--- last lines of %s:\n%s", path, tail(path, 60))
		}
	})
	return f
}

// liveCluster holds what the checks share.
type liveCluster struct {
	c    *localkube.Cluster
	cf   localstack.ClusterFile
	repo string
	inet *localstack.Internet

	// The ACME CA's root, once the site's certificate is issued: clients
	// and the browser verify the site against it alone.
	siteRoots   *x509.CertPool
	siteRootPEM []byte

	upStarted time.Time
	crdsAt    time.Time
	crdsErr   error
}

// siteClient reaches the site through Traefik on the node, whatever the
// URL's host says (like a browser whose DNS points the domain at the node).
// Once the certificate is issued it verifies it against the ACME CA's root.
func (lc *liveCluster) siteClient() *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	node := lc.c.NodeIP
	tlsConf := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // Traefik's default certificate until the stack's is issued
	if lc.siteRoots != nil {
		tlsConf = &tls.Config{RootCAs: lc.siteRoots, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{
		Timeout: 15 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				_, port, _ := net.SplitHostPort(addr)
				return d.DialContext(ctx, network, net.JoinHostPort(node, port))
			},
			TLSClientConfig: tlsConf,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// browserFlags point Chromium's names at the node and the internet
// namespace, and make it trust the ACME CA's root and the internet's CA.
func (lc *liveCluster) browserFlags(t *testing.T) []chromedp.ExecAllocatorOption {
	rules := fmt.Sprintf("MAP %s %s, MAP www.%s %s, MAP %s %s", localstack.Domain, lc.c.NodeIP,
		localstack.Domain, lc.c.NodeIP, localstack.OIDCHost, lc.c.InternetHostAddress())
	return append(lc.browserTrust(t), chromedp.Flag("host-resolver-rules", rules))
}

func (lc *liveCluster) kubectl(ctx context.Context, t *testing.T, args ...string) string {
	t.Helper()
	out, err := lc.c.Kubectl(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func dumpNode(t *testing.T, c *localkube.Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, args := range [][]string{
		{"get", "pods", "-A", "-o", "wide"},
		{"get", "events", "-A", "--sort-by=.lastTimestamp"},
	} {
		out, _ := c.Kubectl(ctx, args...)
		t.Logf("kubectl %s:\n%s", strings.Join(args, " "), tailString(string(out), 80))
	}
}

// saveNodeLogs copies the node's component logs and its pods' logs to dir
// (the node's own directory goes with Stop).
func saveNodeLogs(t *testing.T, c *localkube.Cluster, dir string) {
	_ = os.RemoveAll(dir)
	for _, sub := range []string{"logs", "log/pods"} {
		src := filepath.Join(c.Dir, sub)
		err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(src, p)
			dst := filepath.Join(dir, sub, rel)
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(dst, b, 0o644)
		})
		if err != nil {
			t.Logf("copy %s: %v", src, err)
		}
	}
	t.Logf("the node's logs and its pods' logs are in %s", dir)
}

func tailString(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

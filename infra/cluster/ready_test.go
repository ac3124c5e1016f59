package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"pressroom.dev/stacks"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
}

func newTestCA(t *testing.T, cn string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

func (ca *testCA) issue(t *testing.T, tmpl *x509.Certificate) (certPEM, keyPEM string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
}

// fakeAPI answers the paths WaitReady asks as kube-apiserver does: /readyz
// (503 with the failing check, then "ok"), the NodeList at /api/v1/nodes,
// and each CustomResourceDefinition by name (a NotFound Status with 404
// when it does not exist, the object with status.conditions when it does).
// A test changes the state, or lets step change it after each request.
type fakeAPI struct {
	mu             sync.Mutex
	readyzFailures int
	nodes          []fakeNode
	crds           map[string]string // name → the Established condition's status; absent: 404
	calls          map[string]int
	step           func(a *fakeAPI, path string) // called, locked, after each answer
}

type fakeNode struct{ name, ready, reason string } // ready "": no Ready condition yet

func (a *fakeAPI) count(path string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls[path]
}

const crdPrefix = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"

func (a *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.Organization[0] != AdminOrg {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls[r.URL.Path]++
	if a.step != nil {
		defer a.step(a, r.URL.Path)
	}
	asJSON := func(code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
	switch path := r.URL.Path; {
	case path == "/readyz":
		if a.readyzFailures > 0 {
			a.readyzFailures--
			http.Error(w, "[-]etcd failed: not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	case path == "/api/v1/nodes":
		items := []any{}
		for _, n := range a.nodes {
			conds := []any{map[string]any{"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"}}
			if n.ready != "" {
				conds = append(conds, map[string]any{"type": "Ready", "status": n.ready, "reason": n.reason})
			}
			items = append(items, map[string]any{"metadata": map[string]any{"name": n.name}, "status": map[string]any{"conditions": conds}})
		}
		asJSON(http.StatusOK, map[string]any{"kind": "NodeList", "apiVersion": "v1", "metadata": map[string]any{"resourceVersion": "1"}, "items": items})
	case strings.HasPrefix(path, crdPrefix):
		name := strings.TrimPrefix(path, crdPrefix)
		established, ok := a.crds[name]
		if !ok {
			asJSON(http.StatusNotFound, map[string]any{
				"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{}, "status": "Failure",
				"message": fmt.Sprintf("customresourcedefinitions.apiextensions.k8s.io %q not found", name),
				"reason":  "NotFound", "code": 404,
				"details": map[string]any{"name": name, "group": "apiextensions.k8s.io", "kind": "customresourcedefinitions"},
			})
			return
		}
		conds := []any{map[string]any{"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found"}}
		if established != "" {
			msg := "the initial names have been accepted"
			if established != "True" {
				msg = "not all names are accepted"
			}
			conds = append(conds, map[string]any{"type": "Established", "status": established, "reason": "InitialNamesAccepted", "message": msg})
		}
		asJSON(http.StatusOK, map[string]any{
			"kind": "CustomResourceDefinition", "apiVersion": "apiextensions.k8s.io/v1",
			"metadata": map[string]any{"name": name}, "spec": map[string]any{"group": name[strings.Index(name, ".")+1:]},
			"status": map[string]any{"conditions": conds},
		})
	default:
		http.NotFound(w, r)
	}
}

// readyCluster is what a K3s cluster looks like once Traefik's and
// cert-manager's CRDs are in.
func readyCluster() *fakeAPI {
	return &fakeAPI{
		nodes: []fakeNode{{name: "k3s-1", ready: "True", reason: "KubeletReady"}},
		crds: map[string]string{
			"middlewares.traefik.io": "True", "clusterissuers.cert-manager.io": "True", "certificates.cert-manager.io": "True",
		},
		calls: map[string]int{},
	}
}

// apiServer serves api on loopback as kube-apiserver does: with a
// certificate from the server CA, requiring a client certificate from the
// client CA.
func apiServer(t *testing.T, serverCA, clientCA *testCA, api *fakeAPI) *httptest.Server {
	t.Helper()
	certPEM, keyPEM := serverCA.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "k3s"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(clientCA.cert)
	srv := httptest.NewUnstartedServer(api)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func adminKubeconfig(t *testing.T, server string, serverCA, signer *testCA) string {
	t.Helper()
	cert, key := signer.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: AdminCN, Organization: []string{AdminOrg}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	kc, err := RenderKubeconfig("pressroom-test", server, serverCA.pem, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return kc
}

var k3sNeeds = Needs{CRDs: []CRD{TraefikMiddlewareCRD}}

func TestWaitReadyWaitsForReadyz(t *testing.T) {
	defer func(d time.Duration) { pollInterval = d }(pollInterval)
	pollInterval = 50 * time.Millisecond
	serverCA, clientCA := newTestCA(t, ServerCACN), newTestCA(t, ClientCACN)
	api := readyCluster()
	api.readyzFailures = 3
	srv := apiServer(t, serverCA, clientCA, api)
	kc := adminKubeconfig(t, srv.URL, serverCA, clientCA)
	if err := WaitReady(context.Background(), kc, k3sNeeds, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := api.count("/readyz"); n != 4 {
		t.Errorf("readyz asked %d times, want 4 (3 failures, then ok)", n)
	}
	if n := api.count("/api/v1/nodes") + api.count(crdPrefix+"middlewares.traefik.io"); n != 2 {
		t.Errorf("nodes and CRD asked %d times in all, want once each, after /readyz", n)
	}
}

// On a fresh K3s the API server is ready before the node is, and Traefik's
// CRDs arrive later still (K3s' helm-install-traefik-crd Job): the gate
// waits for the node, for the CRD to exist and for it to be Established.
func TestWaitReadyWaitsForANodeAndTraefiksCRD(t *testing.T) {
	defer func(d time.Duration) { pollInterval = d }(pollInterval)
	pollInterval = 50 * time.Millisecond
	serverCA, clientCA := newTestCA(t, ServerCACN), newTestCA(t, ClientCACN)
	api := readyCluster()
	api.nodes = nil
	delete(api.crds, "middlewares.traefik.io")
	const crdPath = crdPrefix + "middlewares.traefik.io"
	api.step = func(a *fakeAPI, path string) {
		switch {
		case path == "/api/v1/nodes" && a.calls[path] == 2:
			a.nodes = []fakeNode{{name: "k3s-1", ready: "False", reason: "KubeletNotReady"}}
		case path == "/api/v1/nodes" && a.calls[path] == 4:
			a.nodes[0].ready, a.nodes[0].reason = "True", "KubeletReady"
		case path == crdPath && a.calls[path] == 6:
			a.crds["middlewares.traefik.io"] = "False" // created, names not yet accepted
		case path == crdPath && a.calls[path] == 8:
			a.crds["middlewares.traefik.io"] = "True"
		}
	}
	srv := apiServer(t, serverCA, clientCA, api)
	kc := adminKubeconfig(t, srv.URL, serverCA, clientCA)
	if err := WaitReady(context.Background(), kc, k3sNeeds, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := api.count(crdPath); n != 9 {
		t.Errorf("the CRD was asked %d times, want 9: 6 times missing, twice not Established, then Established", n)
	}
	if n := api.count("/api/v1/nodes"); n != 9 {
		t.Errorf("the nodes were listed %d times, want 9 (every round until all is there)", n)
	}
	if n := api.count(crdPrefix + "clusterissuers.cert-manager.io"); n != 0 {
		t.Errorf("cert-manager's CRDs were asked for %d times; the stack installs cert-manager", n)
	}
}

// After the timeout the error names exactly what is still missing, each
// with what to check, and nothing that is there.
func TestWaitReadyNamesWhatIsStillMissing(t *testing.T) {
	defer func(d time.Duration) { pollInterval = d }(pollInterval)
	pollInterval = 50 * time.Millisecond
	preinstalled := NeedsFor(&stacks.Config{CertManager: stacks.CertManagerConfig{Install: false}})
	for _, tc := range []struct {
		name    string
		change  func(*fakeAPI)
		needs   Needs
		want    []string
		notWant []string
	}{
		{"fresh K3s: no node, no Traefik CRDs", func(a *fakeAPI) { a.nodes = nil; delete(a.crds, "middlewares.traefik.io") }, k3sNeeds,
			[]string{"is ready, but within 2s the cluster did not get what the platform needs; still missing:",
				"\n  - a Ready node: no node has registered yet; check `kubectl get nodes` and, on the node, `journalctl -u k3s`",
				"\n  - CustomResourceDefinition middlewares.traefik.io: not found; K3s applies Traefik's CRDs with its helm-install-traefik-crd Job",
				"`kubectl -n kube-system get jobs`", "raise pressroom:cluster.readyTimeoutSeconds"},
			[]string{"cert-manager", "/readyz within"}},
		{"node not ready", func(a *fakeAPI) { a.nodes[0].ready, a.nodes[0].reason = "False", "KubeletNotReady" }, k3sNeeds,
			[]string{"a Ready node: none of the nodes is Ready: k3s-1 Ready=False (KubeletNotReady)"},
			[]string{"middlewares.traefik.io", "cert-manager"}},
		{"cert-manager expected but absent", func(a *fakeAPI) {
			delete(a.crds, "clusterissuers.cert-manager.io")
			a.crds["certificates.cert-manager.io"] = "False"
		}, preinstalled,
			[]string{"CustomResourceDefinition clusterissuers.cert-manager.io: not found; certManager.install is false, so the cluster must already run cert-manager",
				"CustomResourceDefinition certificates.cert-manager.io: exists but is not Established yet (Established=False: not all names are accepted)",
				"or set pressroom:certManager.install to true"},
			[]string{"middlewares.traefik.io", "Ready node"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			serverCA, clientCA := newTestCA(t, ServerCACN), newTestCA(t, ClientCACN)
			api := readyCluster()
			tc.change(api)
			srv := apiServer(t, serverCA, clientCA, api)
			err := WaitReady(context.Background(), adminKubeconfig(t, srv.URL, serverCA, clientCA), tc.needs, 2*time.Second)
			if err == nil {
				t.Fatal("reported ready")
			}
			t.Logf("the error:\n%v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error names %q, which is not missing:\n%v", w, err)
				}
			}
		})
	}
}

func TestNeedsFollowTheCertManagerSetting(t *testing.T) {
	names := func(n Needs) string {
		var out []string
		for _, c := range n.CRDs {
			out = append(out, c.Name)
		}
		return strings.Join(out, " ")
	}
	if got := names(NeedsFor(&stacks.Config{CertManager: stacks.CertManagerConfig{Install: true}})); got != "middlewares.traefik.io" {
		t.Errorf("cert-manager installed by the stack: needs %s", got)
	}
	if got := names(NeedsFor(&stacks.Config{CertManager: stacks.CertManagerConfig{Install: false}})); got != "middlewares.traefik.io clusterissuers.cert-manager.io certificates.cert-manager.io" {
		t.Errorf("cert-manager preinstalled: needs %s", got)
	}
}

func TestWaitReadyTimesOutWithAClearError(t *testing.T) {
	defer func(d time.Duration) { pollInterval = d }(pollInterval)
	pollInterval = 50 * time.Millisecond
	serverCA, clientCA := newTestCA(t, ServerCACN), newTestCA(t, ClientCACN)
	api := readyCluster()
	api.readyzFailures = 1 << 30
	srv := apiServer(t, serverCA, clientCA, api)
	// Long enough for a first TLS handshake under -race on a loaded machine.
	err := WaitReady(context.Background(), adminKubeconfig(t, srv.URL, serverCA, clientCA), k3sNeeds, 3*time.Second)
	if err == nil {
		t.Fatal("never-ready API server reported ready")
	}
	for _, want := range []string{"did not answer /readyz within 3s", "HTTP 503", "etcd failed", "cloud-init status --long", "readyTimeoutSeconds"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestWaitReadyRejectsACertificateFromAnotherCA(t *testing.T) {
	defer func(d time.Duration) { pollInterval = d }(pollInterval)
	pollInterval = 50 * time.Millisecond
	serverCA, clientCA, rogue := newTestCA(t, ServerCACN), newTestCA(t, ClientCACN), newTestCA(t, "rogue")
	api := readyCluster()
	srv := apiServer(t, serverCA, clientCA, api)
	err := WaitReady(context.Background(), adminKubeconfig(t, srv.URL, serverCA, rogue), k3sNeeds, 3*time.Second)
	if err == nil || api.count("/readyz") != 0 {
		t.Fatalf("client cert from a foreign CA got through: err=%v calls=%d", err, api.count("/readyz"))
	}
	// and the server must be verified against the kubeconfig's CA, too
	err = WaitReady(context.Background(), adminKubeconfig(t, srv.URL, rogue, clientCA), k3sNeeds, 3*time.Second)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("server cert not verified against the kubeconfig CA: %v", err)
	}
}

func TestKubeconfigRoundTrip(t *testing.T) {
	kc, err := RenderKubeconfig("c", "https://198.51.100.7:6443", "CA", "CERT", "KEY")
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseKubeconfig(kc)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.CurrentContext != "c" || parsed.Clusters[0].Cluster.Server != "https://198.51.100.7:6443" || parsed.Users[0].User.ClientKeyData == "" {
		t.Errorf("parsed %+v", parsed)
	}
	if _, _, _, err := parsed.Current(); err == nil || !strings.Contains(err.Error(), "PEM") {
		t.Errorf("garbage CA accepted: %v", err)
	}
}

// The kubeconfig is a secret: a parse error must not quote it.
func TestParseKubeconfigErrorQuotesNothing(t *testing.T) {
	for _, doc := range []string{"sk-live-abcdefghijklmnop", "clusters: sk-live-abcdefghijklmnop", "a: [sk-live-abcdefghijklmnop"} {
		_, err := ParseKubeconfig(doc)
		if err == nil || strings.Contains(err.Error(), "sk-live") {
			t.Errorf("%q: %v", doc, err)
		}
	}
}

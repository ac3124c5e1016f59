package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
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

// apiServer is an HTTPS server on loopback that, like kube-apiserver, serves
// with a certificate from the server CA and requires a client certificate
// from the client CA; /readyz fails `failures` times, then answers ok.
func apiServer(t *testing.T, serverCA, clientCA *testCA, failures int32) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	certPEM, keyPEM := serverCA.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "k3s"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(clientCA.cert)
	var calls atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		if len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.Organization[0] != AdminOrg {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		if calls.Add(1) <= failures {
			http.Error(w, "[-]etcd failed: not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, &calls
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

func TestWaitReadyWaitsForReadyz(t *testing.T) {
	defer func(d time.Duration) { pollInterval = d }(pollInterval)
	pollInterval = 50 * time.Millisecond
	serverCA, clientCA := newTestCA(t, ServerCACN), newTestCA(t, ClientCACN)
	srv, calls := apiServer(t, serverCA, clientCA, 3)
	kc := adminKubeconfig(t, srv.URL, serverCA, clientCA)
	if err := WaitReady(context.Background(), kc, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 4 {
		t.Errorf("readyz asked %d times, want 4 (3 failures, then ok)", calls.Load())
	}
}

func TestWaitReadyTimesOutWithAClearError(t *testing.T) {
	defer func(d time.Duration) { pollInterval = d }(pollInterval)
	pollInterval = 50 * time.Millisecond
	serverCA, clientCA := newTestCA(t, ServerCACN), newTestCA(t, ClientCACN)
	srv, _ := apiServer(t, serverCA, clientCA, 1<<30)
	// Long enough for a first TLS handshake under -race on a loaded machine.
	err := WaitReady(context.Background(), adminKubeconfig(t, srv.URL, serverCA, clientCA), 3*time.Second)
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
	srv, calls := apiServer(t, serverCA, clientCA, 0)
	err := WaitReady(context.Background(), adminKubeconfig(t, srv.URL, serverCA, rogue), 3*time.Second)
	if err == nil || calls.Load() != 0 {
		t.Fatalf("client cert from a foreign CA got through: err=%v calls=%d", err, calls.Load())
	}
	// and the server must be verified against the kubeconfig's CA, too
	err = WaitReady(context.Background(), adminKubeconfig(t, srv.URL, rogue, clientCA), 3*time.Second)
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

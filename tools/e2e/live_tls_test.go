package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"pressroom.dev/tools/localstack"
	"pressroom.dev/tools/toolchain"
)

// The site's certificate comes from the local ACME CA (Pebble in the
// internet namespace) through the whole HTTP-01 path production uses:
// cert-manager's ClusterIssuer and Certificate, the solver pod behind
// Traefik on port 80, the CA connecting to the site's public address.
const (
	certName         = "pressroom-tls" // infra/edge Certificate and its Secret
	solverPolicyName = "allow-acme-solver"
)

// certificateIssued waits for the Certificate to be Ready and checks that
// the chain verifies against the ACME CA's root and nothing else. From here
// on the checks' clients (routes' among them) verify the site's certificate.
func (lc *liveCluster) certificateIssued(ctx context.Context, t *testing.T) {
	t.Helper()
	lc.waitCertReady(ctx, t, 6*time.Minute, "Certificate "+certName+" Ready")
	var cert struct {
		Metadata struct {
			CreationTimestamp time.Time `json:"creationTimestamp"`
		} `json:"metadata"`
		Status struct {
			Conditions []struct {
				Type, Status       string
				LastTransitionTime time.Time `json:"lastTransitionTime"`
			} `json:"conditions"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(lc.kubectl(ctx, t, "get", "certificate", certName, "-n", "pressroom", "-o", "json")), &cert); err != nil {
		t.Fatal(err)
	}
	var readyAt time.Time
	for _, c := range cert.Status.Conditions {
		if c.Type == "Ready" {
			readyAt = c.LastTransitionTime
		}
	}
	root, err := lc.inet.PebbleRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lc.siteRootPEM = root
	lc.siteRoots = x509.NewCertPool()
	lc.siteRoots.AppendCertsFromPEM(root)

	d := localstack.Domain
	var leaf *x509.Certificate
	for _, host := range []string{d, "www." + d} {
		leaf = lc.waitServedCert(ctx, t, 2*time.Minute, host, nil)
	}
	// Neither this machine's roots nor the internet's CA vouch for it.
	internetCA := x509.NewCertPool()
	internetCA.AppendCertsFromPEM(lc.inet.CAPEM)
	for name, pool := range map[string]*x509.CertPool{"the system's roots": nil, "the internet CA": internetCA} {
		if _, err := lc.servedCert(ctx, d, pool); err == nil {
			t.Errorf("the site's certificate verifies against %s too; want the ACME CA's root only", name)
		}
	}

	t.Logf("   certificate Ready %s after the Certificate was created; served for %v by %q until %s, verified against the ACME CA's root only",
		readyAt.Sub(cert.Metadata.CreationTimestamp), leaf.DNSNames, leaf.Issuer.CommonName, leaf.NotAfter.Format(time.DateOnly))
}

// certReady reads the Certificate's Ready condition (and why not).
func (lc *liveCluster) certReady(ctx context.Context, t *testing.T) (bool, string) {
	t.Helper()
	out, err := lc.c.Kubectl(ctx, "get", "certificate", certName, "-n", "pressroom", "-o",
		`jsonpath={range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}`)
	if err != nil {
		return false, fmt.Sprintf("%v %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "Ready=True") {
			return true, ""
		}
	}
	return false, strings.TrimSpace(string(out))
}

// waitCertReady waits up to d for the Certificate's Ready condition.
func (lc *liveCluster) waitCertReady(ctx context.Context, t *testing.T, d time.Duration, what string) {
	t.Helper()
	lc.waitFor(ctx, t, d, what, func() []string {
		if ready, why := lc.certReady(ctx, t); !ready {
			return []string{why}
		}
		return nil
	})
}

// servedCert is the leaf Traefik serves for host, verified against roots
// (nil: this machine's roots).
func (lc *liveCluster) servedCert(ctx context.Context, host string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS12}}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(lc.c.NodeIP, "443"))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

// waitServedCert waits up to d for Traefik to serve host a certificate that
// verifies against the ACME CA's root and, given notSerial, is not the one
// of that serial. Traefik takes a new Secret from its watch a moment after
// cert-manager writes it, and serves its default certificate until then.
func (lc *liveCluster) waitServedCert(ctx context.Context, t *testing.T, d time.Duration, host string, notSerial *big.Int) *x509.Certificate {
	t.Helper()
	var leaf *x509.Certificate
	lc.waitFor(ctx, t, d, "Traefik serving https://"+host+"/ the issued certificate", func() []string {
		var err error
		if leaf, err = lc.servedCert(ctx, host, lc.siteRoots); err != nil {
			return []string{err.Error()}
		}
		if notSerial != nil && leaf.SerialNumber.Cmp(notSerial) == 0 {
			return []string{"still the certificate of serial " + notSerial.Text(16)}
		}
		return nil
	})
	return leaf
}

// acmeSolverPolicyRegression replays the outage of a certificate that could
// not be issued because the default-deny policy also cut Traefik off from
// cert-manager's solver: without the solver's policy the challenge stays
// pending (cert-manager's self-check gets Traefik's error) and the
// Certificate is not Ready; with it back, issuance completes.
func (lc *liveCluster) acmeSolverPolicyRegression(ctx context.Context, t *testing.T) {
	t.Helper()
	saved := lc.kubectl(ctx, t, "get", "networkpolicy", solverPolicyName, "-n", "pressroom", "-o", "json")
	policy, err := applicable(saved)
	if err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if out, err := lc.c.KubectlStdin(ctx, strings.NewReader(policy), "apply", "-f", "-"); err != nil {
			t.Fatalf("put the solver's NetworkPolicy back: %v\n%s", err, out)
		}
		restored = true
	}
	defer func() {
		if !restored {
			restore()
		}
	}()
	lc.kubectl(ctx, t, "delete", "networkpolicy", solverPolicyName, "-n", "pressroom")
	// A certificate to issue anew: its Secret gone, the Certificate is not
	// Ready until a new one is issued.
	lc.kubectl(ctx, t, "delete", "secret", certName, "-n", "pressroom")
	watch := lc.watchChallengePath(ctx, t)

	var reason string
	lc.waitFor(ctx, t, 5*time.Minute, "a challenge failing cert-manager's self-check without the solver's policy", func() []string {
		for _, ch := range lc.challenges(ctx, t) {
			if strings.Contains(ch.Status.Reason, "wrong status code") {
				reason = ch.Status.Reason
				return nil
			}
		}
		return []string{"no challenge reports a wrong status code yet"}
	})
	// It stays so: a minute later (a normal issuance here takes well under
	// one), with the solver pod running, the challenge still fails.
	time.Sleep(time.Minute)
	if ready, _ := lc.certReady(ctx, t); ready {
		t.Fatalf("the Certificate is Ready without the solver's NetworkPolicy (challenge: %s)", reason)
	}
	failing := false
	for _, ch := range lc.challenges(ctx, t) {
		if strings.Contains(ch.Status.Reason, "wrong status code") {
			failing, reason = true, ch.Status.Reason
		}
	}
	if !failing {
		t.Fatalf("a minute on, no challenge fails cert-manager's self-check without the solver's policy: %+v", lc.challenges(ctx, t))
	}
	solvers := lc.kubectl(ctx, t, "get", "pods", "-n", "pressroom", "-l", "acme.cert-manager.io/http01-solver=true",
		"-o", `jsonpath={range .items[*]}{.status.phase} {end}`)
	if !strings.Contains(solvers, "Running") {
		t.Fatalf("no solver pod running (%q): the failure is not the policy's", solvers)
	}
	blocked := watch()
	if blocked.responses == 0 {
		t.Errorf("the challenge path was never answered while the challenge was open")
	}

	watch = lc.watchChallengePath(ctx, t)
	restore()
	t0 := time.Now()
	lc.waitCertReady(ctx, t, 5*time.Minute, "the Certificate issued with the solver's policy back")
	issued := time.Since(t0)
	open := watch()
	if !open.sawKey {
		t.Errorf("the challenge path never answered the key while the challenge was open (answers: %v)", open.statuses)
	}
	lc.waitServedCert(ctx, t, 2*time.Minute, localstack.Domain, nil)
	served := time.Since(t0)
	t.Logf("   without the solver's NetworkPolicy: Certificate not Ready a minute on, cert-manager: %q (challenge path answered %v); policy back: issued in %s, served in %s (challenge path answered %v)",
		reason, blocked.statuses, issued.Round(time.Second), served.Round(time.Second), open.statuses)
	if blocked.statuses[http.StatusOK] > 0 {
		t.Errorf("the challenge path answered 200 without the solver's policy: %v", blocked.statuses)
	}
}

// renewal forces a renewal with every policy in force and sees Traefik
// serve the new certificate without a restart.
func (lc *liveCluster) renewal(ctx context.Context, t *testing.T) {
	t.Helper()
	before, err := lc.servedCert(ctx, localstack.Domain, lc.siteRoots)
	if err != nil {
		t.Fatal(err)
	}
	// Traefik's pods and restarts: the same after, or it was restarted.
	traefikPods := func() string {
		return lc.kubectl(ctx, t, "get", "pods", "-n", "kube-system", "-l", "app.kubernetes.io/name=traefik",
			"-o", `jsonpath={range .items[*]}{.metadata.uid}/{.status.containerStatuses[0].restartCount} {end}`)
	}
	traefikBefore := traefikPods()
	parts, err := toolchain.EnsureNode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	watch := lc.watchChallengePath(ctx, t)
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, parts.Path("cert-manager-ctl"), "renew", certName, "-n", "pressroom", "--kubeconfig", lc.c.Kubeconfig)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cmctl renew: %v\n%s", err, out)
	}
	after := lc.waitServedCert(ctx, t, 5*time.Minute, localstack.Domain, before.SerialNumber)
	took := time.Since(t0)
	seen := watch()
	if traefikAfter := traefikPods(); traefikAfter != traefikBefore {
		t.Errorf("Traefik was restarted during the renewal: %q → %q", traefikBefore, traefikAfter)
	}
	if seen.challenges == 0 {
		t.Errorf("the renewal opened no challenge: the HTTP-01 path was not exercised")
	}
	t.Logf("   renewal with every NetworkPolicy in force: new certificate (serial %s → %s, valid from %s) served %s after `cmctl renew`, Traefik not restarted; challenge path answered %v (the solver's route from its first answer to its last)",
		before.SerialNumber.Text(16)[:8], after.SerialNumber.Text(16)[:8], after.NotBefore.Format(time.TimeOnly), took.Round(time.Second), seen.statuses)
}

type challenge struct {
	Spec struct {
		Token   string `json:"token"`
		Key     string `json:"key"`
		DNSName string `json:"dnsName"`
	} `json:"spec"`
	Status struct {
		State  string `json:"state"`
		Reason string `json:"reason"`
	} `json:"status"`
}

func (lc *liveCluster) challenges(ctx context.Context, t *testing.T) []challenge {
	out, err := lc.c.Kubectl(ctx, "get", "challenges.acme.cert-manager.io", "-n", "pressroom", "-o", "json")
	if err != nil {
		return nil // transient: the caller polls
	}
	var l struct{ Items []challenge }
	if err := json.Unmarshal(out, &l); err != nil {
		t.Fatal(err)
	}
	return l.Items
}

// pathReport is what the challenge path answered while challenges were open.
type pathReport struct {
	challenges, responses int
	statuses              map[int]int
	sawKey                bool
}

// watchChallengePath asks for every open challenge's URL over plain HTTP
// (as the ACME CA does) until the returned function is called.
func (lc *liveCluster) watchChallengePath(ctx context.Context, t *testing.T) func() pathReport {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	r := pathReport{statuses: map[int]int{}}
	type answer struct {
		status   int
		served   bool // 200 with the challenge's key
		location string
	}
	seq := map[string][]answer{}
	seen := map[string]bool{}
	client := lc.siteClient()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			for _, ch := range lc.challenges(ctx, t) {
				if ch.Spec.Token == "" {
					continue
				}
				url := "http://" + ch.Spec.DNSName + "/.well-known/acme-challenge/" + ch.Spec.Token
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
				resp.Body.Close()
				mu.Lock()
				if !seen[ch.Spec.Token] {
					seen[ch.Spec.Token] = true
					r.challenges++
				}
				r.responses++
				r.statuses[resp.StatusCode]++
				served := resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == ch.Spec.Key
				if served {
					r.sawKey = true
				}
				seq[ch.Spec.Token] = append(seq[ch.Spec.Token], answer{resp.StatusCode, served, resp.Header.Get("Location")})
				mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	return func() pathReport {
		t.Helper()
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		// Before Traefik routes the solver's Ingress, and after cert-manager
		// removes it, the path falls to the redirecting Ingress (no CA asks
		// then: cert-manager accepts the challenge only once its own check
		// gets the key). From the first answer of the key to the last, the
		// solver's route must win every time.
		var redirects []string
		for token, as := range seq {
			first, last := -1, -1
			for i, a := range as {
				if a.served {
					if first < 0 {
						first = i
					}
					last = i
				}
			}
			for i := first; first >= 0 && i <= last; i++ {
				if as[i].status/100 == 3 {
					redirects = append(redirects, fmt.Sprintf("%s: %d → %s", token, as[i].status, as[i].location))
				}
			}
		}
		if len(redirects) > 0 {
			sort.Strings(redirects)
			t.Errorf("the ACME challenge path was redirected while the solver was serving it: %v", redirects)
		}
		return r
	}
}

// applicable is a live object's JSON without the fields the API server
// sets, ready for kubectl apply.
func applicable(live string) (string, error) {
	var obj map[string]any
	if err := json.Unmarshal([]byte(live), &obj); err != nil {
		return "", err
	}
	meta, _ := obj["metadata"].(map[string]any)
	if meta == nil {
		return "", errors.New("object without metadata")
	}
	keep := map[string]any{}
	for _, k := range []string{"name", "namespace", "labels", "annotations"} {
		if v, ok := meta[k]; ok {
			keep[k] = v
		}
	}
	if ann, ok := keep["annotations"].(map[string]any); ok {
		delete(ann, "kubectl.kubernetes.io/last-applied-configuration")
	}
	obj["metadata"] = keep
	delete(obj, "status")
	b, err := json.Marshal(obj)
	return string(b), err
}

// browserTrust gives Chromium an NSS database (its trust store on Linux,
// under $HOME/.pki/nssdb) that trusts the ACME CA's root and the internet's
// CA (the OIDC provider), so the journey runs with certificate checks on.
func (lc *liveCluster) browserTrust(t *testing.T) []chromedp.ExecAllocatorOption {
	t.Helper()
	if lc.siteRootPEM == nil {
		t.Fatal("the browser journey runs over HTTPS: certificateIssued must run first")
	}
	home, err := os.MkdirTemp("", "pressroom-e2e-home-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeWithRetry(t, home) })
	db := filepath.Join(home, ".pki", "nssdb")
	if err := os.MkdirAll(db, 0o700); err != nil {
		t.Fatal(err)
	}
	certutil := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("certutil", append([]string{"-d", "sql:" + db}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("certutil %v: %v\n%s (run make deps: Debian package libnss3-tools)", args, err, out)
		}
	}
	certutil("-N", "--empty-password")
	for name, pemBytes := range map[string][]byte{"acme-root": lc.siteRootPEM, "internet-ca": lc.inet.CAPEM} {
		path := filepath.Join(home, name+".pem")
		if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
			t.Fatal(err)
		}
		certutil("-A", "-n", name, "-t", "C,,", "-i", path)
	}
	return []chromedp.ExecAllocatorOption{chromedp.Env("HOME=" + home)}
}

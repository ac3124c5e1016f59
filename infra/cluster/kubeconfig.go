package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"pressroom.dev/stacks"
)

// Kubeconfig is the subset of a kubeconfig file this program writes and reads.
type Kubeconfig struct {
	APIVersion     string         `yaml:"apiVersion"`
	Kind           string         `yaml:"kind"`
	Clusters       []NamedCluster `yaml:"clusters"`
	Users          []NamedUser    `yaml:"users"`
	Contexts       []NamedContext `yaml:"contexts"`
	CurrentContext string         `yaml:"current-context"`
}

type NamedCluster struct {
	Name    string `yaml:"name"`
	Cluster struct {
		Server                   string `yaml:"server"`
		CertificateAuthorityData string `yaml:"certificate-authority-data,omitempty"`
		CertificateAuthority     string `yaml:"certificate-authority,omitempty"`
		InsecureSkipTLSVerify    bool   `yaml:"insecure-skip-tls-verify,omitempty"`
	} `yaml:"cluster"`
}

type NamedUser struct {
	Name string `yaml:"name"`
	User struct {
		ClientCertificateData string `yaml:"client-certificate-data,omitempty"`
		ClientKeyData         string `yaml:"client-key-data,omitempty"`
		ClientCertificate     string `yaml:"client-certificate,omitempty"`
		ClientKey             string `yaml:"client-key,omitempty"`
		Token                 string `yaml:"token,omitempty"`
		Exec                  any    `yaml:"exec,omitempty"`
	} `yaml:"user"`
}

type NamedContext struct {
	Name    string `yaml:"name"`
	Context struct {
		Cluster string `yaml:"cluster"`
		User    string `yaml:"user"`
	} `yaml:"context"`
}

// RenderKubeconfig builds the admin kubeconfig from PEM material.
func RenderKubeconfig(name, server, caPEM, certPEM, keyPEM string) (string, error) {
	b64 := base64.StdEncoding.EncodeToString
	kc := Kubeconfig{APIVersion: "v1", Kind: "Config", CurrentContext: name}
	c := NamedCluster{Name: name}
	c.Cluster.Server = server
	c.Cluster.CertificateAuthorityData = b64([]byte(caPEM))
	u := NamedUser{Name: name + "-admin"}
	u.User.ClientCertificateData = b64([]byte(certPEM))
	u.User.ClientKeyData = b64([]byte(keyPEM))
	x := NamedContext{Name: name}
	x.Context.Cluster, x.Context.User = c.Name, u.Name
	kc.Clusters, kc.Users, kc.Contexts = []NamedCluster{c}, []NamedUser{u}, []NamedContext{x}
	out, err := yaml.Marshal(kc)
	return string(out), err
}

// ParseKubeconfig parses a kubeconfig.
func ParseKubeconfig(s string) (*Kubeconfig, error) {
	var kc Kubeconfig
	if err := yaml.Unmarshal([]byte(s), &kc); err != nil {
		// Not the parser's error: it quotes the (secret) document.
		return nil, errors.New("kubeconfig is not valid YAML (a kubeconfig file with clusters, users and contexts)")
	}
	return &kc, nil
}

// Current returns the server URL, TLS settings and bearer token of the current context.
func (kc *Kubeconfig) Current() (server string, cfg *tls.Config, token string, err error) {
	ctxName := kc.CurrentContext
	if ctxName == "" && len(kc.Contexts) > 0 {
		ctxName = kc.Contexts[0].Name
	}
	var clusterName, userName string
	for _, c := range kc.Contexts {
		if c.Name == ctxName {
			clusterName, userName = c.Context.Cluster, c.Context.User
		}
	}
	if clusterName == "" && len(kc.Clusters) == 1 {
		clusterName = kc.Clusters[0].Name
	}
	if userName == "" && len(kc.Users) == 1 {
		userName = kc.Users[0].Name
	}
	cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	found := false
	for _, c := range kc.Clusters {
		if c.Name != clusterName {
			continue
		}
		found = true
		server = c.Cluster.Server
		ca, err := dataOrFile(c.Cluster.CertificateAuthorityData, c.Cluster.CertificateAuthority)
		if err != nil {
			return "", nil, "", fmt.Errorf("cluster %q certificate authority: %w", c.Name, err)
		}
		if len(ca) > 0 {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(ca) {
				return "", nil, "", fmt.Errorf("cluster %q: certificate authority holds no PEM certificate", c.Name)
			}
			cfg.RootCAs = pool
		}
		cfg.InsecureSkipVerify = c.Cluster.InsecureSkipTLSVerify
	}
	if !found || server == "" {
		return "", nil, "", fmt.Errorf("kubeconfig has no cluster with a server URL for context %q", ctxName)
	}
	for _, u := range kc.Users {
		if u.Name != userName {
			continue
		}
		token = u.User.Token
		cert, err := dataOrFile(u.User.ClientCertificateData, u.User.ClientCertificate)
		if err != nil {
			return "", nil, "", fmt.Errorf("user %q client certificate: %w", u.Name, err)
		}
		key, err := dataOrFile(u.User.ClientKeyData, u.User.ClientKey)
		if err != nil {
			return "", nil, "", fmt.Errorf("user %q client key: %w", u.Name, err)
		}
		if len(cert) > 0 {
			pair, err := tls.X509KeyPair(cert, key)
			if err != nil {
				return "", nil, "", fmt.Errorf("user %q: client certificate and key do not form a pair: %w", u.Name, err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
	}
	return server, cfg, token, nil
}

func dataOrFile(data, file string) ([]byte, error) {
	if data != "" {
		return base64.StdEncoding.DecodeString(data)
	}
	if file != "" {
		return os.ReadFile(file)
	}
	return nil, nil
}

// ReadyFunc blocks until the cluster of kubeconfig is ready for the
// platform (the API server, a node and needs' CRDs), or fails.
type ReadyFunc func(ctx context.Context, kubeconfig string, needs Needs, timeout time.Duration) error

// CRD is a CustomResourceDefinition the platform creates objects of; Hint
// tells the operator where it comes from and what to check while it is missing.
type CRD struct {
	Name string // plural.group, e.g. middlewares.traefik.io
	Hint string
}

// Needs is what the readiness gate waits for after /readyz answers: at
// least one Ready node and every CRD Established.
type Needs struct {
	CRDs []CRD
}

// TraefikMiddlewareCRD is Traefik's Middleware, which the platform always
// creates. K3s applies it after the API server is ready, from its
// helm-install-traefik-crd Job, so a first `up` on a fresh K3s waits for it.
var TraefikMiddlewareCRD = CRD{
	Name: "middlewares.traefik.io",
	Hint: "K3s applies Traefik's CRDs with its helm-install-traefik-crd Job after the API server starts: " +
		"check `kubectl -n kube-system get jobs` and `kubectl -n kube-system logs job/helm-install-traefik-crd`; " +
		"on a cluster without K3s's Traefik, install Traefik (v3, with its CRDs) first",
}

// CertManagerCRDs are cert-manager's, which the platform needs from the
// cluster when it does not install cert-manager itself.
var CertManagerCRDs = []CRD{
	{Name: "clusterissuers.cert-manager.io", Hint: certManagerHint},
	{Name: "certificates.cert-manager.io", Hint: certManagerHint},
}

const certManagerHint = "certManager.install is false, so the cluster must already run cert-manager with its CRDs: " +
	"check `kubectl get crds | grep cert-manager.io` and `kubectl -n cert-manager get pods`, " +
	"or set pressroom:certManager.install to true"

// NeedsFor is what the platform of cfg needs from the cluster.
func NeedsFor(cfg *stacks.Config) Needs {
	n := Needs{CRDs: []CRD{TraefikMiddlewareCRD}}
	if !cfg.CertManager.Install {
		n.CRDs = append(n.CRDs, CertManagerCRDs...)
	}
	return n
}

// NodeVersionsFunc lists the kubelet version of every node of kubeconfig's cluster.
type NodeVersionsFunc func(ctx context.Context, kubeconfig string) ([]string, error)

// Probes are the program's two questions to a live API server; tests pass
// their own.
type Probes struct {
	Ready        ReadyFunc
	NodeVersions NodeVersionsFunc
}

// Live asks the real API server.
var Live = Probes{Ready: WaitReady, NodeVersions: NodeVersions}

// apiClient is an HTTP client with kubeconfig's current credentials.
func apiClient(kubeconfig string) (server string, client *http.Client, token string, err error) {
	kc, err := ParseKubeconfig(kubeconfig)
	if err != nil {
		return "", nil, "", err
	}
	server, tlsCfg, token, err := kc.Current()
	if err != nil {
		return "", nil, "", err
	}
	return server, &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}, token, nil
}

// NodeVersions reads status.nodeInfo.kubeletVersion of every node
// (GET /api/v1/nodes).
func NodeVersions(ctx context.Context, kubeconfig string) ([]string, error) {
	server, client, token, err := apiClient(kubeconfig)
	if err != nil {
		return nil, err
	}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+"/api/v1/nodes", nil)
	if err != nil {
		return nil, fmt.Errorf("kubernetes API %s: %w", server, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("list nodes on %s: %w", server, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("list nodes on %s: HTTP %d: %s", server, resp.StatusCode, body)
	}
	var list struct {
		Items []struct {
			Status struct {
				NodeInfo struct {
					KubeletVersion string `json:"kubeletVersion"`
				} `json:"nodeInfo"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, fmt.Errorf("list nodes on %s: %w", server, err)
	}
	var out []string
	for _, n := range list.Items {
		if v := n.Status.NodeInfo.KubeletVersion; v != "" {
			out = append(out, v)
		}
	}
	return out, nil
}

// pollInterval is how often WaitReady asks the API server.
var pollInterval = 5 * time.Second

// apiGet is one authenticated GET.
type apiGet func(ctx context.Context, path string) (status int, body []byte, err error)

func newAPIGet(server string, client *http.Client, token string) apiGet {
	return func(ctx context.Context, path string) (int, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+path, nil)
		if err != nil {
			return 0, nil, err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		return resp.StatusCode, body, err
	}
}

// snippet is the start of a response body, for an error message.
func snippet(body []byte) string {
	s := strings.TrimSpace(string(body))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// condition is one entry of status.conditions.
type condition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func findCondition(cs []condition, t string) (condition, bool) {
	for _, c := range cs {
		if c.Type == t {
			return c, true
		}
	}
	return condition{}, false
}

// missingNode says why no node is Ready (GET /api/v1/nodes), or "".
func missingNode(ctx context.Context, get apiGet) string {
	const what = "a Ready node: "
	const check = "; check `kubectl get nodes` and, on the node, `journalctl -u k3s` (or the kubelet's log)"
	status, body, err := get(ctx, "/api/v1/nodes")
	switch {
	case err != nil:
		return what + "listing nodes failed: " + err.Error()
	case status != http.StatusOK:
		return fmt.Sprintf("%slisting nodes: HTTP %d: %s", what, status, snippet(body))
	}
	var list struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Status struct {
				Conditions []condition `json:"conditions"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return what + "the node list does not decode: " + err.Error()
	}
	if len(list.Items) == 0 {
		return what + "no node has registered yet" + check
	}
	var notReady []string
	for _, n := range list.Items {
		c, ok := findCondition(n.Status.Conditions, "Ready")
		if ok && c.Status == "True" {
			return ""
		}
		state := "no Ready condition yet"
		if ok {
			state = "Ready=" + c.Status
			if c.Reason != "" {
				state += " (" + c.Reason + ")"
			}
		}
		notReady = append(notReady, n.Metadata.Name+" "+state)
	}
	return what + "none of the nodes is Ready: " + strings.Join(notReady, ", ") + check
}

// missingCRD says why crd is not Established (GET
// /apis/apiextensions.k8s.io/v1/customresourcedefinitions/<name>), or "".
func missingCRD(ctx context.Context, get apiGet, crd CRD) string {
	what := "CustomResourceDefinition " + crd.Name + ": "
	status, body, err := get(ctx, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"+crd.Name)
	switch {
	case err != nil:
		return what + "reading it failed: " + err.Error()
	case status == http.StatusNotFound:
		return what + "not found; " + crd.Hint
	case status != http.StatusOK:
		return fmt.Sprintf("%sHTTP %d: %s", what, status, snippet(body))
	}
	var obj struct {
		Status struct {
			Conditions []condition `json:"conditions"`
		} `json:"status"`
	}
	if err := json.Unmarshal(body, &obj); err != nil {
		return what + "does not decode: " + err.Error()
	}
	c, ok := findCondition(obj.Status.Conditions, "Established")
	if ok && c.Status == "True" {
		return ""
	}
	state := "no Established condition yet"
	if ok {
		state = "Established=" + c.Status
		if c.Message != "" {
			state += ": " + c.Message
		}
	}
	return what + "exists but is not Established yet (" + state + "); " + crd.Hint
}

// missing lists what the cluster still lacks for the platform, in order:
// a Ready node, then needs' CRDs.
func missing(ctx context.Context, get apiGet, needs Needs) []string {
	var out []string
	if m := missingNode(ctx, get); m != "" {
		out = append(out, m)
	}
	for _, crd := range needs.CRDs {
		if m := missingCRD(ctx, get, crd); m != "" {
			out = append(out, m)
		}
	}
	return out
}

// WaitReady polls, with the kubeconfig's credentials and within one
// timeout, until the API server answers GET /readyz with 200, at least one
// node is Ready and every CRD of needs is Established. After timeout it
// fails naming exactly what is still missing and what to check.
func WaitReady(ctx context.Context, kubeconfig string, needs Needs, timeout time.Duration) error {
	server, client, token, err := apiClient(kubeconfig)
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()
	if _, err := http.NewRequest(http.MethodGet, server+"/readyz", nil); err != nil {
		return fmt.Errorf("kubernetes API %s: %w", server, err)
	}
	get := newAPIGet(server, client, token)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error     // why /readyz did not answer 200
	var lacks []string // what the ready API server still lacked, last time it was asked
	for {
		status, body, err := get(ctx, "/readyz")
		if err == nil && status == http.StatusOK {
			m := missing(ctx, get, needs)
			if len(m) == 0 {
				return nil
			}
			// Answers cut off by our own deadline say nothing new.
			if lacks == nil || ctx.Err() == nil {
				lacks = m
			}
		} else {
			if err == nil {
				err = fmt.Errorf("HTTP %d: %s", status, snippet(body))
			}
			// A request cut off by our own deadline says nothing new: keep the
			// error that explains why the API server was not ready.
			if last == nil || ctx.Err() == nil {
				last = err
			}
			if ctx.Err() == nil {
				lacks = nil // not ready again: that is the news
			}
		}
		select {
		case <-ctx.Done():
			if lacks == nil {
				return fmt.Errorf("kubernetes API %s did not answer /readyz within %s (last error: %v); "+
					"on the first node check `cloud-init status --long` and `journalctl -u k3s`, "+
					"or raise pressroom:cluster.readyTimeoutSeconds", server, timeout, last)
			}
			return fmt.Errorf("kubernetes API %s is ready, but within %s the cluster did not get what the platform needs; still missing:\n  - %s\n"+
				"raise pressroom:cluster.readyTimeoutSeconds if it is only slow", server, timeout, strings.Join(lacks, "\n  - "))
		case <-time.After(pollInterval):
		}
	}
}

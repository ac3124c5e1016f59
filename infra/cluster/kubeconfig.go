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
	"time"

	"gopkg.in/yaml.v3"
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

// ReadyFunc blocks until the API server of kubeconfig is ready, or fails.
type ReadyFunc func(ctx context.Context, kubeconfig string, timeout time.Duration) error

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

// pollInterval is how often WaitReady asks /readyz.
var pollInterval = 5 * time.Second

// WaitReady polls GET <server>/readyz with the kubeconfig's credentials until
// it answers 200, and fails with a clear error after timeout.
func WaitReady(ctx context.Context, kubeconfig string, timeout time.Duration) error {
	server, client, token, err := apiClient(kubeconfig)
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+"/readyz", nil)
		if err != nil {
			return fmt.Errorf("kubernetes API %s: %w", server, err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
		}
		// A request cut off by our own deadline says nothing new: keep the
		// error that explains why the API server was not ready.
		if last == nil || ctx.Err() == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubernetes API %s did not answer /readyz within %s (last error: %v); "+
				"on the first node check `cloud-init status --long` and `journalctl -u k3s`, "+
				"or raise pressroom:cluster.readyTimeoutSeconds", server, timeout, last)
		case <-time.After(pollInterval):
		}
	}
}

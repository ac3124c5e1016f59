// Package localstack is what the `local` stack needs around a localkube node:
// the "internet" servers its pods reach (an OpenID Connect provider behind
// TLS from a local CA), the platform's images built on this machine and
// imported into the node, and the stack's configuration for `pulumi up`
// (make up STACK=local). make cluster, make up STACK=local and the live
// tests share it.
package localstack

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"pressroom.dev/tools/devoidc"
	"pressroom.dev/tools/localkube"
)

// The local stack's names. All are reserved example names; the internet
// namespace's DNS answers them (pods) and a browser here is pointed at the
// node and the internet namespace for them.
const (
	Domain     = "example.com"
	OIDCHost   = "login.example.org"
	OIDCIP     = "203.0.113.10"
	ClientID   = "pressroom-local"
	AdminEmail = "admin@example.com"
)

// Internet is the set of servers the local stack's pods reach on public
// addresses, in the node's internet namespace.
type Internet struct {
	CAPEM        []byte // the CA their TLS certificates chain to
	Issuer       string // https://login.example.org
	ClientSecret string
	OIDC         *devoidc.Server
	// ACMEServer is the ACME CA's directory URL (ACMEDirectory); its TLS
	// certificate chains to CAPEM too.
	ACMEServer string

	srv      *http.Server
	hostAddr string       // the internet namespace's address on this machine's side
	acme     *http.Client // to the ACME CA, trusting CAPEM
}

// StartInternet serves the OIDC provider at https://login.example.org and
// the ACME CA at ACMEDirectory (and makes the site's names resolve to the
// node's public address). dir keeps the CA and the client secret, so a
// restarted node trusts the same CA.
func StartInternet(ctx context.Context, c *localkube.Cluster, dir string) (*Internet, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("localstack: %w", err)
	}
	ca, caKey, err := loadOrMakeCA(dir)
	if err != nil {
		return nil, err
	}
	secret, err := loadOrMake(filepath.Join(dir, "oidc-client-secret"), func() (string, error) {
		b := make([]byte, 24)
		_, err := rand.Read(b)
		return hex.EncodeToString(b), err
	})
	if err != nil {
		return nil, err
	}
	for _, h := range []struct{ name, ip string }{
		{Domain, localkube.PublicIP}, {"www." + Domain, localkube.PublicIP}, {OIDCHost, OIDCIP},
	} {
		if err := c.AddInternetHost(h.name, h.ip); err != nil {
			return nil, err
		}
	}
	if err := c.AddInternetAddress(ctx, OIDCIP); err != nil {
		return nil, err
	}
	cert, err := leaf(ca, caKey, OIDCHost)
	if err != nil {
		return nil, err
	}
	issuer := "https://" + OIDCHost
	p, err := devoidc.New(devoidc.Options{ClientID: ClientID, ClientSecret: secret, Issuer: issuer})
	if err != nil {
		return nil, err
	}
	var ln net.Listener
	// All addresses of the namespace: pods come to OIDCIP, a browser here to
	// the namespace's host-side address.
	if err := localkube.InNamespace(c.InternetPID(), func() (err error) {
		ln, err = net.Listen("tcp", ":443")
		return err
	}); err != nil {
		return nil, fmt.Errorf("localstack: OIDC provider listener: %w", err)
	}
	// Connection errors (e.g. a reachability probe that connects and hangs
	// up before TLS) go to a log of their own, not the terminal.
	errLog, err := os.OpenFile(filepath.Join(dir, "oidc-errors.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("localstack: %w", err)
	}
	srv := &http.Server{
		Handler:           p.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ErrorLog:          log.New(errLog, "oidc: ", log.LstdFlags),
	}
	srv.RegisterOnShutdown(func() { errLog.Close() })
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	inet := &Internet{CAPEM: caPEM, Issuer: issuer, ClientSecret: secret, OIDC: p, ACMEServer: ACMEDirectory,
		srv: srv, hostAddr: c.InternetHostAddress(), acme: acmeClient(roots)}
	acmeCert, err := leaf(ca, caKey, ACMEHost)
	if err != nil {
		inet.Close()
		return nil, err
	}
	if err := startACME(ctx, c, dir, acmeCert, inet.acme); err != nil {
		inet.Close()
		return nil, err
	}
	return inet, nil
}

// Close stops the servers.
func (i *Internet) Close() error {
	err := i.srv.Close()
	_ = i.srv.Shutdown(context.Background()) // runs the OnShutdown hooks (the error log's close)
	return err
}

func loadOrMake(path string, make func() (string, error)) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("localstack: %w", err)
	}
	v, err := make()
	if err != nil {
		return "", fmt.Errorf("localstack: %w", err)
	}
	if err := os.WriteFile(path, []byte(v+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("localstack: %w", err)
	}
	return v, nil
}

// loadOrMakeCA keeps the internet's CA in dir (ca.crt, ca.key).
func loadOrMakeCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if cb, err := os.ReadFile(certPath); err == nil {
		kb, err := os.ReadFile(keyPath)
		if err != nil {
			return nil, nil, fmt.Errorf("localstack: %w", err)
		}
		cblock, _ := pem.Decode(cb)
		kblock, _ := pem.Decode(kb)
		if cblock == nil || kblock == nil {
			return nil, nil, fmt.Errorf("localstack: %s or %s is not PEM; delete both to make a new CA", certPath, keyPath)
		}
		cert, err := x509.ParseCertificate(cblock.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("localstack: %s: %w", certPath, err)
		}
		key, err := x509.ParseECPrivateKey(kblock.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("localstack: %s: %w", keyPath, err)
		}
		return cert, key, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now().Add(-time.Hour)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "pressroom local internet CA"},
		NotBefore:             now,
		NotAfter:              now.Add(5 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, nil, fmt.Errorf("localstack: %w", err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, fmt.Errorf("localstack: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// leaf issues a serving certificate for host, signed by the CA.
func leaf(ca *x509.Certificate, caKey *ecdsa.PrivateKey, host string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now().Add(-time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    now,
		NotAfter:     now.Add(90 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, key.Public(), caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// ClusterFile is what make cluster publishes for `make up STACK=local` (in
// the node's state directory, removed when the node stops).
type ClusterFile struct {
	PID                 int    `json:"pid"`
	Dir                 string `json:"dir"`
	Kubeconfig          string `json:"kubeconfig"`
	ContainerdSocket    string `json:"containerdSocket"`
	NodeIP              string `json:"nodeIP"`
	PublicIP            string `json:"publicIP"`
	InternetHostAddress string `json:"internetHostAddress"`
	OIDCIssuer          string `json:"oidcIssuer"`
	OIDCClientID        string `json:"oidcClientId"`
	OIDCClientSecret    string `json:"oidcClientSecret"`
	InternetCA          string `json:"internetCA"`
	ACMEServer          string `json:"acmeServer"`
}

// clusterFileName is where make cluster's node publishes it.
func clusterFileName(dir string) string { return filepath.Join(dir, "cluster.json") }

// WriteClusterFile publishes the running node for other commands.
func WriteClusterFile(c *localkube.Cluster, inet *Internet) error {
	cf := Describe(c, inet)
	b, _ := json.MarshalIndent(cf, "", "  ")
	if err := os.WriteFile(clusterFileName(c.Dir), b, 0o600); err != nil {
		return fmt.Errorf("localstack: %w", err)
	}
	return nil
}

// Describe is the ClusterFile of a node and its internet servers.
func Describe(c *localkube.Cluster, inet *Internet) ClusterFile {
	return ClusterFile{
		PID: os.Getpid(), Dir: c.Dir, Kubeconfig: c.Kubeconfig, ContainerdSocket: c.ContainerdSocket(),
		NodeIP: c.NodeIP, PublicIP: localkube.PublicIP, InternetHostAddress: c.InternetHostAddress(),
		OIDCIssuer: inet.Issuer, OIDCClientID: ClientID, OIDCClientSecret: inet.ClientSecret,
		InternetCA: string(inet.CAPEM), ACMEServer: inet.ACMEServer,
	}
}

// ReadClusterFile finds make cluster's running node in dir.
func ReadClusterFile(dir string) (ClusterFile, error) {
	var cf ClusterFile
	b, err := os.ReadFile(clusterFileName(dir))
	if errors.Is(err, os.ErrNotExist) {
		return cf, fmt.Errorf("localstack: no node is running from %s: start one with `make cluster` (in another terminal) and retry", dir)
	}
	if err != nil {
		return cf, fmt.Errorf("localstack: %w", err)
	}
	if err := json.Unmarshal(b, &cf); err != nil {
		return cf, fmt.Errorf("localstack: %s: %w", clusterFileName(dir), err)
	}
	if err := syscallAlive(cf.PID); err != nil {
		return cf, fmt.Errorf("localstack: the node of %s (pid %d) is not running any more: start it with `make cluster` and retry", dir, cf.PID)
	}
	return cf, nil
}

// PrintHowTo tells how to reach the site from this machine.
func PrintHowTo(w io.Writer, c *localkube.Cluster) {
	fmt.Fprintf(w, `localkube: node %s is Ready (API https://%s:6443, Traefik on %s:80 and :443)
  deploy the platform:   make up STACK=local
  reach the site:        curl -k --resolve %s:443:%s https://%s/
  the site's CA root:    curl -s --cacert %s --resolve %s:%s:%s https://%s:%s/roots/0 > acme-root.pem
                         (the local ACME CA makes a new one at each start; then curl --cacert acme-root.pem ...)
  in a browser, map the names (e.g. /etc/hosts):
      %s %s www.%s
      %s %s
  inside the node:       nsenter --target %d --net --mount   (then e.g. ctr --address %s -n k8s.io containers ls)
`, localkube.NodeName, c.NodeIP, c.NodeIP, Domain, c.NodeIP, Domain,
		filepath.Join(c.Dir, "internet", "ca.crt"), ACMEHost, acmeMgmtPort, c.InternetHostAddress(), ACMEHost, acmeMgmtPort,
		c.NodeIP, Domain, Domain, c.InternetHostAddress(), OIDCHost, c.NodePID(), c.ContainerdSocket())
}

package localstack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"pressroom.dev/tools/localkube"
	"pressroom.dev/tools/toolchain"
)

// The local ACME CA: Pebble, Let's Encrypt's test server, in the internet
// namespace. It validates HTTP-01 as Let's Encrypt does: it resolves the
// site's name through the internet's DNS (the node's public address) and
// fetches the challenge from port 80 there, through Traefik to the solver.
const (
	ACMEHost      = "acme.example.org"
	ACMEIP        = "203.0.113.20"
	acmePort      = "14000"
	acmeMgmtPort  = "15000"
	ACMEDirectory = "https://" + ACMEHost + ":" + acmePort + "/dir"
	// acmeValidity is what Let's Encrypt issues (90 days), so cert-manager
	// schedules renewals as in production.
	acmeValidity = 90 * 24 * 60 * 60
)

// pebbleEnv: no random sleep before validating (Let's Encrypt validates at
// once), no reuse of valid authorizations (each order is validated, so a
// renewal exercises the whole HTTP-01 path), no random nonce rejections.
var pebbleEnv = []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_AUTHZREUSE=0", "PEBBLE_WFE_NONCEREJECT=0"}

// startACME runs Pebble at ACMEDirectory with a TLS certificate from the
// internet's CA (the ClusterIssuer's caBundle). Its own root CA is made
// anew at every start; PebbleRoot fetches it.
func startACME(ctx context.Context, c *localkube.Cluster, dir string, tlsCert tls.Certificate, client *http.Client) error {
	parts, err := toolchain.EnsureNode(ctx)
	if err != nil {
		return err
	}
	if err := c.AddInternetHost(ACMEHost, ACMEIP); err != nil {
		return err
	}
	if err := c.AddInternetAddress(ctx, ACMEIP); err != nil {
		return err
	}
	certPath, keyPath := filepath.Join(dir, "acme.crt"), filepath.Join(dir, "acme.key")
	if err := writeKeyPair(tlsCert, certPath, keyPath); err != nil {
		return err
	}
	conf := map[string]any{"pebble": map[string]any{
		// Every address of the namespace: pods come to ACMEIP, this machine
		// to the namespace's host-side address.
		"listenAddress":           ":" + acmePort,
		"managementListenAddress": ":" + acmeMgmtPort,
		"certificate":             certPath,
		"privateKey":              keyPath,
		"httpPort":                80,
		"tlsPort":                 443,
		"ocspResponderURL":        "",
		"keyAlgorithm":            "ecdsa",
		"retryAfter":              map[string]int{"authz": 3, "order": 5},
		"profiles": map[string]any{
			"default": map[string]any{"description": "as Let's Encrypt's", "validityPeriod": acmeValidity},
		},
	}}
	b, _ := json.MarshalIndent(conf, "", "  ")
	confPath := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(confPath, b, 0o600); err != nil {
		return fmt.Errorf("localstack: %w", err)
	}
	argv := append(append([]string{"env"}, pebbleEnv...),
		parts.Path("pebble"), "-config", confPath, "-dnsserver", net.JoinHostPort(localkube.InternetDNS, "53"))
	if _, err := c.SpawnInternet("acme-pebble", argv...); err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := acmeGet(ctx, client, c.InternetHostAddress(), acmePort, "/dir")
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("localstack: the ACME server did not answer at %s within 60 s: %v (log: %s)", ACMEDirectory, err, filepath.Join(c.Dir, "logs", "acme-pebble.log"))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// PebbleRoot is the PEM root CA the ACME server issues under now (new at
// each start of the server): what a browser or client must trust, and
// nothing else, to verify the site.
func (i *Internet) PebbleRoot(ctx context.Context) ([]byte, error) {
	b, err := acmeGet(ctx, i.acme, i.hostAddr, acmeMgmtPort, "/roots/0")
	if err != nil {
		return nil, err
	}
	if blk, _ := pem.Decode(b); blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("localstack: the ACME server's root is not a PEM certificate: %.80q", b)
	}
	return b, nil
}

// acmeClient verifies Pebble's certificate against roots (the internet CA).
func acmeClient(roots *x509.CertPool) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{ServerName: ACMEHost, RootCAs: roots, MinVersion: tls.VersionTLS12},
	}}
}

// acmeGet asks Pebble on port, from this machine through the internet
// namespace's host-side address.
func acmeGet(ctx context.Context, client *http.Client, hostAddr, port, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+net.JoinHostPort(hostAddr, port)+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return b, nil
}

func writeKeyPair(cert tls.Certificate, certPath, keyPath string) error {
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return fmt.Errorf("localstack: %w", err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return fmt.Errorf("localstack: %w", err)
	}
	if err := os.WriteFile(certPath, chain, 0o644); err != nil {
		return fmt.Errorf("localstack: %w", err)
	}
	return nil
}

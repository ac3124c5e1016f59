package localkube

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki is the set of files the cluster needs, all under one directory. Every
// certificate is signed by one cluster CA (as K3s' server CA), except the
// front proxy's client, which has a CA of its own as the aggregation layer
// requires.
type pki struct {
	dir                       string
	CA, CAKey                 string
	FrontCA                   string
	SAPub, SAKey              string
	caPEM, adminPEM, adminKey []byte
}

// pair names the certificate and key files of one identity.
func (p *pki) pair(name string) (cert, key string) {
	return filepath.Join(p.dir, name+".crt"), filepath.Join(p.dir, name+".key")
}

// identity is one certificate the cluster's components present.
type identity struct {
	file   string
	cn     string
	orgs   []string
	usage  x509.ExtKeyUsage
	dns    []string
	ips    []net.IP
	signer string // "" = the cluster CA, "front" = the front-proxy CA
}

// identities lists every certificate: the API server's, the clients of the
// control plane and the node's components, and the kubelet's serving one.
func identities(nodeName string, nodeIPs []net.IP) []identity {
	client := x509.ExtKeyUsageClientAuth
	apiIPs := append([]net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 0, 0, 1), net.IPv4(10, 43, 0, 1)}, nodeIPs...)
	return []identity{
		{file: "apiserver", cn: "kube-apiserver", usage: x509.ExtKeyUsageServerAuth,
			dns: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}, ips: apiIPs},
		{file: "admin", cn: "localkube-admin", orgs: []string{"system:masters"}, usage: client},
		{file: "controller-manager", cn: "system:kube-controller-manager", usage: client},
		{file: "scheduler", cn: "system:kube-scheduler", usage: client},
		{file: "apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client", orgs: []string{"system:masters"}, usage: client},
		{file: "kubelet", cn: "system:node:" + nodeName, orgs: []string{"system:nodes"}, usage: client},
		{file: "kubelet-serving", cn: nodeName, usage: x509.ExtKeyUsageServerAuth, dns: []string{nodeName, "localhost"}, ips: append([]net.IP{net.IPv4(127, 0, 0, 1)}, nodeIPs...)},
		{file: "kube-proxy", cn: "system:kube-proxy", usage: client},
		{file: "kube-router", cn: "system:kube-router", usage: client},
		{file: "front-proxy-client", cn: "front-proxy-client", usage: client, signer: "front"},
	}
}

type keyPair struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// writePKI makes the cluster's CAs, certificates and service-account key in
// dir, or keeps the ones a previous start of the same cluster wrote there
// (a restarted node keeps its identity).
func writePKI(dir, nodeName string, nodeIPs []net.IP) (*pki, error) {
	p := &pki{dir: dir,
		CA: filepath.Join(dir, "ca.crt"), CAKey: filepath.Join(dir, "ca.key"),
		FrontCA: filepath.Join(dir, "front-proxy-ca.crt"),
		SAPub:   filepath.Join(dir, "sa.pub"), SAKey: filepath.Join(dir, "sa.key"),
	}
	done := filepath.Join(dir, ".complete")
	if _, err := os.Stat(done); errors.Is(err, os.ErrNotExist) {
		if err := p.generate(nodeName, nodeIPs); err != nil {
			return nil, err
		}
		if err := os.WriteFile(done, nil, 0o600); err != nil {
			return nil, fmt.Errorf("localkube: %w", err)
		}
	}
	var err error
	adminCert, adminKey := p.pair("admin")
	if p.caPEM, err = os.ReadFile(p.CA); err != nil {
		return nil, fmt.Errorf("localkube: %w", err)
	}
	if p.adminPEM, err = os.ReadFile(adminCert); err != nil {
		return nil, fmt.Errorf("localkube: %w", err)
	}
	if p.adminKey, err = os.ReadFile(adminKey); err != nil {
		return nil, fmt.Errorf("localkube: %w", err)
	}
	return p, nil
}

func (p *pki) generate(nodeName string, nodeIPs []net.IP) error {
	now := time.Now().Add(-time.Hour)
	// Long enough for a node kept by `make cluster`, short enough to be
	// obviously throw-away.
	notAfter := now.Add(90 * 24 * time.Hour)
	newCA := func(cn string) (keyPair, error) {
		return issue(nil, &x509.Certificate{
			Subject:               pkix.Name{CommonName: cn},
			NotBefore:             now,
			NotAfter:              notAfter,
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		})
	}
	ca, err := newCA("localkube-ca")
	if err != nil {
		return err
	}
	front, err := newCA("localkube-front-proxy-ca")
	if err != nil {
		return err
	}
	if err := writeCert(p.CA, p.CAKey, ca); err != nil {
		return err
	}
	if err := writeCert(p.FrontCA, filepath.Join(p.dir, "front-proxy-ca.key"), front); err != nil {
		return err
	}
	for _, id := range identities(nodeName, nodeIPs) {
		signer := &ca
		if id.signer == "front" {
			signer = &front
		}
		kp, err := issue(signer, &x509.Certificate{
			Subject:     pkix.Name{CommonName: id.cn, Organization: id.orgs},
			NotBefore:   now,
			NotAfter:    notAfter,
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage: []x509.ExtKeyUsage{id.usage},
			DNSNames:    id.dns,
			IPAddresses: id.ips,
		})
		if err != nil {
			return err
		}
		cert, key := p.pair(id.file)
		if err := writeCert(cert, key, kp); err != nil {
			return err
		}
	}
	sa, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("localkube: service-account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		return err
	}
	if err := writePEM(p.SAKey, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(sa)); err != nil {
		return err
	}
	return writePEM(p.SAPub, "PUBLIC KEY", pub)
}

// issue creates a P-256 key and a certificate for tmpl signed by parent
// (self-signed when parent is nil).
func issue(parent *keyPair, tmpl *x509.Certificate) (keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return keyPair{}, fmt.Errorf("localkube: key for %s: %w", tmpl.Subject.CommonName, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return keyPair{}, err
	}
	tmpl.SerialNumber = serial
	signerCert, signerKey := tmpl, crypto.Signer(key)
	if parent != nil {
		signerCert, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		return keyPair{}, fmt.Errorf("localkube: certificate for %s: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return keyPair{}, err
	}
	return keyPair{cert: cert, key: key}, nil
}

func writeCert(certPath, keyPath string, kp keyPair) error {
	if err := writePEM(certPath, "CERTIFICATE", kp.cert.Raw); err != nil {
		return err
	}
	der, err := x509.MarshalECPrivateKey(kp.key.(*ecdsa.PrivateKey))
	if err != nil {
		return err
	}
	return writePEM(keyPath, "EC PRIVATE KEY", der)
}

func writePEM(path, typ string, der []byte) error {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("localkube: write %s: %w", path, err)
	}
	return nil
}

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
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki is the set of files the control plane needs, all under one directory.
type pki struct {
	CA, CAKey                 string
	ServerCert, ServerKey     string
	AdminCert, AdminKey       string
	CMCert, CMKey             string
	SAPub, SAKey              string
	caPEM, adminPEM, adminKey []byte
}

type keyPair struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// writePKI makes a throw-away CA, a serving cert for the API server, client
// certs for the admin (system:masters) and the controller manager, and the
// service-account signing key.
func writePKI(dir string) (*pki, error) {
	p := &pki{
		CA: filepath.Join(dir, "ca.crt"), CAKey: filepath.Join(dir, "ca.key"),
		ServerCert: filepath.Join(dir, "apiserver.crt"), ServerKey: filepath.Join(dir, "apiserver.key"),
		AdminCert: filepath.Join(dir, "admin.crt"), AdminKey: filepath.Join(dir, "admin.key"),
		CMCert: filepath.Join(dir, "controller-manager.crt"), CMKey: filepath.Join(dir, "controller-manager.key"),
		SAPub: filepath.Join(dir, "sa.pub"), SAKey: filepath.Join(dir, "sa.key"),
	}
	now := time.Now().Add(-time.Hour)
	ca, err := issue(nil, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "localkube-ca"},
		NotBefore:             now,
		NotAfter:              now.Add(10 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
	})
	if err != nil {
		return nil, err
	}
	leaf := func(cn string, orgs []string, usage x509.ExtKeyUsage, dns []string, ips []net.IP) *x509.Certificate {
		return &x509.Certificate{
			Subject:     pkix.Name{CommonName: cn, Organization: orgs},
			NotBefore:   now,
			NotAfter:    now.Add(10 * 24 * time.Hour),
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage: []x509.ExtKeyUsage{usage},
			DNSNames:    dns,
			IPAddresses: ips,
		}
	}
	server, err := issue(&ca, leaf("kube-apiserver", nil, x509.ExtKeyUsageServerAuth,
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		[]net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 0, 0, 1)}))
	if err != nil {
		return nil, err
	}
	admin, err := issue(&ca, leaf("localkube-admin", []string{"system:masters"}, x509.ExtKeyUsageClientAuth, nil, nil))
	if err != nil {
		return nil, err
	}
	cm, err := issue(&ca, leaf("system:kube-controller-manager", nil, x509.ExtKeyUsageClientAuth, nil, nil))
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		kp        keyPair
		cert, key string
	}{{ca, p.CA, p.CAKey}, {server, p.ServerCert, p.ServerKey}, {admin, p.AdminCert, p.AdminKey}, {cm, p.CMCert, p.CMKey}} {
		if err := writeCert(f.cert, f.key, f.kp); err != nil {
			return nil, err
		}
	}
	sa, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("localkube: service-account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		return nil, err
	}
	if err := writePEM(p.SAKey, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(sa)); err != nil {
		return nil, err
	}
	if err := writePEM(p.SAPub, "PUBLIC KEY", pub); err != nil {
		return nil, err
	}
	if p.caPEM, err = os.ReadFile(p.CA); err != nil {
		return nil, err
	}
	if p.adminPEM, err = os.ReadFile(p.AdminCert); err != nil {
		return nil, err
	}
	if p.adminKey, err = os.ReadFile(p.AdminKey); err != nil {
		return nil, err
	}
	return p, nil
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

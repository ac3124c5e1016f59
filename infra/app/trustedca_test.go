package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// systemBundle is the file Go reads first on Linux (crypto/x509's
// certFiles), the one distroless/static ships.
const systemBundle = "/etc/ssl/certs/ca-certificates.crt"

// The child half of TestGoTrustsTheBundleBesideTheSystemRoots: with the
// environment the pod gets, verify a leaf of the private CA and the first
// root of the system bundle against x509.SystemCertPool.
func TestMain(m *testing.M) {
	if leaf := os.Getenv("PRESSROOM_X509_CHILD_LEAF"); leaf != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			fmt.Println("pool:", err)
			os.Exit(1)
		}
		verify := func(pemFile string) string {
			raw, err := os.ReadFile(pemFile)
			if err != nil {
				return err.Error()
			}
			b, _ := pem.Decode(raw)
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return err.Error()
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				return "untrusted"
			}
			return "trusted"
		}
		fmt.Printf("private=%s public=%s\n", verify(leaf), verify(systemBundle))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The claim behind TrustedCA (Go's crypto/x509 root_unix.go): SSL_CERT_DIR
// replaces only the directories Go scans, not the bundle file it reads
// first, so a service trusts the mounted CA in addition to the image's
// public roots. The directory is laid out as the kubelet mounts a ConfigMap
// (ca.crt -> ..data/ca.crt, ..data -> ..<timestamp>), which Go must follow.
func TestGoTrustsTheBundleBesideTheSystemRoots(t *testing.T) {
	if _, err := os.Stat(systemBundle); err != nil {
		t.Skipf("no system bundle to compare with: %v", err)
	}
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Example Private Root CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "idp.corp.example"},
		DNSNames: []string{"idp.corp.example"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf := filepath.Join(dir, "leaf.pem")
	mount := filepath.Join(dir, "mount") // stands for CABundleDir
	version := filepath.Join(mount, "..2026_01_31_03_00_00.123456789")
	if err := os.MkdirAll(version, 0o755); err != nil {
		t.Fatal(err)
	}
	for path, der := range map[string][]byte{leaf: leafDER, filepath.Join(version, "ca.crt"): caDER} {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Base(version), filepath.Join(mount, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/ca.crt", filepath.Join(mount, "ca.crt")); err != nil {
		t.Fatal(err)
	}

	child := func(env ...string) string {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append([]string{"PRESSROOM_X509_CHILD_LEAF=" + leaf, "PATH=" + os.Getenv("PATH")}, env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	// With SSL_CERT_DIR set Go scans no default directory, so the public
	// root here can only come from the bundle file it still reads.
	if got := child("SSL_CERT_DIR=" + mount); got != "private=trusted public=trusted" {
		t.Errorf("with SSL_CERT_DIR=%s: %s; want the private CA trusted beside the system roots", CABundleDir, got)
	}
	if got := child(); got != "private=untrusted public=trusted" {
		t.Errorf("without SSL_CERT_DIR: %s; the private CA must come from the mount alone", got)
	}
}

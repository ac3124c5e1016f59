package stacks

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A locally built image is pinned by its manifest's digest, an upstream one
// by its multi-arch index's: both are name[:tag]@sha256:<64 hex>.
var (
	localPostgres = "pressroom.local/postgres:15-debian@sha256:" + strings.Repeat("1", 64)
	localRedis    = "localhost:5000/redis@sha256:" + strings.Repeat("2", 64)
)

func TestDatastoreImagesDefaultAndOverride(t *testing.T) {
	cfg, err := Load("staging", stagingStack(t))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DatastoreImages != DefaultDatastoreImages {
		t.Errorf("default datastore images %+v, want %+v", cfg.DatastoreImages, DefaultDatastoreImages)
	}
	for _, ref := range []string{DefaultDatastoreImages.Postgres, DefaultDatastoreImages.Redis, DefaultDatastoreImages.NATS, DefaultDatastoreImages.Jaeger} {
		if err := CheckImageRef(ref); err != nil {
			t.Errorf("default %s: %v", ref, err)
		}
	}

	v := set(t, stagingStack(t), "datastoreImages", "postgres", localPostgres)
	v = set(t, v, "datastoreImages", "redis", localRedis)
	cfg, err = Load("staging", v)
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultDatastoreImages
	want.Postgres, want.Redis = localPostgres, localRedis
	if cfg.DatastoreImages != want {
		t.Errorf("datastore images %+v, want %+v (the others keep their defaults)", cfg.DatastoreImages, want)
	}

	digest := "@sha256:" + strings.Repeat("a", 64)
	wantRefused(t, []refusal{
		{"postgres by tag only", set(t, stagingStack(t), "datastoreImages", "postgres", "postgres:17-alpine"),
			[]string{`pressroom:datastoreImages.postgres: must be pinned by digest, name[:tag]@sha256:<64 hex digits> (got "postgres:17-alpine"), like postgres:17-alpine@sha256:742f`}},
		{"redis latest", set(t, stagingStack(t), "datastoreImages", "redis", "redis:latest"+digest),
			[]string{`pressroom:datastoreImages.redis: must not use the tag latest: give a versioned tag, or none, before the @sha256: digest (got "redis:latest@sha256:aaaa`}},
		{"nats short digest", set(t, stagingStack(t), "datastoreImages", "nats", "nats:2.10@sha256:abc"),
			[]string{`pressroom:datastoreImages.nats: must be pinned by digest`}},
		{"jaeger empty", set(t, stagingStack(t), "datastoreImages", "jaeger", ""),
			[]string{`pressroom:datastoreImages.jaeger: must be pinned by digest`}},
		{"unknown datastore", set(t, stagingStack(t), "datastoreImages", "mysql", "mysql"+digest),
			[]string{`pressroom:datastoreImages.mysql: unknown setting; known settings of datastoreImages are postgres, redis, nats, jaeger`}},
	})
}

func TestCheckAndSplitImageRef(t *testing.T) {
	d := strings.Repeat("0", 64)
	for ref, ok := range map[string]bool{
		"postgres:17-alpine@sha256:" + d:                       true,
		"quay.io/jetstack/cert-manager-controller@sha256:" + d: true,
		"localhost:5000/a/b:v1.2.3-RC1@sha256:" + d:            true,
		"postgres@sha256:" + d:                                 true,
		"postgres:latest@sha256:" + d:                          false,
		"postgres:17@sha256:" + strings.ToUpper(d[:63]) + "A":  false,
		"Postgres:17@sha256:" + d:                              false,
		"postgres:17@sha512:" + d:                              false,
		"postgres:17 @sha256:" + d:                             false,
		"postgres:17":                                          false,
	} {
		if err := CheckImageRef(ref); (err == nil) != ok {
			t.Errorf("CheckImageRef(%q) = %v, want ok=%v", ref, err, ok)
		}
	}
	for ref, want := range map[string][2]string{
		"quay.io/jetstack/cert-manager-controller@sha256:" + d:     {"quay.io/jetstack/cert-manager-controller", "sha256:" + d},
		"pressroom.local/cert-manager-webhook:v1.11.5@sha256:" + d: {"pressroom.local/cert-manager-webhook", "sha256:" + d},
		"localhost:5000/cainjector@sha256:" + d:                    {"localhost:5000/cainjector", "sha256:" + d},
		"localhost:5000/cainjector:v1@sha256:" + d:                 {"localhost:5000/cainjector", "sha256:" + d},
	} {
		if repo, digest := SplitImageRef(ref); repo != want[0] || digest != want[1] {
			t.Errorf("SplitImageRef(%q) = %q, %q; want %q, %q", ref, repo, digest, want[0], want[1])
		}
	}
}

func TestCertManagerChartAndImages(t *testing.T) {
	cfg, err := Load("staging", stagingStack(t))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CertManager.Chart != DefaultCertManagerChart || DefaultCertManagerChart != "https://charts.jetstack.io" || len(cfg.CertManager.Images) != 0 {
		t.Errorf("defaults: chart %q images %v", cfg.CertManager.Chart, cfg.CertManager.Images)
	}
	if ChartIsLocal(cfg.CertManager.Chart) {
		t.Errorf("the default chart is a repository, not a directory")
	}
	d := "@sha256:" + strings.Repeat("c", 64)
	imgs := map[string]string{
		"controller": "pressroom.local/cert-manager-controller:v1.11.5" + d,
		"webhook":    "pressroom.local/cert-manager-webhook" + d,
	}
	v := set(t, stagingStack(t), "certManager", "chart", "../tools/charts/cert-manager")
	v = set(t, v, "certManager", "version", "v1.11.5")
	v = set(t, v, "certManager", "images", imgs)
	cfg, err = Load("staging", v)
	if err != nil {
		t.Fatal(err)
	}
	if cm := cfg.CertManager; !ChartIsLocal(cm.Chart) || cm.Chart != "../tools/charts/cert-manager" || cm.Version != "v1.11.5" || cm.Images["webhook"] != imgs["webhook"] || len(cm.Images) != 2 {
		t.Errorf("cert-manager %+v", cm)
	}
	wantAccepted(t, map[string]map[string]string{
		"absolute chart directory": set(t, stagingStack(t), "certManager", "chart", "/opt/charts/cert-manager"),
		"http repository mirror":   set(t, stagingStack(t), "certManager", "chart", "http://charts.internal.example.com/jetstack"),
		// With install off nothing is installed: chart and images are not read.
		"install off, images ignored": set(t, set(t, stagingStack(t), "certManager", "install", false), "certManager", "images", map[string]string{"controller": "x"}),
	})
	wantRefused(t, []refusal{
		{"oci chart", set(t, stagingStack(t), "certManager", "chart", "oci://registry.example.com/charts/cert-manager"),
			[]string{`pressroom:certManager.chart: must be a Helm repository URL like https://charts.jetstack.io (http or https, no user, query or fragment) or a local chart directory like ./charts/cert-manager (got "oci://registry.example.com/charts/cert-manager")`}},
		{"repository with a password", set(t, stagingStack(t), "certManager", "chart", "https://user:pw@charts.example.com"),
			[]string{`pressroom:certManager.chart: must be a Helm repository URL`}},
		{"empty chart", set(t, stagingStack(t), "certManager", "chart", ""),
			[]string{`pressroom:certManager.chart: must be a Helm repository URL like https://charts.jetstack.io or a local chart directory like ./charts/cert-manager`}},
		{"image without digest", set(t, stagingStack(t), "certManager", "images", map[string]string{"cainjector": "quay.io/jetstack/cert-manager-cainjector:v1.16.2"}),
			[]string{`pressroom:certManager.images.cainjector: must be pinned by digest, name[:tag]@sha256:<64 hex digits> (got "quay.io/jetstack/cert-manager-cainjector:v1.16.2"), like quay.io/jetstack/cert-manager-cainjector@sha256:<64 hex>`}},
		{"latest image", set(t, stagingStack(t), "certManager", "images", map[string]string{"acmesolver": "x:latest" + d}),
			[]string{`pressroom:certManager.images.acmesolver: must not use the tag latest`}},
		{"unknown component", set(t, stagingStack(t), "certManager", "images", map[string]string{"ctl": "x" + d, "startupapicheck": "y" + d}),
			[]string{`pressroom:certManager.images.ctl: unknown component; components are controller, webhook, cainjector, acmesolver, startupapicheck`}},
		{"images not an object", set(t, stagingStack(t), "certManager", "images", []string{"x"}),
			[]string{`pressroom:certManager.images: must be an object of name: string`}},
	})
}

// testCertPEM is a fresh self-signed CA certificate and its key, in PEM.
func testCertPEM(t *testing.T, cn string) (cert, key string) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(k)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
}

func TestTrustedCABundle(t *testing.T) {
	cfg, err := Load("staging", stagingStack(t))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.App.TrustedCABundle != "" {
		t.Errorf("default bundle %q, want none", cfg.App.TrustedCABundle)
	}
	ca1, key1 := testCertPEM(t, "Example Private Root CA")
	ca2, _ := testCertPEM(t, "Example Mail Relay CA")

	// As an operator writes it in the stack file: a YAML block scalar, with
	// a comment line between the certificates as bundle files have.
	indent := func(s string) string { return "      " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n      ") }
	stack, err := os.ReadFile("../Pulumi.staging.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(stack), "  pressroom:app:\n", "  pressroom:app:\n    trustedCaBundle: |\n"+
		indent(ca1)+"\n      # Issuer: Example Mail Relay CA\n"+indent(ca2)+"\n", 1)
	if doc == string(stack) {
		t.Fatal("Pulumi.staging.yaml has no pressroom:app: group to add the bundle to")
	}
	path := filepath.Join(t.TempDir(), "Pulumi.staging.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	raw, err := ReadStackFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err = Load("staging", withSecrets(raw))
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.App.TrustedCABundle
	if !strings.HasPrefix(b, "-----BEGIN CERTIFICATE-----") || !strings.HasSuffix(b, "-----END CERTIFICATE-----\n") || strings.Count(b, "BEGIN CERTIFICATE") != 2 {
		t.Errorf("bundle as loaded:\n%s", b)
	}
	if err := CheckCABundle(b); err != nil {
		t.Error(err)
	}

	staging := stagingStack(t)
	bundle := func(s string) map[string]string { return set(t, staging, "app", "trustedCaBundle", s) }
	wantAccepted(t, map[string]map[string]string{
		"one certificate, no final line break": bundle(strings.TrimSpace(ca1)),
		"CRLF line ends":                       bundle(strings.ReplaceAll(ca1+ca2, "\n", "\r\n")),
	})
	wantRefused(t, []refusal{
		{"private key beside the certificate", bundle(ca1 + key1),
			[]string{`pressroom:app.trustedCaBundle: block 2 is a EC PRIVATE KEY: a CA bundle holds certificates only`}},
		{"PKCS#8 private key alone", bundle("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+3\n-----END PRIVATE KEY-----\n"),
			[]string{`pressroom:app.trustedCaBundle: block 1 is a PRIVATE KEY`}},
		{"no PEM at all", bundle("not a certificate"),
			[]string{`pressroom:app.trustedCaBundle: must hold at least one PEM certificate (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----)`}},
		{"a public key", bundle("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
			[]string{`pressroom:app.trustedCaBundle: block 1 is a PUBLIC KEY; only CERTIFICATE blocks`}},
		{"garbage certificate", bundle("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
			[]string{`pressroom:app.trustedCaBundle: certificate 1 does not parse`}},
		{"truncated second certificate", bundle(ca1 + ca2[:len(ca2)/2]),
			[]string{`pressroom:app.trustedCaBundle: holds a PEM block that does not decode`}},
		{"only line breaks", bundle("\n\n  \n"),
			[]string{`pressroom:app.trustedCaBundle: is only spaces and line breaks`}},
		{"not a string", set(t, staging, "app", "trustedCaBundle", 42),
			[]string{`pressroom:app.trustedCaBundle: must be a string (got 42)`}},
	})
}

// A private ACME CA (a test CA, or one inside a company) replaces Let's
// Encrypt's directory for the selected issuer; its CA bundle is checked as
// the trusted bundle is.
func TestACMEServer(t *testing.T) {
	staging := stagingStack(t)
	cfg, err := Load("staging", staging)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ACME.Server != "" || cfg.ACME.CABundle != "" {
		t.Errorf("default server %q bundle %q, want Let's Encrypt's (none)", cfg.ACME.Server, cfg.ACME.CABundle)
	}
	ca, key := testCertPEM(t, "Example ACME Test CA")
	acme := func(fields map[string]any) map[string]string {
		out := staging
		for k, v := range fields {
			out = set(t, out, "acme", k, v)
		}
		return out
	}
	custom := acme(map[string]any{"server": "https://acme.example.org:14000/dir", "caBundle": ca})
	cfg, err = Load("staging", custom)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ACME.Server != "https://acme.example.org:14000/dir" || !strings.Contains(cfg.ACME.CABundle, "BEGIN CERTIFICATE") {
		t.Errorf("loaded %+v", cfg.ACME)
	}
	wantAccepted(t, map[string]map[string]string{
		"server without a bundle (publicly trusted)": acme(map[string]any{"server": "https://acme.example.org/directory"}),
	})
	wantRefused(t, []refusal{
		{"plain http", acme(map[string]any{"server": "http://acme.example.org/dir"}),
			[]string{`pressroom:acme.server: must be the https URL of an ACME directory, like https://acme-v02.api.letsencrypt.org/directory (got "http://acme.example.org/dir")`}},
		{"no host", acme(map[string]any{"server": "https:///dir"}),
			[]string{`pressroom:acme.server: must be the https URL of an ACME directory`}},
		{"bundle without a server", acme(map[string]any{"caBundle": ca}),
			[]string{`pressroom:acme.caBundle: is only for a custom ACME server: set acme.server too`}},
		{"a key in the bundle", acme(map[string]any{"server": "https://acme.example.org/dir", "caBundle": ca + key}),
			[]string{`pressroom:acme.caBundle: block 2 is a EC PRIVATE KEY: a CA bundle holds certificates only`}},
	})
}

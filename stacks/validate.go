package stacks

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/robfig/cron/v3"
	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"
)

// Pinned defaults; stacks should still pin their own.
const (
	// DefaultK3sVersion is the release K3s' stable channel pointed at
	// (k3s-io/k3s#14553, 2026-08-27): the newest minor K3s calls stable.
	// It bundles Traefik v3.7.8 (its release notes' component table), the
	// Traefik the local node runs (tools/toolchain/node-toolchain.sh).
	// A stack on an older minor raises it one minor at a time
	// (infra/OPERATIONS.md, "Upgrade K3s").
	DefaultK3sVersion = "v1.36.4+k3s1"
	// DefaultCertManagerVersion is a supported cert-manager (1.21: supported
	// until 1.23 is released, for Kubernetes 1.33 to 1.36).
	DefaultCertManagerVersion = "v1.21.2"
	// DefaultUpgradeControllerVersion is the pinned system-upgrade-controller
	// release whose crd.yaml and system-upgrade-controller.yaml are applied.
	DefaultUpgradeControllerVersion = "v0.16.1"
	// DefaultCertManagerChart is Jetstack's public Helm repository (chart
	// name cert-manager).
	DefaultCertManagerChart = "https://charts.jetstack.io"
)

// DefaultDatastoreImages are the pinned upstream images (multi-arch index
// digests). infra/datastores uses them when none are given.
var DefaultDatastoreImages = DatastoreImagesConfig{
	Postgres: "postgres:17-alpine@sha256:742f40ea20b9ff2ff31db5458d127452988a2164df9e17441e191f3b72252193",
	Redis:    "redis:7.4-alpine@sha256:ff02b58f971e7d7d156a1267e283fcbbeee91773b6aa36c49dac28ecfe28eadf",
	NATS:     "nats:2.10-alpine@sha256:b83efabe3e7def1e0a4a31ec6e078999bb17c80363f881df35edc70fcb6bb927",
	// Jaeger v2 (v1, all-in-one, reached end of life on 2025-12-31); the
	// digest is the multi-arch index Jaeger's own jaeger-ui repository pins
	// for 2.21.0 (scripts/generate-v3-fixture.sh).
	Jaeger: "jaegertracing/jaeger:2.21.0@sha256:3d0ac795ff98aa04d1be04311d2dac6c25b4bfc8322dc02e53bc5b170c5018c3",
}

// CertManagerImageKeys are the components of certManager.images, as the
// chart's values name them.
var CertManagerImageKeys = []string{"controller", "webhook", "cainjector", "acmesolver", "startupapicheck"}

var (
	// The top-level label is letters, or punycode (xn--p1ai) for IDN TLDs.
	dnsNameRe    = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,63}|xn--[a-z0-9-]{1,59})$`)
	regionRe     = regexp.MustCompile(`^[a-z]{3}[0-9]$`)
	slugRe       = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*[a-z0-9]$`)
	k3sVersionRe = regexp.MustCompile(`^v1\.[0-9]+\.[0-9]+\+k3s[0-9]+$`)
	semverRe     = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+$`)
	zoneIDRe     = regexp.MustCompile(`^[0-9a-f]{32}$`)
	digestRe     = regexp.MustCompile(`^[a-z0-9]([a-z0-9._:/-]*[a-z0-9])?@sha256:[0-9a-f]{64}$`)
	quantityRe   = regexp.MustCompile(`^[1-9][0-9]*(Mi|Gi|Ti)$`)
	registryRe   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	hostPortRe   = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?$`)
)

// Shortest admin prefixes: anything wider is (close to) the whole internet,
// and several wide ranges together can cover it all.
const (
	minAdminPrefix4 = 8
	minAdminPrefix6 = 16
)

// Key types DigitalOcean accepts for droplet SSH keys.
var sshKeyTypes = []string{ssh.KeyAlgoED25519, ssh.KeyAlgoRSA, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521}

// K3s' default pod and service networks; the VPC must not overlap them.
var k3sNets = []string{"10.42.0.0/16", "10.43.0.0/16"}

func (l *loader) validate(c *Config, secrets map[string]string) {
	switch {
	case c.Domain == "":
		l.problemf("domain", "is required: the apex domain of the site, like example.com")
	case !DNSNameOK(c.Domain):
		l.problemf("domain", "must be a DNS name like example.com (got %q)", c.Domain)
	case len(c.Domain) > 249:
		l.problemf("domain", "is %d characters; at most 249, so that www.<domain> stays within DNS's 253", len(c.Domain))
	}

	cl := c.Cluster
	if cl.Nodes < 1 {
		l.problemf("cluster.nodes", "must be at least 1 (got %d)", cl.Nodes)
	}
	switch cl.Mode {
	case ModeDigitalOcean:
		l.validateCloud(c)
	case ModeExisting:
		if strings.TrimSpace(secrets["kubeconfig"]) == "" {
			l.problemf("kubeconfig", "is required in existing mode: run `pulumi config set --secret kubeconfig < admin.kubeconfig`")
		} else if !kubeconfigOK(secrets["kubeconfig"]) {
			// Never quote the value or a parser message: both carry the secret.
			l.problemf("kubeconfig", "must be a kubeconfig file (YAML with clusters, users and contexts): at least one cluster with a server URL, one user, and a current-context naming one of its contexts; run `pulumi config set --secret kubeconfig < admin.kubeconfig`")
		}
	case ModeRender:
		if strings.TrimSpace(cl.RenderDir) == "" {
			l.problemf("cluster.renderDir", "must name the directory the manifests are written to, like rendered")
		}
	default:
		l.problemf("cluster.mode", "must be one of digitalocean, existing, render (got %q)", cl.Mode)
	}
	// Both modes wait for /readyz with this bound (infra/cluster/provider.go).
	if (cl.Mode == ModeDigitalOcean || cl.Mode == ModeExisting) && (cl.ReadyTimeout < 30 || cl.ReadyTimeout > 3600) {
		l.problemf("cluster.readyTimeoutSeconds", "must be between 30 and 3600 (got %d)", cl.ReadyTimeout)
	}

	if !emailOK(c.ACME.Email) {
		l.problemf("acme.email", "must be an e-mail address like ops@example.com for Let's Encrypt expiry notices (got %q)", c.ACME.Email)
	}
	if c.ACME.Issuer != "staging" && c.ACME.Issuer != "prod" {
		l.problemf("acme.issuer", "must be staging or prod (got %q)", c.ACME.Issuer)
	}
	if c.ACME.Server != "" {
		if msg := acmeServerProblem(c.ACME.Server); msg != "" {
			l.problemf("acme.server", "%s (got %q)", msg, c.ACME.Server)
		}
	}
	if c.ACME.CABundle != "" {
		if c.ACME.Server == "" {
			l.problemf("acme.caBundle", "is only for a custom ACME server: set acme.server too, or remove acme.caBundle (Let's Encrypt's certificate is publicly trusted)")
		} else if err := CheckCABundle(c.ACME.CABundle); err != nil {
			l.problemf("acme.caBundle", "%v", err)
		}
	}
	if c.CertManager.Install {
		l.validateCertManager(c.CertManager)
		l.certManagerSupportsK3s(c)
	}
	for _, img := range []struct{ key, ref, example string }{
		{"postgres", c.DatastoreImages.Postgres, DefaultDatastoreImages.Postgres},
		{"redis", c.DatastoreImages.Redis, DefaultDatastoreImages.Redis},
		{"nats", c.DatastoreImages.NATS, DefaultDatastoreImages.NATS},
		{"jaeger", c.DatastoreImages.Jaeger, DefaultDatastoreImages.Jaeger},
	} {
		if err := CheckImageRef(img.ref); err != nil {
			l.problemf("datastoreImages."+img.key, "%v, like %s", err, img.example)
		}
	}

	if u := c.Upgrades; u.Enabled {
		if u.Install && !semverRe.MatchString(u.ControllerVersion) {
			l.problemf("upgrades.controllerVersion", "must be a pinned system-upgrade-controller release like %s (got %q)", DefaultUpgradeControllerVersion, u.ControllerVersion)
		}
		if cl.Mode != ModeDigitalOcean && !k3sVersionRe.MatchString(cl.K3sVersion) {
			l.problemf("cluster.k3sVersion", "must be a pinned K3s release like %s while upgrades.enabled is true: the upgrade Plan keeps every server at it (got %q)", DefaultK3sVersion, cl.K3sVersion)
		}
	}

	a := c.App
	if a.GoogleLoginEnabled {
		if strings.TrimSpace(a.GoogleClientID) == "" {
			l.problemf("app.googleClientId", "is required while app.googleLoginEnabled is true (the OAuth client id from your OIDC provider)")
		}
		if secrets["googleClientSecret"] == "" {
			l.problemf("googleClientSecret", "is required while app.googleLoginEnabled is true: run `pulumi config set --secret googleClientSecret <secret>`")
		}
	}
	if a.TrustedCABundle != "" {
		if err := CheckCABundle(a.TrustedCABundle); err != nil {
			l.problemf("app.trustedCaBundle", "%v", err)
		}
	}
	if msg := issuerProblem(a.OIDCIssuerURL); msg != "" {
		l.problemf("app.oidcIssuerUrl", "%s (got %q)", msg, a.OIDCIssuerURL)
	}
	if a.EmailFrom != "" {
		if from, err := mail.ParseAddress(a.EmailFrom); err != nil || !emailOK(from.Address) {
			l.problemf("app.emailFrom", "must be an address like \"Pressroom <news@example.com>\" (got %q)", a.EmailFrom)
		}
	} else if c.App.ResendConfigured {
		l.problemf("app.emailFrom", "is required when resendApiKey is set: the sender, like \"Pressroom <news@example.com>\"")
	}
	for i, e := range a.AdminEmails {
		if !emailOK(e) {
			l.problemf("app.adminEmails", "entry %d must be an e-mail address like admin@example.com (got %q)", i+1, e)
		}
	}
	if a.NotifyEmail != "" && !emailOK(a.NotifyEmail) {
		l.problemf("app.notifyEmail", "must be an e-mail address like editors@example.com (got %q)", a.NotifyEmail)
	}
	if secrets["resendApiKey"] != "" && !strings.HasPrefix(secrets["resendApiKey"], "re_") {
		l.problemf("resendApiKey", "must be a Resend API key (it starts with re_)")
	}

	for _, b := range []struct {
		name string
		b    Bounds
	}{{"article", c.Scaling.Article}, {"web", c.Scaling.Web}} {
		if b.b.Min < 1 {
			l.problemf("scaling."+b.name+"Min", "must be at least 1 (got %d)", b.b.Min)
		}
		if b.b.Max < b.b.Min {
			l.problemf("scaling."+b.name+"Max", "must be at least %sMin (%d) (got %d)", b.name, b.b.Min, b.b.Max)
		}
		if b.b.Max > 50 {
			l.problemf("scaling."+b.name+"Max", "must be at most 50 (got %d)", b.b.Max)
		}
	}
	if c.Scaling.CPUTarget < 10 || c.Scaling.CPUTarget > 95 {
		l.problemf("scaling.cpuTarget", "must be a CPU utilisation percent between 10 and 95 (got %d)", c.Scaling.CPUTarget)
	}

	known := map[string]bool{}
	for _, s := range Services {
		known[s] = true
	}
	for _, s := range sortedKeys(c.Images) {
		img := c.Images[s]
		if !known[s] {
			l.problemf("images."+s, "unknown service; services are %s", strings.Join(Services, ", "))
		} else if !digestRe.MatchString(img) {
			l.problemf("images."+s, "must be pinned by digest like registry.example.com/pressroom/%s@sha256:<64 hex> (got %q)", s, img)
		}
	}
	need := c.NeedsBuild()
	if len(need) > 0 && (cl.Mode == ModeExisting || cl.Mode == ModeRender) {
		// Images are built only with the cloud layer: existing and render
		// stacks must run with nothing but the kubernetes, tls and random providers.
		l.problemf("images", "%s mode builds no images: give %s as image@sha256:<digest> (for example from the staging stack's `pulumi stack output images`)", cl.Mode, strings.Join(need, ", "))
	}
	switch c.Registry.Kind {
	case RegistryNone:
		if len(need) > 0 && cl.Mode == ModeDigitalOcean {
			l.problemf("registry.kind", "services %s have no image in images, so they are built and need a registry: set registry.kind to digitalocean or external, or give every image", strings.Join(need, ", "))
		}
	case RegistryDigitalOcean:
		if cl.Mode != ModeDigitalOcean {
			l.problemf("registry.kind", "digitalocean needs cluster.mode digitalocean (%s mode creates no cloud resources): use external or give every image", cl.Mode)
		}
		if !registryRe.MatchString(c.Registry.Name) {
			l.problemf("registry.name", "must be a lowercase name like pressroom (got %q)", c.Registry.Name)
		}
	case RegistryExternal:
		if !hostPortRe.MatchString(c.Registry.Server) {
			l.problemf("registry.server", "must be a registry host like registry.example.com (got %q)", c.Registry.Server)
		}
		if c.Registry.Username == "" {
			l.problemf("registry.username", "is required for an external registry")
		}
		if secrets["registryPassword"] == "" {
			l.problemf("registryPassword", "is required for an external registry: run `pulumi config set --secret registryPassword <token>`")
		}
	default:
		l.problemf("registry.kind", "must be one of none, digitalocean, external (got %q)", c.Registry.Kind)
	}

	if c.JWT.KeyGeneration < 1 {
		l.problemf("jwt.keyGeneration", "must be 1 or more; increase it by one to rotate the signing key (got %d)", c.JWT.KeyGeneration)
	}
	for _, q := range []struct{ name, v string }{
		{"postgres", c.Storage.Postgres}, {"redis", c.Storage.Redis}, {"nats", c.Storage.NATS},
		{"media", c.Storage.Media}, {"backups", c.Storage.Backups},
	} {
		if !quantityRe.MatchString(q.v) {
			l.problemf("storage."+q.name, "must be a size like 10Gi (Mi, Gi or Ti) (got %q)", q.v)
		}
	}
	media, mediaOK := mebibytes(c.Storage.Media)
	backups, backupsOK := mebibytes(c.Storage.Backups)
	if mediaOK && backupsOK && backups < media {
		l.problemf("storage.backups", "must be at least storage.media (%s): every backup holds all media files beside the database dumps (got %q)", c.Storage.Media, c.Storage.Backups)
	}
	if err := CheckCronSchedule(c.Backup.Schedule); err != nil {
		l.problemf("backup.schedule", "%v (got %q)", err, c.Backup.Schedule)
	}
	if c.Backup.RetentionDays < 1 || c.Backup.RetentionDays > 3650 {
		l.problemf("backup.retentionDays", "must be between 1 and 3650 (got %d)", c.Backup.RetentionDays)
	}
}

func (l *loader) validateCloud(c *Config) {
	cl := c.Cluster
	if !regionRe.MatchString(cl.Region) {
		l.problemf("cluster.region", "must be a DigitalOcean region slug like fra1 (got %q)", cl.Region)
	}
	if !slugRe.MatchString(cl.Size) {
		l.problemf("cluster.size", "must be a droplet size slug like s-2vcpu-4gb (got %q)", cl.Size)
	}
	if !strings.HasPrefix(cl.Image, "ubuntu-") || !slugRe.MatchString(cl.Image) {
		l.problemf("cluster.image", "must be an Ubuntu LTS image slug like ubuntu-24-04-x64 (got %q)", cl.Image)
	}
	if cl.Nodes >= 1 && cl.Nodes != 1 && cl.Nodes != 3 {
		l.problemf("cluster.nodes", "must be 1, or 3 for high availability (embedded etcd needs an odd quorum) (got %d)", cl.Nodes)
	}
	if !k3sVersionRe.MatchString(cl.K3sVersion) {
		l.problemf("cluster.k3sVersion", "must be a pinned K3s release like %s (got %q)", DefaultK3sVersion, cl.K3sVersion)
	}
	if len(cl.AdminCIDRs) == 0 {
		l.problemf("cluster.adminCidrs", "must list the networks allowed to reach SSH and the Kubernetes API, like [203.0.113.7/32]")
	}
	var valid []*net.IPNet
	for i, s := range cl.AdminCIDRs {
		_, n, err := net.ParseCIDR(s)
		switch {
		case err != nil:
			l.problemf("cluster.adminCidrs", "entry %d must be a CIDR like 203.0.113.7/32 (got %q)", i+1, s)
		case n.IP.To4() != nil && len(n.Mask) == net.IPv6len:
			l.problemf("cluster.adminCidrs", "entry %d (%s) is an IPv4 network in IPv6 form; write it as IPv4, like 203.0.113.7/32", i+1, s)
		case tooWide(n):
			l.problemf("cluster.adminCidrs", "entry %d (%s) opens SSH and the Kubernetes API to the whole internet or a large part of it: prefixes must be /%d or longer for IPv4 and /%d or longer for IPv6; list your own networks", i+1, s, minAdminPrefix4, minAdminPrefix6)
		default:
			valid = append(valid, n)
		}
	}
	if len(valid) == len(cl.AdminCIDRs) { // each entry is narrow enough: now all of them together
		for _, family := range []struct{ bits, min int }{{32, minAdminPrefix4}, {128, minAdminPrefix6}} {
			entries, covered := addressesCovered(valid, family.bits)
			if covered.Cmp(new(big.Int).Lsh(big.NewInt(1), uint(family.bits-family.min))) > 0 {
				l.problemf("cluster.adminCidrs", "entries %s together open SSH and the Kubernetes API to more addresses than one /%d holds; list only your own networks",
					joinEntries(entries), family.min)
			}
		}
	}
	for i, k := range cl.SSHPublicKeys {
		if !sshKeyOK(k) {
			l.problemf("cluster.sshPublicKeys", "entry %d must be an OpenSSH public key line like \"ssh-ed25519 AAAA... you@laptop\" (one key of type ssh-ed25519, ssh-rsa or ecdsa-sha2-nistp256/384/521)", i+1)
		}
	}
	if cl.VolumeSizeGB < 1 || cl.VolumeSizeGB > 16000 {
		l.problemf("cluster.volumeSizeGb", "must be between 1 and 16000 (got %d)", cl.VolumeSizeGB)
	}
	if msg := vpcProblem(cl.VPCCIDR); msg != "" {
		l.problemf("cluster.vpcCidr", "%s (got %q)", msg, cl.VPCCIDR)
	} else {
		_, n, _ := net.ParseCIDR(cl.VPCCIDR)
		for _, k := range k3sNets {
			_, kn, _ := net.ParseCIDR(k)
			if n.Contains(kn.IP) || kn.Contains(n.IP) {
				l.problemf("cluster.vpcCidr", "%s overlaps K3s' pod/service network %s; pick another range like 10.110.0.0/20", cl.VPCCIDR, k)
			}
		}
	}
	if cl.APIHost != "" && !DNSNameOK(cl.APIHost) {
		l.problemf("cluster.apiHost", "must be a DNS name like k8s.example.com (got %q)", cl.APIHost)
	}
	if !zoneIDRe.MatchString(c.Cloudflare.ZoneID) {
		l.problemf("cloudflare.zoneId", "must be the 32-hex-digit Cloudflare zone id of the domain (Cloudflare dashboard → Overview → Zone ID) (got %q)", c.Cloudflare.ZoneID)
	}
}

func (l *loader) validateCertManager(cm CertManagerConfig) {
	if !semverRe.MatchString(cm.Version) {
		l.problemf("certManager.version", "must be a pinned chart version like %s (got %q)", DefaultCertManagerVersion, cm.Version)
	}
	switch {
	case strings.TrimSpace(cm.Chart) == "":
		l.problemf("certManager.chart", "must be a Helm repository URL like %s or a local chart directory like ./charts/cert-manager", DefaultCertManagerChart)
	case !ChartIsLocal(cm.Chart):
		if u, err := url.Parse(cm.Chart); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			l.problemf("certManager.chart", "must be a Helm repository URL like %s (http or https, no user, query or fragment) or a local chart directory like ./charts/cert-manager (got %q)", DefaultCertManagerChart, cm.Chart)
		}
	}
	known := map[string]bool{}
	for _, k := range CertManagerImageKeys {
		known[k] = true
	}
	for _, k := range sortedKeys(cm.Images) {
		if !known[k] {
			l.problemf("certManager.images."+k, "unknown component; components are %s", strings.Join(CertManagerImageKeys, ", "))
		} else if err := CheckImageRef(cm.Images[k]); err != nil {
			l.problemf("certManager.images."+k, "%v, like quay.io/jetstack/cert-manager-%s@sha256:<64 hex>", err, k)
		}
	}
}

// ChartIsLocal reports whether a certManager.chart value names a local
// chart directory rather than a Helm repository: it has no URL scheme.
func ChartIsLocal(chart string) bool { return chart != "" && !strings.Contains(chart, "://") }

// imageRefRe is name[:tag]@sha256:<64 hex>: a registry host (with a port),
// path, optional tag, and the digest of the image or of its multi-arch index.
var imageRefRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9._/-]*[a-z0-9])?(:[0-9]+/[a-z0-9]([a-z0-9._/-]*[a-z0-9])?)?(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?@sha256:[0-9a-f]{64}$`)

// CheckImageRef says why ref is not an image reference pinned by digest,
// name[:tag]@sha256:<64 hex digits>, or is tagged latest. The digest may be
// a single image manifest's (an image built here) or a multi-arch index's
// (upstream images): both pin the bytes. infra checks its arguments with it.
func CheckImageRef(ref string) error {
	if !imageRefRe.MatchString(ref) {
		return fmt.Errorf("must be pinned by digest, name[:tag]@sha256:<64 hex digits> (got %q)", ref)
	}
	name, _, _ := strings.Cut(ref, "@")
	if strings.HasSuffix(name, ":latest") {
		return fmt.Errorf("must not use the tag latest: give a versioned tag, or none, before the @sha256: digest (got %q)", ref)
	}
	return nil
}

// SplitImageRef splits a reference CheckImageRef accepts into its
// repository (the tag dropped) and its digest (sha256:<hex>).
func SplitImageRef(ref string) (repository, digest string) {
	name, digest, _ := strings.Cut(ref, "@")
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name = name[:i]
	}
	return name, digest
}

// CheckCABundle says why bundle is not a PEM bundle of certificates: it
// must hold at least one CERTIFICATE block, every block must be one and
// parse, and it must hold no private key (it is stored in a ConfigMap).
// Text between the blocks (comments in a bundle file) is ignored, as Go's
// x509.CertPool.AppendCertsFromPEM ignores it.
func CheckCABundle(bundle string) error {
	rest := []byte(bundle)
	certs := 0
	for n := 1; ; n++ {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch {
		case strings.Contains(b.Type, "PRIVATE KEY"):
			return fmt.Errorf("block %d is a %s: a CA bundle holds certificates only, and this one would be stored in a ConfigMap that anyone who can read the namespace reads; remove the key", n, b.Type)
		case b.Type != "CERTIFICATE":
			return fmt.Errorf("block %d is a %s; only CERTIFICATE blocks (-----BEGIN CERTIFICATE-----) are trusted", n, b.Type)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("certificate %d does not parse: %v", n, err)
		}
		certs++
	}
	if strings.Contains(string(rest), "-----BEGIN") {
		return errors.New("holds a PEM block that does not decode (check its -----BEGIN/-----END lines and base64 body)")
	}
	if certs == 0 {
		return errors.New("must hold at least one PEM certificate (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----)")
	}
	return nil
}

// CheckCronSchedule says why Kubernetes would refuse schedule for a CronJob:
// it parses schedules with this parser and refuses time zones in them
// (CronJob has spec.timeZone instead). infra/backup checks its args with it.
func CheckCronSchedule(schedule string) error {
	if strings.Contains(schedule, "TZ") {
		return errors.New("must not set a time zone (TZ= or CRON_TZ=): Kubernetes CronJob refuses it in the schedule; write the time in the cluster's time zone (UTC on the nodes pressroom creates), like \"0 3 * * *\"")
	}
	if _, err := cron.ParseStandard(schedule); err != nil {
		return fmt.Errorf("must be a cron schedule Kubernetes accepts, five fields like \"0 3 * * *\" or \"0 3 * * MON\", or a macro like @daily: %v", err)
	}
	return nil
}

// DNSNameOK reports whether s is a lowercase DNS name of at most 253
// characters: the one rule for the stack's domain, which infra's components
// check again for callers that bypass the stack config.
func DNSNameOK(s string) bool {
	return len(s) <= 253 && dnsNameRe.MatchString(s)
}

// emailOK wants a plain address at a DNS name: mail.ParseAddress alone also
// takes [192.0.2.1] and labels like -x.
func emailOK(s string) bool {
	a, err := mail.ParseAddress(s)
	at := strings.LastIndex(s, "@")
	return err == nil && a.Address == s && at > 0 && DNSNameOK(strings.ToLower(s[at+1:]))
}

// acmeServerProblem says what is wrong with an ACME directory URL, or "".
// cert-manager talks to the server over TLS only.
func acmeServerProblem(s string) string {
	const like = "must be the https URL of an ACME directory, like https://acme-v02.api.letsencrypt.org/directory"
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Opaque != "" || u.Hostname() == "" || u.User != nil || u.Fragment != "" || !strings.HasPrefix(s, "https://") {
		return like
	}
	return ""
}

// issuerProblem says what is wrong with an OIDC issuer URL, or "". go-oidc
// needs it byte for byte as the provider's discovery document states it.
func issuerProblem(s string) string {
	const like = "like https://accounts.google.com"
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" || u.Hostname() == "" {
		return "must be an https URL " + like
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && isLoopbackHost(u.Hostname())) {
		return "must be an https URL " + like
	}
	var bad []string
	if !strings.HasPrefix(s, u.Scheme+"://") {
		bad = append(bad, "a lowercase scheme")
	}
	if u.Host != strings.ToLower(u.Host) {
		bad = append(bad, "a lowercase host")
	}
	if u.User != nil {
		bad = append(bad, "no user name or password")
	}
	if u.RawQuery != "" || u.ForceQuery {
		bad = append(bad, "no query (?...)")
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		bad = append(bad, "no fragment (#...)")
	}
	if strings.HasSuffix(u.Path, "/") {
		bad = append(bad, "no trailing slash")
	}
	if len(bad) == 0 {
		return ""
	}
	return "must be the issuer exactly as in the provider's discovery document (/.well-known/openid-configuration), " +
		like + ", or sign-in fails; it needs " + strings.Join(bad, ", ")
}

// vpcProblem says what is wrong with a VPC range, or "".
func vpcProblem(s string) string {
	ip, n, err := net.ParseCIDR(s)
	if err != nil || ip.To4() == nil || len(n.Mask) != net.IPv4len || !n.IP.IsPrivate() {
		return "must be a private (RFC 1918) IPv4 range like 10.110.0.0/20"
	}
	if !ip.Equal(n.IP) {
		return fmt.Sprintf("has host bits set; the range starts at %s, so write %s", n.IP, n)
	}
	if ones, _ := n.Mask.Size(); ones < 16 || ones > 28 {
		return "must be between /16 and /28 (DigitalOcean's VPC sizes), like 10.110.0.0/20"
	}
	return ""
}

func isLoopbackHost(h string) bool {
	ip := net.ParseIP(h)
	return h == "localhost" || (ip != nil && ip.IsLoopback())
}

// tooWide reports a network wider than minAdminPrefix4/6.
// addressesCovered counts the addresses of one family (32 or 128 bits) the
// networks cover together, and names the entries (1-based) that count. Two
// CIDR blocks either nest or do not meet, so the count is the sum over the
// blocks no other block contains.
func addressesCovered(nets []*net.IPNet, bits int) (entries []int, total *big.Int) {
	total = new(big.Int)
	for i, n := range nets {
		ones, b := n.Mask.Size()
		if b != bits {
			continue
		}
		inside := false
		for j, m := range nets {
			mOnes, mBits := m.Mask.Size()
			if j == i || mBits != bits || mOnes > ones || !m.Contains(n.IP) {
				continue
			}
			if mOnes < ones || j < i { // a wider block, or an earlier copy of this one
				inside = true
				break
			}
		}
		if !inside {
			entries = append(entries, i+1)
			total.Add(total, new(big.Int).Lsh(big.NewInt(1), uint(bits-ones)))
		}
	}
	return entries, total
}

// joinEntries writes 1, 2 and 3.
func joinEntries(entries []int) string {
	s := make([]string, len(entries))
	for i, e := range entries {
		s[i] = strconv.Itoa(e)
	}
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

func tooWide(n *net.IPNet) bool {
	ones, bits := n.Mask.Size()
	if bits == 8*net.IPv4len {
		return ones < minAdminPrefix4
	}
	return ones < minAdminPrefix6
}

// sshKeyOK wants exactly one public key of a type DigitalOcean takes.
func sshKeyOK(line string) bool {
	k, _, opts, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	return err == nil && len(opts) == 0 && len(rest) == 0 &&
		slices.Contains(sshKeyTypes, k.Type()) && strings.HasPrefix(line, k.Type()+" ")
}

// kubeconfig is the part of a kubeconfig file the provider needs.
type kubeconfig struct {
	Clusters []struct {
		Cluster struct {
			Server string `yaml:"server"`
		} `yaml:"cluster"`
	} `yaml:"clusters"`
	Users    []any `yaml:"users"`
	Contexts []struct {
		Name string `yaml:"name"`
	} `yaml:"contexts"`
	CurrentContext string `yaml:"current-context"`
}

// kubeconfigOK reports whether s is a kubeconfig the provider can use. It
// returns no parser error: that text quotes the secret.
func kubeconfigOK(s string) bool {
	var kc kubeconfig
	if yaml.Unmarshal([]byte(s), &kc) != nil {
		return false
	}
	if len(kc.Clusters) == 0 || kc.Clusters[0].Cluster.Server == "" || len(kc.Users) == 0 || kc.CurrentContext == "" {
		return false
	}
	for _, c := range kc.Contexts {
		if c.Name == kc.CurrentContext {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// mebibytes is a size accepted by quantityRe in MiB.
func mebibytes(q string) (int64, bool) {
	if !quantityRe.MatchString(q) {
		return 0, false
	}
	n, err := strconv.ParseInt(q[:len(q)-2], 10, 64)
	if err != nil {
		return 0, false
	}
	return n * map[string]int64{"Mi": 1, "Gi": 1 << 10, "Ti": 1 << 20}[q[len(q)-2:]], true
}

// certManagerKubernetes is the Kubernetes range of each cert-manager minor,
// from cert-manager's supported-releases table (cert-manager.io/docs/releases).
// A minor missing here is not checked.
var certManagerKubernetes = map[[2]int][2]int{
	{1, 18}: {29, 33},
	{1, 19}: {31, 35},
	{1, 20}: {32, 35},
	{1, 21}: {33, 36},
}

// certManagerSupportsK3s refuses a cert-manager chart whose supported
// Kubernetes range leaves out the K3s minor the stack runs, e.g. the
// default cert-manager on a stack still on K3s v1.31: both are raised in
// turn (infra/OPERATIONS.md, "Upgrade K3s").
func (l *loader) certManagerSupportsK3s(c *Config) {
	if c.Cluster.Mode != ModeDigitalOcean && !c.Upgrades.Enabled {
		return // cluster.k3sVersion says nothing about the cluster
	}
	cm := chartMinorRe.FindStringSubmatch(c.CertManager.Version)
	k := k3sMinorRe.FindStringSubmatch(c.Cluster.K3sVersion)
	if cm == nil || k == nil {
		return // reported as unpinned already
	}
	cmMajor, _ := strconv.Atoi(cm[1])
	cmMinor, _ := strconv.Atoi(cm[2])
	k8sMinor, _ := strconv.Atoi(k[1])
	r, known := certManagerKubernetes[[2]int{cmMajor, cmMinor}]
	if !known || (k8sMinor >= r[0] && k8sMinor <= r[1]) {
		return
	}
	l.problemf("certManager.version", "%s supports Kubernetes 1.%d to 1.%d, but cluster.k3sVersion is %s: "+
		"raise K3s and cert-manager in turn, one minor at a time (infra/OPERATIONS.md, \"Upgrade K3s\")",
		c.CertManager.Version, r[0], r[1], c.Cluster.K3sVersion)
}

var (
	k3sMinorRe   = regexp.MustCompile(`^v1\.(\d+)\.\d+\+k3s\d+$`)
	chartMinorRe = regexp.MustCompile(`^v(\d+)\.(\d+)\.\d+$`)
)

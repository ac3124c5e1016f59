// Package stacks is the typed configuration of one pressroom stack: every
// setting of Pulumi.<stack>.yaml in one Go struct, with defaults and a
// validation that reports every problem at once.
//
// Keys live in the "pressroom" namespace. Groups of plain settings are YAML
// objects (set them with `pulumi config set --path acme.email ops@example.com`);
// secrets are flat top-level keys so that only they are encrypted
// (`pulumi config set --secret resendApiKey re_...`).
package stacks

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Namespace is the Pulumi config namespace (the project name).
const Namespace = "pressroom"

// Cluster modes.
const (
	// ModeDigitalOcean creates droplets, firewall, volume, DNS and K3s.
	ModeDigitalOcean = "digitalocean"
	// ModeExisting deploys onto the cluster of the `kubeconfig` secret; no cloud resources.
	ModeExisting = "existing"
	// ModeRender writes every Kubernetes manifest to Cluster.RenderDir; no cloud resources.
	ModeRender = "render"
)

// Registry kinds.
const (
	RegistryNone         = "none"         // every service has a prebuilt image in Images
	RegistryDigitalOcean = "digitalocean" // the stack creates a DigitalOcean Container Registry
	RegistryExternal     = "external"     // server/username from config, password secret
)

// Services are the five deployable services, the keys of Config.Images.
var Services = []string{"auth", "article", "media", "notification", "web"}

// Databases are the services with a database: database auth_db, role auth, …
var Databases = []string{"auth", "article", "media", "notification"}

// Config is the whole stack configuration.
type Config struct {
	Stack  string // Pulumi stack name
	Domain string // apex domain, e.g. example.com (www.<domain> redirects to it)

	Cluster     ClusterConfig
	Cloudflare  CloudflareConfig
	ACME        ACMEConfig
	CertManager CertManagerConfig
	Upgrades    UpgradesConfig
	// DatastoreImages are the Postgres, Redis, NATS and Jaeger images (and
	// the backup job's, which is Postgres'), each pinned by digest.
	DatastoreImages DatastoreImagesConfig
	App             AppConfig
	Scaling         ScalingConfig
	Images          map[string]string // service -> image pinned by @sha256: digest; missing ones are built
	Registry        RegistryConfig
	JWT             JWTConfig
	Storage         StorageConfig
	Backup          BackupConfig
	// Protect marks stateful resources (volume, PVCs, databases) `protect`ed.
	// Defaults to true for prod-like stacks (IsProdLike: "prod", "production",
	// "*-prod", "*-production", in any case).
	Protect bool

	Secrets Secrets
}

// ClusterConfig selects where the platform runs.
type ClusterConfig struct {
	Mode string // digitalocean | existing | render

	// digitalocean mode
	Region        string   // DigitalOcean region slug, e.g. fra1
	Size          string   // droplet size slug, e.g. s-2vcpu-4gb
	Image         string   // Ubuntu LTS image slug, e.g. ubuntu-24-04-x64
	Nodes         int      // 1, or 3 for HA (embedded etcd)
	K3sVersion    string   // pinned, e.g. v1.36.4+k3s1
	AdminCIDRs    []string // who may reach SSH (22) and the Kubernetes API (6443)
	SSHPublicKeys []string // authorized keys; when empty a key is generated and exported as a secret
	VolumeSizeGB  int      // block storage for K3s local-path data (survives droplet replacement)
	VPCCIDR       string   // private network of the nodes, e.g. 10.110.0.0/20
	APIHost       string   // extra TLS SAN of the API server; default k8s.<domain>
	ReadyTimeout  int      // seconds to wait for /readyz before giving up

	// render mode
	RenderDir string // directory for renderYamlToDirectory; default "rendered"
}

// CloudflareConfig holds the DNS zone (the API token is the provider's own
// secret `cloudflare:apiToken`).
type CloudflareConfig struct {
	ZoneID string
}

// ACMEConfig configures Let's Encrypt.
type ACMEConfig struct {
	Email  string
	Issuer string // staging | prod
	// Server replaces the ACME directory URL of the issuer Issuer selects
	// (cert-manager's spec.acme.server), e.g. a private or test ACME CA;
	// empty: Let's Encrypt's. CABundle is the PEM CA that server's TLS
	// certificate chains to (spec.acme.caBundle), when it is not publicly
	// trusted.
	Server   string
	CABundle string
}

// CertManagerConfig configures the cert-manager Helm release.
type CertManagerConfig struct {
	Install bool   // default true; false when the cluster already has cert-manager
	Version string // pinned chart version, e.g. v1.21.2
	// Chart is where the chart comes from: a Helm repository URL (default
	// DefaultCertManagerChart, chart name cert-manager) or a local chart
	// directory (see ChartIsLocal), relative to the program directory infra/.
	Chart string
	// Images overrides the chart's images by component (CertManagerImageKeys),
	// each repository[:tag]@sha256:<digest>; missing ones are the chart's.
	Images map[string]string
}

// DatastoreImagesConfig pins the datastore images (name[:tag]@sha256:<digest>).
type DatastoreImagesConfig struct {
	Postgres string // also the backup job's image (pg_dump of the same major)
	Redis    string
	NATS     string
	Jaeger   string
}

// UpgradesConfig keeps the K3s servers at Cluster.K3sVersion with K3s'
// system-upgrade-controller: a Plan names the version, the controller
// upgrades one server at a time.
type UpgradesConfig struct {
	Enabled           bool   // default true in digitalocean mode (the stack owns K3s), false otherwise
	Install           bool   // default true; false when the cluster already runs the controller
	ControllerVersion string // pinned system-upgrade-controller release, e.g. v0.16.1
}

// AppConfig holds the services' plain settings (secrets are in Secrets).
type AppConfig struct {
	GoogleClientID     string
	GoogleLoginEnabled bool
	OIDCIssuerURL      string // default https://accounts.google.com
	EmailFrom          string
	AdminEmails        []string
	NotifyEmail        string
	// TrustedCABundle is PEM certificates that auth and notification trust
	// for outbound HTTPS besides the image's public roots (an OIDC provider
	// or mail relay behind a private CA); "" = none.
	TrustedCABundle string
	// ResendConfigured is true when the resendApiKey secret is set: the
	// notification service sends e-mail; otherwise it logs.
	ResendConfigured bool
}

// Bounds is a HorizontalPodAutoscaler range.
type Bounds struct {
	Min int
	Max int
}

// ScalingConfig holds replica and autoscaling bounds.
type ScalingConfig struct {
	Article   Bounds // default 2..5
	Web       Bounds // default 2..6
	CPUTarget int    // average CPU utilisation percent, default 70
}

// RegistryConfig says where images built by the stack are pushed.
type RegistryConfig struct {
	Kind     string // none | digitalocean | external
	Server   string // external: e.g. registry.example.com
	Username string // external
	// Name of the DigitalOcean registry (digitalocean kind); default "pressroom".
	Name string
}

// JWTConfig controls signing-key rotation.
type JWTConfig struct {
	// KeyGeneration (>= 1): bump it to generate a new signing key; the previous
	// generation stays in the verification key set.
	KeyGeneration int
}

// StorageConfig holds volume sizes as Kubernetes quantities (e.g. 10Gi).
type StorageConfig struct {
	Postgres string
	Redis    string
	NATS     string
	Media    string
	Backups  string
}

// BackupConfig schedules the database backups.
type BackupConfig struct {
	Schedule      string // cron, default "0 3 * * *"
	RetentionDays int    // default 14
}

// Secrets are the secret config values, never plain strings. Unset optional
// secrets are secret outputs of "".
type Secrets struct {
	GoogleClientSecret pulumi.StringOutput // key googleClientSecret
	ResendAPIKey       pulumi.StringOutput // key resendApiKey
	RegistryPassword   pulumi.StringOutput // key registryPassword (external registry)
	Kubeconfig         pulumi.StringOutput // key kubeconfig (existing mode)
}

// NeedsBuild lists the services without a prebuilt image, in Services order.
func (c *Config) NeedsBuild() []string {
	var out []string
	for _, s := range Services {
		if c.Images[s] == "" {
			out = append(out, s)
		}
	}
	return out
}

// CloudEnabled reports whether the stack creates cloud (DigitalOcean/Cloudflare) resources.
func (c *Config) CloudEnabled() bool { return c.Cluster.Mode == ModeDigitalOcean }

// URL is the public address of the site.
func (c *Config) URL() string { return "https://" + c.Domain }

// WWWURL is the www address (it redirects to URL).
func (c *Config) WWWURL() string { return "https://www." + c.Domain }

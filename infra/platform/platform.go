// Package platform is the second half of the Pulumi program: every
// Kubernetes object of the running system, on the provider the cluster layer
// hands over (any of its modes). It composes one component per concern:
// cert-manager, the namespace, secrets, datastores, images, the five
// services, the edge, network policies and backups.
package platform

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"pressroom.dev/infra/app"
	"pressroom.dev/infra/backup"
	"pressroom.dev/infra/certmanager"
	"pressroom.dev/infra/datastores"
	"pressroom.dev/infra/edge"
	"pressroom.dev/infra/images"
	"pressroom.dev/infra/kube"
	"pressroom.dev/infra/netpol"
	"pressroom.dev/infra/secrets"
	"pressroom.dev/stacks"
)

// Ports of the services (the kit serves app traffic, /healthz, /readyz and /metrics on it).
var Ports = map[string]int{"auth": 8081, "article": 8082, "media": 8083, "notification": 8084, "web": 8080}

// DataNodeLabel marks the node that holds the Block Storage volume (set by
// the cluster layer's K3s config). With more than one node, everything with
// a persistent volume is pinned to it so local-path data outlives a droplet.
const DataNodeLabel = "pressroom.dev/data"

// dataNodeSelector is empty on a single node, where there is nothing to choose.
func (a *PlatformArgs) dataNodeSelector() map[string]string {
	if a.Nodes <= 1 {
		return nil
	}
	return map[string]string{DataNodeLabel: "true"}
}

// MediaClaim is the PersistentVolumeClaim of the media files.
const MediaClaim = "media-data"

// Bounds is an autoscaling range.
type Bounds struct{ Min, Max int }

// AppSettings are the services' plain settings.
type AppSettings struct {
	GoogleClientID     string
	GoogleLoginEnabled bool
	OIDCIssuerURL      string // empty: stacks.Defaults
	EmailFrom          string
	AdminEmails        []string
	NotifyEmail        string
	LogLevel           string // default info
	// TrustedCABundle is PEM certificates auth and notification trust for
	// outbound HTTPS besides their image's roots; "" = none.
	TrustedCABundle string
}

// TrustedCAConfigMap holds AppSettings.TrustedCABundle (when set) under
// TrustedCAKey; TrustedCAServices mount it.
const (
	TrustedCAConfigMap = "trusted-ca"
	TrustedCAKey       = "ca.crt"
)

// TrustedCAServices are the services that call the internet: auth (the OIDC
// provider) and notification (Resend).
var TrustedCAServices = []string{"auth", "notification"}

// RegistrySettings says where built images go (see images.ImagesArgs).
type RegistrySettings struct {
	Kind     string // none | digitalocean | external
	Server   string
	Username string
	Password pulumi.StringInput // secret
	Name     string
	Region   string
}

// StorageSizes are PVC sizes (Kubernetes quantities); empty = defaults.
type StorageSizes struct {
	Postgres, Redis, NATS, Media, Backups string
}

// PlatformArgs is everything the platform needs; it does not know how
// config is loaded (see ArgsFromConfig).
type PlatformArgs struct {
	Domain string // apex, e.g. example.com
	Nodes  int    // cluster size; > 1 turns on topology spread

	ACMEEmail          string
	ACMEServer         string // replaces Let's Encrypt's directory for Issuer
	ACMECABundle       string // PEM CA of ACMEServer's TLS certificate
	Issuer             string // staging | prod
	InstallCertManager bool   // false when the cluster already runs cert-manager
	CertManagerVersion string // default certmanager.DefaultVersion
	CertManagerChart   string // Helm repository URL or local chart directory; default certmanager.DefaultChart
	// CertManagerImages overrides the chart's images by component
	// (controller, webhook, cainjector, acmesolver, startupapicheck).
	CertManagerImages map[string]string

	App                AppSettings
	GoogleClientSecret pulumi.StringInput // secret; may be ""
	ResendAPIKey       pulumi.StringInput // secret; may be ""

	ArticleScaling Bounds // empty: stacks.Defaults
	WebScaling     Bounds // empty: stacks.Defaults
	CPUTarget      int    // percent; empty: stacks.Defaults

	Images       map[string]string // service → prebuilt reference by digest; others are built
	Registry     RegistrySettings
	BuildContext string // repo root relative to the program (default "..")

	JWTKeyGeneration int // >= 1; bump to rotate
	Storage          StorageSizes
	DatastoreImages  datastores.Images // zero = datastores.DefaultImages; Postgres' is also the backup job's

	BackupSchedule      string // empty: stacks.Defaults
	BackupRetentionDays int    // empty: stacks.Defaults

	Protect   bool // protect stateful resources (prod)
	SkipAwait bool // do not wait for workloads to become ready (API servers without nodes)

	// DependsOn is the cluster layer's readiness gate: nothing is created
	// before the API server answers.
	DependsOn []pulumi.Resource
}

// Platform is the component.
type Platform struct {
	pulumi.ResourceState

	Namespace pulumi.StringOutput      `pulumi:"namespace"`
	URL       pulumi.StringOutput      `pulumi:"url"`
	WWWURL    pulumi.StringOutput      `pulumi:"wwwUrl"`
	Issuer    pulumi.StringOutput      `pulumi:"issuer"`
	Images    pulumi.StringMapOutput   `pulumi:"images"`
	JWTKeyIDs pulumi.StringArrayOutput `pulumi:"jwtKeyIds"`
}

// Validate lists every problem of the arguments at once.
func (a *PlatformArgs) Validate() error {
	var p []string
	if !stacks.DNSNameOK(a.Domain) {
		p = append(p, fmt.Sprintf("domain %q is not a lower-case DNS name such as example.com", a.Domain))
	}
	if _, err := certmanager.IssuerName(a.Issuer); err != nil {
		p = append(p, err.Error())
	}
	if a.Nodes < 1 {
		p = append(p, fmt.Sprintf("nodes is %d; it must be at least 1", a.Nodes))
	}
	if a.JWTKeyGeneration < 1 {
		p = append(p, fmt.Sprintf("jwt key generation is %d; it starts at 1", a.JWTKeyGeneration))
	}
	for n, b := range map[string]Bounds{"article": a.ArticleScaling, "web": a.WebScaling} {
		if b.Min < 1 || b.Max < b.Min {
			p = append(p, fmt.Sprintf("%s autoscaling %d..%d: need 1 <= min <= max", n, b.Min, b.Max))
		}
	}
	if a.CPUTarget < 1 || a.CPUTarget > 100 {
		p = append(p, fmt.Sprintf("cpu target %d%% must be 1-100", a.CPUTarget))
	}
	for svc, ref := range a.Images {
		if !slices.Contains(stacks.Services, svc) {
			p = append(p, fmt.Sprintf("images.%s: no such service (have %s)", svc, strings.Join(stacks.Services, ", ")))
		} else if ref != "" {
			if err := images.ValidateRef(svc, ref); err != nil {
				p = append(p, err.Error())
			}
		}
	}
	if a.DatastoreImages != (datastores.Images{}) {
		if err := a.DatastoreImages.Check(); err != nil {
			p = append(p, err.Error())
		}
	}
	if a.App.TrustedCABundle != "" {
		if err := stacks.CheckCABundle(a.App.TrustedCABundle); err != nil {
			p = append(p, "trusted CA bundle: "+err.Error())
		}
	}
	if len(p) > 0 {
		return fmt.Errorf("platform: %d problem(s): %s", len(p), strings.Join(p, "; "))
	}
	return nil
}

func (a *PlatformArgs) defaults() {
	def := stacks.Defaults("")
	if a.ArticleScaling == (Bounds{}) {
		a.ArticleScaling = Bounds(def.Scaling.Article)
	}
	if a.WebScaling == (Bounds{}) {
		a.WebScaling = Bounds(def.Scaling.Web)
	}
	if a.CPUTarget == 0 {
		a.CPUTarget = def.Scaling.CPUTarget
	}
	if a.Nodes == 0 {
		a.Nodes = def.Cluster.Nodes
	}
	if a.JWTKeyGeneration == 0 {
		a.JWTKeyGeneration = def.JWT.KeyGeneration
	}
	if a.App.OIDCIssuerURL == "" {
		a.App.OIDCIssuerURL = def.App.OIDCIssuerURL
	}
	if a.App.LogLevel == "" {
		a.App.LogLevel = "info"
	}
	if a.Storage.Media == "" {
		a.Storage.Media = def.Storage.Media
	}
	if a.DatastoreImages == (datastores.Images{}) {
		a.DatastoreImages = datastores.DefaultImages
	}
}

// NewPlatform creates the whole platform. Pass the Kubernetes provider with
// pulumi.Provider(p) (or pulumi.Providers) in opts.
func NewPlatform(ctx *pulumi.Context, name string, args *PlatformArgs, opts ...pulumi.ResourceOption) (*Platform, error) {
	if args == nil {
		return nil, fmt.Errorf("platform: args are required")
	}
	a := *args
	a.defaults()
	if err := a.Validate(); err != nil {
		return nil, err
	}
	issuer, _ := certmanager.IssuerName(a.Issuer)

	p := &Platform{}
	if err := ctx.RegisterComponentResource("pressroom:platform:Platform", name, p, opts...); err != nil {
		return nil, err
	}
	ready := pulumi.DependsOn(a.DependsOn)

	cm, err := certmanager.NewCertManager(ctx, "cert-manager", &certmanager.CertManagerArgs{
		Install: a.InstallCertManager, Version: a.CertManagerVersion, Chart: a.CertManagerChart, Images: a.CertManagerImages,
		Email: a.ACMEEmail, Server: a.ACMEServer, ServerFor: issuer, CABundle: a.ACMECABundle, DependsOn: a.DependsOn,
	}, pulumi.Parent(p))
	if err != nil {
		return nil, err
	}

	nsRes, err := corev1.NewNamespace(ctx, "namespace", &corev1.NamespaceArgs{
		Metadata: &metav1.ObjectMetaArgs{
			Name: pulumi.String(kube.Namespace),
			Labels: pulumi.StringMap{
				"pod-security.kubernetes.io/enforce":         pulumi.String("restricted"),
				"pod-security.kubernetes.io/enforce-version": pulumi.String("latest"),
				"pod-security.kubernetes.io/audit":           pulumi.String("restricted"),
				"pod-security.kubernetes.io/warn":            pulumi.String("restricted"),
				"app.kubernetes.io/part-of":                  pulumi.String("pressroom"),
			},
		},
	}, pulumi.Parent(p), ready)
	if err != nil {
		return nil, fmt.Errorf("namespace: %w", err)
	}
	// Every namespaced object takes this output, so it waits for the namespace.
	ns := nsRes.Metadata.Name().Elem()

	if _, err := netpol.NewBaseline(ctx, "network", &netpol.BaselineArgs{Namespace: ns}, pulumi.Parent(p)); err != nil {
		return nil, err
	}

	sec, err := secrets.NewSecrets(ctx, "secrets", &secrets.SecretsArgs{
		Namespace: ns, JWTKeyGeneration: a.JWTKeyGeneration,
		GoogleClientSecret: a.GoogleClientSecret, ResendAPIKey: a.ResendAPIKey,
		Protect: a.Protect,
	}, pulumi.Parent(p))
	if err != nil {
		return nil, err
	}

	ds, err := datastores.NewDatastores(ctx, "datastores", &datastores.DatastoresArgs{
		Namespace: ns, Images: a.DatastoreImages,
		Storage:   datastores.Storage{Postgres: a.Storage.Postgres, Redis: a.Storage.Redis, NATS: a.Storage.NATS},
		SkipAwait: a.SkipAwait, Protect: a.Protect, DependsOn: sec.Resources,
		NodeSelector:    a.dataNodeSelector(),
		SecretChecksums: sec.Checksums, // a changed password restarts the datastore that reads it
	}, pulumi.Parent(p))
	if err != nil {
		return nil, err
	}

	imgs, err := images.NewImages(ctx, "images", &images.ImagesArgs{
		Namespace: ns, Services: stacks.Services, Prebuilt: a.Images,
		RegistryKind: a.Registry.Kind, RegistryServer: a.Registry.Server, RegistryUsername: a.Registry.Username,
		RegistryPassword: a.Registry.Password, RegistryName: a.Registry.Name, RegistryRegion: a.Registry.Region,
		Context: a.BuildContext, Tag: ctx.Stack(),
	}, pulumi.Parent(p))
	if err != nil {
		return nil, err
	}

	mediaOpts := []pulumi.ResourceOption{pulumi.Parent(p)}
	if a.Protect {
		mediaOpts = append(mediaOpts, pulumi.Protect(true))
	}
	if _, err := corev1.NewPersistentVolumeClaim(ctx, MediaClaim, &corev1.PersistentVolumeClaimArgs{
		Metadata: kube.Meta(ns, MediaClaim, "service", map[string]string{kube.SkipAwaitAnnotation: "true"}),
		Spec: &corev1.PersistentVolumeClaimSpecArgs{
			AccessModes: pulumi.StringArray{pulumi.String("ReadWriteOnce")},
			Resources:   &corev1.VolumeResourceRequirementsArgs{Requests: pulumi.StringMap{"storage": pulumi.String(a.Storage.Media)}},
		},
	}, mediaOpts...); err != nil {
		return nil, fmt.Errorf("media claim: %w", err)
	}

	var trustedCA *app.CABundle
	if a.App.TrustedCABundle != "" {
		cm, err := corev1.NewConfigMap(ctx, TrustedCAConfigMap, &corev1.ConfigMapArgs{
			Metadata: kube.Meta(ns, TrustedCAConfigMap, "tls", nil),
			Data:     pulumi.StringMap{TrustedCAKey: pulumi.String(a.App.TrustedCABundle)},
		}, pulumi.Parent(p))
		if err != nil {
			return nil, fmt.Errorf("trusted CA configmap: %w", err)
		}
		sum := sha256.Sum256([]byte(a.App.TrustedCABundle))
		trustedCA = &app.CABundle{ConfigMap: cm.Metadata.Name().Elem(), Key: TrustedCAKey, SHA256: hex.EncodeToString(sum[:])}
	}

	svcs := map[string]*app.Service{}
	for _, svc := range stacks.Services {
		sa := serviceArgs(&a, svc, ns, imgs, ds)
		sa.SecretChecksums = sec.Checksums // a changed Secret key rolls the services that read it
		if trustedCA != nil && slices.Contains(TrustedCAServices, svc) {
			sa.TrustedCA = trustedCA
		}
		s, err := app.NewService(ctx, svc, sa, pulumi.Parent(p))
		if err != nil {
			return nil, err
		}
		svcs[svc] = s
	}

	ed, err := edge.NewEdge(ctx, "edge", &edge.EdgeArgs{
		Namespace: ns, Domain: a.Domain, Issuer: issuer,
		WebService: svcs["web"].Name, MediaService: svcs["media"].Name,
		DependsOn: []pulumi.Resource{cm},
	}, pulumi.Parent(p))
	if err != nil {
		return nil, err
	}

	if _, err := backup.NewBackup(ctx, "backup", &backup.BackupArgs{
		Namespace: ns, Image: a.DatastoreImages.Postgres, Schedule: a.BackupSchedule,
		RetentionDays: a.BackupRetentionDays, Size: a.Storage.Backups, Protect: a.Protect, SkipAwait: a.SkipAwait,
		NodeSelector: a.dataNodeSelector(), MediaClaim: MediaClaim, MediaUID: app.UID,
	}, pulumi.Parent(p)); err != nil {
		return nil, err
	}

	p.Namespace = ns
	p.URL = ed.URL
	p.WWWURL = ed.WWWURL
	p.Issuer = ed.Issuer
	p.Images = imgs.Refs
	p.JWTKeyIDs = sec.JWTKeyIDs
	if err := ctx.RegisterResourceOutputs(p, pulumi.Map{
		"namespace": p.Namespace, "url": p.URL, "wwwUrl": p.WWWURL, "issuer": p.Issuer,
		"images": p.Images, "jwtKeyIds": p.JWTKeyIDs,
	}); err != nil {
		return nil, err
	}
	return p, nil
}

// serviceArgs is each service's contract with the kit (services/kit/README.md,
// Settings every service reads): plain settings as env values, secrets as secretKeyRefs.
func serviceArgs(a *PlatformArgs, svc string, ns pulumi.StringInput, imgs *images.Images, ds *datastores.Datastores) *app.ServiceArgs {
	publicURL := "https://" + a.Domain
	env := map[string]pulumi.StringInput{
		"OTEL_EXPORTER_OTLP_ENDPOINT": ds.OTLPEndpoint,
		"LOG_LEVEL":                   pulumi.String(a.App.LogLevel),
		"PUBLIC_URL":                  pulumi.String(publicURL),
	}
	secretEnv := map[string]app.SecretRef{}
	args := &app.ServiceArgs{
		Namespace: ns, Port: Ports[svc], Image: imgs.Ref(svc), Replicas: 1,
		Size:       kube.Size{CPURequest: "50m", MemRequest: "64Mi", CPULimit: "500m", MemLimit: "256Mi"},
		KeysSecret: secrets.JWTKeys, KeyItems: []string{secrets.JWTPublicKey},
		SpreadNodes: a.Nodes > 1, PullSecret: imgs.PullSecretName, SkipAwait: a.SkipAwait,
	}
	if svc != "web" {
		secretEnv["DATABASE_URL"] = app.SecretRef{Secret: secrets.DatabaseSecret(svc), Key: secrets.DatabaseURLKey}
	}
	if svc != "notification" {
		env["JWT_PUBLIC_KEY_PATH"] = pulumi.String("/keys/" + secrets.JWTPublicKey)
	} else {
		args.KeysSecret, args.KeyItems = "", nil // verifies no tokens
	}
	switch svc {
	case "auth":
		args.KeyItems = []string{secrets.JWTPrivateKey, secrets.JWTPublicKey}
		env["JWT_PRIVATE_KEY_PATH"] = pulumi.String("/keys/" + secrets.JWTPrivateKey)
		env["REDIS_ADDR"] = ds.RedisAddr
		secretEnv["REDIS_PASSWORD"] = app.SecretRef{Secret: secrets.Datastores, Key: secrets.RedisKey}
		env["OIDC_ISSUER_URL"] = pulumi.String(a.App.OIDCIssuerURL)
		env["GOOGLE_CLIENT_ID"] = pulumi.String(a.App.GoogleClientID)
		env["GOOGLE_LOGIN_ENABLED"] = pulumi.String(fmt.Sprint(a.App.GoogleLoginEnabled))
		env["OIDC_REDIRECT_URL"] = pulumi.String(publicURL + "/auth/callback")
		env["ADMIN_EMAILS"] = pulumi.String(strings.Join(a.App.AdminEmails, ","))
		secretEnv["GOOGLE_CLIENT_SECRET"] = app.SecretRef{Secret: secrets.AppSecrets, Key: secrets.GoogleSecretKey}
	case "article":
		env["NATS_URL"] = ds.NATSURL
		args.Autoscaling = &app.Autoscaling{Min: a.ArticleScaling.Min, Max: a.ArticleScaling.Max, CPUPercent: a.CPUTarget}
		args.PDBMinAvailable = 1
	case "media":
		env["MEDIA_DIR"] = pulumi.String("/data")
		args.Data = &app.Volume{Claim: MediaClaim, MountPath: "/data"}
		args.NodeSelector = a.dataNodeSelector()
	case "notification":
		env["NATS_URL"] = ds.NATSURL
		env["EMAIL_FROM"] = pulumi.String(a.App.EmailFrom)
		env["NOTIFY_EMAIL"] = pulumi.String(a.App.NotifyEmail)
		secretEnv["RESEND_API_KEY"] = app.SecretRef{Secret: secrets.AppSecrets, Key: secrets.ResendKey}
	case "web":
		env["AUTH_URL"] = pulumi.Sprintf("http://auth:%d", Ports["auth"])
		env["ARTICLE_URL"] = pulumi.Sprintf("http://article:%d", Ports["article"])
		env["MEDIA_URL"] = pulumi.Sprintf("http://media:%d", Ports["media"])
		args.Autoscaling = &app.Autoscaling{Min: a.WebScaling.Min, Max: a.WebScaling.Max, CPUPercent: a.CPUTarget}
		args.PDBMinAvailable = 1
	}
	args.Env = env
	args.SecretEnv = secretEnv
	return args
}

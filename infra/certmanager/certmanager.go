// Package certmanager installs cert-manager from its Helm chart (optional:
// an existing cluster may already run it) and the two Let's Encrypt
// ClusterIssuers, which are created only once cert-manager is ready. The
// chart comes from a Helm repository or a local directory, and its images
// may be overridden by digest, so an air-gapped cluster needs nothing from
// the internet.
package certmanager

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apiextensions"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	helmv3 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/helm/v3"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"gopkg.in/yaml.v3"

	"pressroom.dev/infra/kube"
	"pressroom.dev/stacks"
)

// Issuer names (the stack config picks one by its short name).
const (
	Staging = "letsencrypt-staging"
	Prod    = "letsencrypt-prod"
)

// DefaultVersion is the pinned cert-manager chart (stacks'
// DefaultCertManagerVersion, a supported release). Since 1.9.1 its HTTP-01
// solver pods satisfy the restricted Pod Security Standard, which the
// pressroom namespace (where they run, beside the Certificate) enforces.
const DefaultVersion = stacks.DefaultCertManagerVersion

var acmeServers = map[string]string{
	Staging: "https://acme-staging-v02.api.letsencrypt.org/directory",
	Prod:    "https://acme-v02.api.letsencrypt.org/directory",
}

// IssuerName maps the stack setting (staging | prod) to a ClusterIssuer name.
func IssuerName(short string) (string, error) {
	switch short {
	case "staging":
		return Staging, nil
	case "prod":
		return Prod, nil
	}
	return "", fmt.Errorf("acme issuer %q: use staging or prod", short)
}

// DefaultChart is Jetstack's public Helm repository; the chart in it is
// named ChartName.
const (
	DefaultChart = stacks.DefaultCertManagerChart
	ChartName    = "cert-manager"
)

// CertManagerArgs configures cert-manager.
type CertManagerArgs struct {
	Install bool   // false: the cluster already runs cert-manager
	Version string // chart version, default DefaultVersion
	// Chart is a Helm repository URL (default DefaultChart) or a local chart
	// directory (stacks.ChartIsLocal), whose Chart.yaml must be at Version.
	Chart string
	// Images overrides the chart's images by component
	// (stacks.CertManagerImageKeys): repository[:tag]@sha256:<digest>.
	Images map[string]string
	Email  string // ACME account e-mail
	// Server, when set, replaces the ACME directory URL of the ClusterIssuer
	// named ServerFor (Staging or Prod): a private or test ACME CA, issuing
	// through the same objects as Let's Encrypt. CABundle is the PEM CA its
	// TLS certificate chains to (empty: publicly trusted).
	Server, ServerFor, CABundle string
	IngressClass                string // default "traefik"
	// DependsOn is the cluster readiness gate.
	DependsOn []pulumi.Resource
}

// CertManager is the component.
type CertManager struct {
	pulumi.ResourceState

	Issuers pulumi.StringArrayOutput `pulumi:"issuers"`
	Version pulumi.StringOutput      `pulumi:"version"`
}

var emailRE = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)
var versionRE = regexp.MustCompile(`^v(\d+)\.(\d+)\.(\d+)$`)

// NewCertManager installs cert-manager (when asked) and the ClusterIssuers.
func NewCertManager(ctx *pulumi.Context, name string, args *CertManagerArgs, opts ...pulumi.ResourceOption) (*CertManager, error) {
	if args == nil {
		return nil, fmt.Errorf("certmanager: args are required")
	}
	a := *args
	if a.Version == "" {
		a.Version = DefaultVersion
	}
	if a.IngressClass == "" {
		a.IngressClass = "traefik"
	}
	if !emailRE.MatchString(a.Email) {
		return nil, fmt.Errorf("certmanager: ACME e-mail %q is not an e-mail address (Let's Encrypt sends expiry notices there)", a.Email)
	}
	if !versionRE.MatchString(a.Version) {
		return nil, fmt.Errorf("certmanager: chart version %q must be pinned as vX.Y.Z", a.Version)
	}
	if a.Server != "" && acmeServers[a.ServerFor] == "" {
		return nil, fmt.Errorf("certmanager: ACME server %s replaces the server of issuer %q: use %s or %s", a.Server, a.ServerFor, Staging, Prod)
	}
	if a.CABundle != "" && a.Server == "" {
		return nil, fmt.Errorf("certmanager: an ACME CA bundle without a custom ACME server")
	}
	if a.Chart == "" {
		a.Chart = DefaultChart
	}
	var values map[string]any
	if a.Install {
		var err error
		if values, err = Values(a.Version, a.Images); err != nil {
			return nil, err
		}
		if stacks.ChartIsLocal(a.Chart) {
			if err := checkLocalChart(a.Chart, a.Version); err != nil {
				return nil, err
			}
		}
	}
	c := &CertManager{}
	if err := ctx.RegisterComponentResource("pressroom:certmanager:CertManager", name, c, opts...); err != nil {
		return nil, err
	}
	ready := a.DependsOn
	if a.Install {
		ns, err := corev1.NewNamespace(ctx, "cert-manager", &corev1.NamespaceArgs{
			Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String("cert-manager")},
		}, kube.Child(c, pulumi.DependsOn(a.DependsOn))...)
		if err != nil {
			return nil, fmt.Errorf("cert-manager namespace: %w", err)
		}
		// helm/v3 Release (not Chart v4): it tolerates unknown inputs in
		// preview, runs the chart's hooks, and with SkipAwait=false waits for
		// every Deployment (the webhook included) and, with WaitForJobs, for the
		// startupapicheck Job, which succeeds only once the webhook answers.
		release := &helmv3.ReleaseArgs{
			Name:        pulumi.String("cert-manager"),
			Namespace:   ns.Metadata.Name().Elem(),
			Values:      pulumi.ToMap(values),
			SkipAwait:   pulumi.Bool(false),
			WaitForJobs: pulumi.Bool(true),
			Atomic:      pulumi.Bool(true),
			Timeout:     pulumi.Int(600),
		}
		if stacks.ChartIsLocal(a.Chart) {
			// The directory is the chart: no repository, and its version is
			// the one in its Chart.yaml (checked against Version above).
			release.Chart = pulumi.String(a.Chart)
		} else {
			release.Chart = pulumi.String(ChartName)
			release.Version = pulumi.String(a.Version)
			release.RepositoryOpts = &helmv3.RepositoryOptsArgs{Repo: pulumi.String(a.Chart)}
		}
		rel, err := helmv3.NewRelease(ctx, "cert-manager", release, kube.Child(c)...)
		if err != nil {
			return nil, fmt.Errorf("cert-manager release: %w", err)
		}
		ready = []pulumi.Resource{rel}
	}

	issuers := []string{Staging, Prod}
	for _, n := range issuers {
		acme := pulumi.Map{
			"server":              pulumi.String(acmeServers[n]),
			"email":               pulumi.String(a.Email),
			"privateKeySecretRef": pulumi.Map{"name": pulumi.String(n + "-account")},
			"solvers": pulumi.Array{pulumi.Map{
				"http01": pulumi.Map{"ingress": SolverIngress(a.Version, a.IngressClass)},
			}},
		}
		if n == a.ServerFor && a.Server != "" {
			acme["server"] = pulumi.String(a.Server)
			if a.CABundle != "" {
				acme["caBundle"] = pulumi.String(base64.StdEncoding.EncodeToString([]byte(a.CABundle)))
			}
		}
		if _, err := apiextensions.NewCustomResource(ctx, n, &apiextensions.CustomResourceArgs{
			ApiVersion: pulumi.String("cert-manager.io/v1"),
			Kind:       pulumi.String("ClusterIssuer"),
			Metadata: &metav1.ObjectMetaArgs{
				Name:   pulumi.String(n),
				Labels: kube.Labels(n, "tls"),
			},
			OtherFields: kubernetes.UntypedArgs{"spec": pulumi.Map{"acme": acme}},
		}, kube.Child(c, pulumi.DependsOn(ready))...); err != nil {
			return nil, fmt.Errorf("cluster issuer %s: %w", n, err)
		}
	}
	c.Issuers = pulumi.ToStringArray(issuers).ToStringArrayOutput()
	c.Version = pulumi.String(a.Version).ToStringOutput()
	if err := ctx.RegisterResourceOutputs(c, pulumi.Map{"issuers": c.Issuers, "version": c.Version}); err != nil {
		return nil, err
	}
	return c, nil
}

func requests(cpu, mem string) map[string]any {
	return map[string]any{"requests": map[string]any{"cpu": cpu, "memory": mem}}
}

// crdValuesSince is the first chart version that takes crds.enabled and
// crds.keep; before it the chart takes installCRDs.
var crdValuesSince = [2]int{1, 15}

// ingressClassNameSince is the first cert-manager whose HTTP-01 Ingress
// solver takes ingressClassName; older ones reject it (their CRD schema has
// no such field) and take `class`, set on the solver's Ingress as the
// kubernetes.io/ingress.class annotation, which Traefik honours too.
var ingressClassNameSince = [2]int{1, 12}

// atLeast reports whether version (vX.Y.Z, validated before) is at least since.
func atLeast(version string, since [2]int) bool {
	m := versionRE.FindStringSubmatch(version)
	if m == nil {
		return true
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return major > since[0] || (major == since[0] && minor >= since[1])
}

// SolverIngress is the HTTP-01 solver's ingress settings for the
// cert-manager version the issuers are served by.
func SolverIngress(version, class string) pulumi.Map {
	if atLeast(version, ingressClassNameSince) {
		return pulumi.Map{"ingressClassName": pulumi.String(class)}
	}
	return pulumi.Map{"class": pulumi.String(class)}
}

// Values are the Helm values for chart version (vX.Y.Z) with images, the
// overrides by component (stacks.CertManagerImageKeys). The CRDs are
// installed with the chart: from v1.15 with crds.enabled and crds.keep (kept
// when the release is uninstalled), before it with installCRDs, the only
// switch those charts have; their CRDs are plain templates, so uninstalling
// the release deletes them, and every Certificate with them. An image is set as
// <component>.image.repository and .digest (the controller's as
// image.repository and image.digest), which every chart since v1.11
// renders as repository@digest, ignoring any tag.
func Values(version string, images map[string]string) (map[string]any, error) {
	m := versionRE.FindStringSubmatch(version)
	if m == nil {
		return nil, fmt.Errorf("certmanager: chart version %q must be pinned as vX.Y.Z", version)
	}
	v := map[string]any{
		"startupapicheck": map[string]any{"enabled": true},
		"resources":       requests("50m", "128Mi"),
		"webhook":         map[string]any{"resources": requests("20m", "64Mi")},
		"cainjector":      map[string]any{"resources": requests("20m", "128Mi")},
		"prometheus":      map[string]any{"enabled": false},
	}
	if atLeast(version, crdValuesSince) {
		v["crds"] = map[string]any{"enabled": true, "keep": true}
	} else {
		v["installCRDs"] = true
	}
	known := map[string]bool{}
	for _, k := range stacks.CertManagerImageKeys {
		known[k] = true
	}
	for component, ref := range images {
		if !known[component] {
			return nil, fmt.Errorf("certmanager: image for %q: no such component (have %s)", component, strings.Join(stacks.CertManagerImageKeys, ", "))
		}
		if err := stacks.CheckImageRef(ref); err != nil {
			return nil, fmt.Errorf("certmanager: the %s image %v", component, err)
		}
		repo, digest := stacks.SplitImageRef(ref)
		image := map[string]any{"repository": repo, "digest": digest}
		if component == "controller" {
			v["image"] = image
			continue
		}
		sub, _ := v[component].(map[string]any)
		if sub == nil {
			sub = map[string]any{}
			v[component] = sub
		}
		sub["image"] = image
	}
	return v, nil
}

// checkLocalChart refuses a local chart directory that is not a
// cert-manager chart at version: the values above are chosen by version.
// A relative path is relative to the program directory (infra/).
func checkLocalChart(dir, version string) error {
	raw, err := os.ReadFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		wd, _ := os.Getwd()
		return fmt.Errorf("certmanager: certManager.chart %q is not a chart directory (no Chart.yaml; relative paths start at %s): %v", dir, wd, err)
	}
	var chart struct{ Name, Version string }
	if err := yaml.Unmarshal(raw, &chart); err != nil {
		return fmt.Errorf("certmanager: %s/Chart.yaml is not YAML: %v", dir, err)
	}
	if chart.Name != ChartName {
		return fmt.Errorf("certmanager: the chart in %s is %q, not %s", dir, chart.Name, ChartName)
	}
	if strings.TrimPrefix(chart.Version, "v") != strings.TrimPrefix(version, "v") {
		return fmt.Errorf("certmanager: the chart in %s is version %s but certManager.version is %s: set certManager.version to %s (the Helm values depend on it)", dir, chart.Version, version, chart.Version)
	}
	return nil
}

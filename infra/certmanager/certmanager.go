// Package certmanager installs cert-manager from its Helm chart (optional:
// an existing cluster may already run it) and the two Let's Encrypt
// ClusterIssuers, which are created only once cert-manager is ready.
package certmanager

import (
	"fmt"
	"regexp"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apiextensions"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	helmv3 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/helm/v3"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"pressroom.dev/infra/kube"
)

// Issuer names (the stack config picks one by its short name).
const (
	Staging = "letsencrypt-staging"
	Prod    = "letsencrypt-prod"
)

// DefaultVersion is the pinned cert-manager chart. Since 1.9.1 its HTTP-01
// solver pods satisfy the restricted Pod Security Standard, which the
// pressroom namespace (where they run, beside the Certificate) enforces.
const DefaultVersion = "v1.16.2"

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

// CertManagerArgs configures cert-manager.
type CertManagerArgs struct {
	Install      bool   // false: the cluster already runs cert-manager
	Version      string // chart version, default DefaultVersion
	Email        string // ACME account e-mail
	IngressClass string // default "traefik"
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
var versionRE = regexp.MustCompile(`^v\d+\.\d+\.\d+$`)

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
		rel, err := helmv3.NewRelease(ctx, "cert-manager", &helmv3.ReleaseArgs{
			Name:      pulumi.String("cert-manager"),
			Chart:     pulumi.String("cert-manager"),
			Version:   pulumi.String(a.Version),
			Namespace: ns.Metadata.Name().Elem(),
			RepositoryOpts: &helmv3.RepositoryOptsArgs{
				Repo: pulumi.String("https://charts.jetstack.io"),
			},
			Values: pulumi.Map{
				"crds":            pulumi.Map{"enabled": pulumi.Bool(true), "keep": pulumi.Bool(true)},
				"startupapicheck": pulumi.Map{"enabled": pulumi.Bool(true)},
				"resources":       requests("50m", "128Mi"),
				"webhook":         pulumi.Map{"resources": requests("20m", "64Mi")},
				"cainjector":      pulumi.Map{"resources": requests("20m", "128Mi")},
				"prometheus":      pulumi.Map{"enabled": pulumi.Bool(false)},
			},
			SkipAwait:   pulumi.Bool(false),
			WaitForJobs: pulumi.Bool(true),
			Atomic:      pulumi.Bool(true),
			Timeout:     pulumi.Int(600),
		}, kube.Child(c)...)
		if err != nil {
			return nil, fmt.Errorf("cert-manager release: %w", err)
		}
		ready = []pulumi.Resource{rel}
	}

	issuers := []string{Staging, Prod}
	for _, n := range issuers {
		if _, err := apiextensions.NewCustomResource(ctx, n, &apiextensions.CustomResourceArgs{
			ApiVersion: pulumi.String("cert-manager.io/v1"),
			Kind:       pulumi.String("ClusterIssuer"),
			Metadata: &metav1.ObjectMetaArgs{
				Name:   pulumi.String(n),
				Labels: kube.Labels(n, "tls"),
			},
			OtherFields: kubernetes.UntypedArgs{"spec": pulumi.Map{
				"acme": pulumi.Map{
					"server":              pulumi.String(acmeServers[n]),
					"email":               pulumi.String(a.Email),
					"privateKeySecretRef": pulumi.Map{"name": pulumi.String(n + "-account")},
					"solvers": pulumi.Array{pulumi.Map{
						"http01": pulumi.Map{"ingress": pulumi.Map{"ingressClassName": pulumi.String(a.IngressClass)}},
					}},
				},
			}},
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

func requests(cpu, mem string) pulumi.Map {
	return pulumi.Map{"requests": pulumi.Map{"cpu": pulumi.String(cpu), "memory": pulumi.String(mem)}}
}

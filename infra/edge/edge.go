// Package edge is the public face: the TLS certificate from the chosen
// ClusterIssuer, the HTTPS Ingress (apex /media → media, / → web; www → 301
// apex), the Ingress that refuses the servers' internal routes (probes,
// metrics) to the public, the HTTP Ingress that only redirects to HTTPS, and
// the Traefik middlewares behind them.
//
// HTTP-01 keeps working with the redirect: cert-manager's solver creates its
// own Ingress for /.well-known/acme-challenge/<token>, a longer and therefore
// higher-priority Traefik rule than the "/" of the redirecting Ingress, and
// without its middleware — so challenges and renewals are answered on plain
// HTTP (and the solver's NetworkPolicy lets Traefik reach it: without it the
// challenge gets Traefik's 502 and no certificate is issued or renewed).
package edge

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apiextensions"
	networkingv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/networking/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"pressroom.dev/infra/kube"
	"pressroom.dev/stacks"
)

// Object names.
const (
	TLSSecret      = "pressroom-tls"
	Certificate    = "pressroom-tls"
	HTTPSIngress   = "pressroom"
	HTTPIngress    = "pressroom-http-redirect"
	RedirectHTTPS  = "redirect-https"
	WWWToApex      = "www-to-apex"
	SecurityHeader = "security-headers"
	InternalPaths  = "pressroom-internal"
	InternalOnly   = "internal-only"
)

// InternalPriority ranks the internal-paths routers above every router the
// platform's Ingresses make (Traefik's default priority is the rule's length,
// a few dozen characters; its exact paths never shadow anything else).
const InternalPriority = "10000"

// ServerInternalPaths are the routes every service's server (kit) answers
// for the kubelet and in-cluster scrapers: probes and metrics. /readyz names
// failing dependencies and /metrics counts every route, so the public gets a
// 403 for them instead of web's answer.
var ServerInternalPaths = []string{"/healthz", "/readyz", "/metrics"}

// EdgeArgs configures the edge.
type EdgeArgs struct {
	Namespace    pulumi.StringInput
	Domain       string // apex, e.g. example.com
	Issuer       string // ClusterIssuer name
	IngressClass string // default traefik
	WebService   pulumi.StringInput
	MediaService pulumi.StringInput
	// DependsOn: the ClusterIssuers (and so the cert-manager CRDs).
	DependsOn []pulumi.Resource
}

// Edge is the component.
type Edge struct {
	pulumi.ResourceState

	URL    pulumi.StringOutput `pulumi:"url"`
	WWWURL pulumi.StringOutput `pulumi:"wwwUrl"`
	Issuer pulumi.StringOutput `pulumi:"issuer"`
}

// MiddlewareRef is how a Traefik Ingress annotation names a Middleware CRD.
func MiddlewareRef(ns, name string) string { return ns + "-" + name + "@kubernetescrd" }

// NewEdge creates the certificate, middlewares and Ingresses.
func NewEdge(ctx *pulumi.Context, name string, args *EdgeArgs, opts ...pulumi.ResourceOption) (*Edge, error) {
	if args == nil || args.Namespace == nil || args.WebService == nil || args.MediaService == nil {
		return nil, fmt.Errorf("edge: Namespace, WebService and MediaService are required")
	}
	a := *args
	if !stacks.DNSNameOK(a.Domain) {
		return nil, fmt.Errorf("edge: domain %q is not a lower-case DNS name such as example.com", a.Domain)
	}
	if a.Issuer == "" {
		return nil, fmt.Errorf("edge: Issuer (a ClusterIssuer name) is required")
	}
	if a.IngressClass == "" {
		a.IngressClass = "traefik"
	}
	e := &Edge{}
	if err := ctx.RegisterComponentResource("pressroom:edge:Edge", name, e, opts...); err != nil {
		return nil, err
	}
	ns := a.Namespace
	www := "www." + a.Domain
	crdOpts := kube.Child(e, pulumi.DependsOn(a.DependsOn))

	cert, err := apiextensions.NewCustomResource(ctx, "certificate", &apiextensions.CustomResourceArgs{
		ApiVersion: pulumi.String("cert-manager.io/v1"),
		Kind:       pulumi.String("Certificate"),
		Metadata:   kube.Meta(ns, Certificate, "edge", nil),
		OtherFields: kubernetes.UntypedArgs{"spec": pulumi.Map{
			"secretName": pulumi.String(TLSSecret),
			"dnsNames":   pulumi.ToStringArray([]string{a.Domain, www}),
			// Changing the issuer is the only diff a staging → prod switch makes;
			// cert-manager re-issues when the issuerRef changes.
			"issuerRef": pulumi.Map{
				"name": pulumi.String(a.Issuer), "kind": pulumi.String("ClusterIssuer"), "group": pulumi.String("cert-manager.io"),
			},
			"privateKey": pulumi.Map{"algorithm": pulumi.String("ECDSA"), "size": pulumi.Int(256), "rotationPolicy": pulumi.String("Always")},
		}},
	}, crdOpts...)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}

	middleware := func(mw string, spec pulumi.Map) (pulumi.Resource, error) {
		r, err := apiextensions.NewCustomResource(ctx, "middleware-"+mw, &apiextensions.CustomResourceArgs{
			ApiVersion:  pulumi.String("traefik.io/v1alpha1"),
			Kind:        pulumi.String("Middleware"),
			Metadata:    kube.Meta(ns, mw, "edge", nil),
			OtherFields: kubernetes.UntypedArgs{"spec": spec},
		}, kube.Child(e)...)
		if err != nil {
			return nil, fmt.Errorf("middleware %s: %w", mw, err)
		}
		return r, nil
	}
	redirect, err := middleware(RedirectHTTPS, pulumi.Map{
		"redirectScheme": pulumi.Map{"scheme": pulumi.String("https"), "permanent": pulumi.Bool(true)},
	})
	if err != nil {
		return nil, err
	}
	wwwMW, err := middleware(WWWToApex, pulumi.Map{
		"redirectRegex": pulumi.Map{
			"regex":       pulumi.String(`^https?://www\.` + regexp.QuoteMeta(a.Domain) + `/(.*)`),
			"replacement": pulumi.String("https://" + a.Domain + "/${1}"),
			"permanent":   pulumi.Bool(true),
		},
	})
	if err != nil {
		return nil, err
	}
	// No request reaches Traefik from its own loopback, so this refuses all.
	internalOnly, err := middleware(InternalOnly, pulumi.Map{
		"ipAllowList": pulumi.Map{"sourceRange": pulumi.ToStringArray([]string{"127.0.0.1/32"})},
	})
	if err != nil {
		return nil, err
	}
	headers, err := middleware(SecurityHeader, pulumi.Map{
		"headers": pulumi.Map{
			"stsSeconds":           pulumi.Int(31536000),
			"stsIncludeSubdomains": pulumi.Bool(true),
			"contentTypeNosniff":   pulumi.Bool(true),
			"frameDeny":            pulumi.Bool(true),
			"referrerPolicy":       pulumi.String("strict-origin-when-cross-origin"),
			"permissionsPolicy":    pulumi.String("camera=(), microphone=(), geolocation=()"),
		},
	})
	if err != nil {
		return nil, err
	}

	// The namespace is a constant (kube.Namespace) in the annotations: Traefik
	// resolves middlewares by "<namespace>-<name>".
	refs := func(names ...string) string {
		out := make([]string, len(names))
		for i, n := range names {
			out[i] = MiddlewareRef(kube.Namespace, n)
		}
		return strings.Join(out, ",")
	}
	pathOf := func(kind, p string, svc pulumi.StringInput, port int) networkingv1.HTTPIngressPathArgs {
		return networkingv1.HTTPIngressPathArgs{
			Path: pulumi.String(p), PathType: pulumi.String(kind),
			Backend: &networkingv1.IngressBackendArgs{Service: &networkingv1.IngressServiceBackendArgs{
				Name: svc, Port: &networkingv1.ServiceBackendPortArgs{Number: pulumi.Int(port)},
			}},
		}
	}
	path := func(p string, svc pulumi.StringInput, port int) networkingv1.HTTPIngressPathArgs {
		return pathOf("Prefix", p, svc, port)
	}
	apexPaths := networkingv1.HTTPIngressPathArray{path("/media", a.MediaService, 8083), path("/", a.WebService, 8080)}
	wwwPaths := networkingv1.HTTPIngressPathArray{path("/", a.WebService, 8080)}
	rules := networkingv1.IngressRuleArray{
		networkingv1.IngressRuleArgs{Host: pulumi.String(a.Domain), Http: &networkingv1.HTTPIngressRuleValueArgs{Paths: apexPaths}},
		networkingv1.IngressRuleArgs{Host: pulumi.String(www), Http: &networkingv1.HTTPIngressRuleValueArgs{Paths: wwwPaths}},
	}
	if _, err := networkingv1.NewIngress(ctx, "ingress-https", &networkingv1.IngressArgs{
		Metadata: kube.Meta(ns, HTTPSIngress, "edge", map[string]string{
			"traefik.ingress.kubernetes.io/router.entrypoints": "websecure",
			"traefik.ingress.kubernetes.io/router.tls":         "true",
			// Headers first: the www redirect answers before later middlewares
			// run, and it must carry HSTS too.
			"traefik.ingress.kubernetes.io/router.middlewares": refs(SecurityHeader, WWWToApex),
			kube.SkipAwaitAnnotation:                           "true", // Traefik sets no load-balancer status on K3s' servicelb in every setup
		}),
		Spec: &networkingv1.IngressSpecArgs{
			IngressClassName: pulumi.String(a.IngressClass),
			Tls: networkingv1.IngressTLSArray{networkingv1.IngressTLSArgs{
				Hosts: pulumi.ToStringArray([]string{a.Domain, www}), SecretName: pulumi.String(TLSSecret),
			}},
			Rules: rules,
		},
	}, kube.Child(e, pulumi.DependsOn([]pulumi.Resource{cert, wwwMW, headers}))...); err != nil {
		return nil, fmt.Errorf("https ingress: %w", err)
	}
	// The internal routes of the server behind "/" (web), matched exactly,
	// with a priority above every other router: Traefik ranks routers by the
	// length of their rule by default, and Path(`/readyz`) is exactly as long
	// as PathPrefix(`/`), so the two tied and web answered /readyz (seen on
	// the live node). The middleware refuses the request before web sees it.
	var internal networkingv1.HTTPIngressPathArray
	for _, p := range ServerInternalPaths {
		internal = append(internal, pathOf("Exact", p, a.WebService, 8080))
	}
	if _, err := networkingv1.NewIngress(ctx, "ingress-internal", &networkingv1.IngressArgs{
		Metadata: kube.Meta(ns, InternalPaths, "edge", map[string]string{
			"traefik.ingress.kubernetes.io/router.entrypoints": "websecure",
			"traefik.ingress.kubernetes.io/router.tls":         "true",
			"traefik.ingress.kubernetes.io/router.middlewares": refs(InternalOnly),
			"traefik.ingress.kubernetes.io/router.priority":    InternalPriority,
			kube.SkipAwaitAnnotation:                           "true",
		}),
		Spec: &networkingv1.IngressSpecArgs{
			IngressClassName: pulumi.String(a.IngressClass),
			Tls: networkingv1.IngressTLSArray{networkingv1.IngressTLSArgs{
				Hosts: pulumi.ToStringArray([]string{a.Domain, www}), SecretName: pulumi.String(TLSSecret),
			}},
			Rules: networkingv1.IngressRuleArray{
				networkingv1.IngressRuleArgs{Host: pulumi.String(a.Domain), Http: &networkingv1.HTTPIngressRuleValueArgs{Paths: internal}},
				networkingv1.IngressRuleArgs{Host: pulumi.String(www), Http: &networkingv1.HTTPIngressRuleValueArgs{Paths: internal}},
			},
		},
	}, kube.Child(e, pulumi.DependsOn([]pulumi.Resource{cert, internalOnly}))...); err != nil {
		return nil, fmt.Errorf("internal-paths ingress: %w", err)
	}
	if _, err := networkingv1.NewIngress(ctx, "ingress-http", &networkingv1.IngressArgs{
		Metadata: kube.Meta(ns, HTTPIngress, "edge", map[string]string{
			"traefik.ingress.kubernetes.io/router.entrypoints": "web",
			"traefik.ingress.kubernetes.io/router.middlewares": refs(RedirectHTTPS),
			kube.SkipAwaitAnnotation:                           "true",
		}),
		Spec: &networkingv1.IngressSpecArgs{
			IngressClassName: pulumi.String(a.IngressClass),
			Rules: networkingv1.IngressRuleArray{
				networkingv1.IngressRuleArgs{Host: pulumi.String(a.Domain), Http: &networkingv1.HTTPIngressRuleValueArgs{Paths: wwwPaths}},
				networkingv1.IngressRuleArgs{Host: pulumi.String(www), Http: &networkingv1.HTTPIngressRuleValueArgs{Paths: wwwPaths}},
			},
		},
	}, kube.Child(e, pulumi.DependsOn([]pulumi.Resource{redirect}))...); err != nil {
		return nil, fmt.Errorf("http ingress: %w", err)
	}

	e.URL = pulumi.String("https://" + a.Domain).ToStringOutput()
	e.WWWURL = pulumi.String("https://" + www).ToStringOutput()
	e.Issuer = pulumi.String(a.Issuer).ToStringOutput()
	if err := ctx.RegisterResourceOutputs(e, pulumi.Map{"url": e.URL, "wwwUrl": e.WWWURL, "issuer": e.Issuer}); err != nil {
		return nil, err
	}
	return e, nil
}

// Package netpol is the namespace's network contract: a default-deny for
// ingress and egress, DNS for every pod, and one table of the real flows from
// which every workload's own NetworkPolicy is derived. The reachability test
// evaluates the generated policies against its own table of intended flows.
package netpol

import (
	"fmt"
	"sort"

	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	networkingv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/networking/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"pressroom.dev/infra/kube"
)

// Peers outside the namespace, and the ACME solver pods cert-manager creates in it.
const (
	Traefik    = "traefik"     // the K3s ingress controller in kube-system
	DNS        = "dns"         // CoreDNS in kube-system
	Internet   = "internet"    // public addresses (Resend, the OIDC provider)
	ACMESolver = "acme-solver" // cert-manager's HTTP-01 solver pods
)

// ACMESolverLabel marks the solver pods cert-manager starts for HTTP-01.
const ACMESolverLabel = "acme.cert-manager.io/http01-solver"

// TraefikLabel is the label value of the K3s Traefik pods (app.kubernetes.io/name).
const TraefikLabel = "traefik"

// privateRanges are excluded from the internet peer so "egress to HTTPS on
// the internet" never opens a path to another pod or the node network.
var privateRanges = []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"}

// Flow is one allowed connection: From may open TCP connections to To:Port.
type Flow struct {
	From, To string
	Port     int
}

// Flows are all the real flows of the platform (DNS aside: every pod may
// resolve names). Every workload's policy is generated from this table.
var Flows = []Flow{
	{Traefik, "web", 8080},
	{Traefik, "media", 8083},
	{Traefik, ACMESolver, 8089},
	{"web", "auth", 8081},
	{"web", "article", 8082},
	{"web", "media", 8083},
	{"auth", "postgres", 5432},
	{"auth", "redis", 6379},
	{"article", "postgres", 5432},
	{"article", "nats", 4222},
	{"media", "postgres", 5432},
	{"notification", "postgres", 5432},
	{"notification", "nats", 4222},
	{"backup", "postgres", 5432},
	{"auth", "jaeger", 4317},
	{"article", "jaeger", 4317},
	{"media", "jaeger", 4317},
	{"notification", "jaeger", 4317},
	{"web", "jaeger", 4317},
	{"auth", Internet, 443},
	{"notification", Internet, 443},
}

// peer is the NetworkPolicy peer that matches an endpoint name.
func peer(name string) networkingv1.NetworkPolicyPeerArgs {
	switch name {
	case Traefik:
		return networkingv1.NetworkPolicyPeerArgs{
			NamespaceSelector: nsSelector("kube-system"),
			PodSelector:       &metav1.LabelSelectorArgs{MatchLabels: pulumi.StringMap{kube.NameLabel: pulumi.String(TraefikLabel)}},
		}
	case DNS:
		return networkingv1.NetworkPolicyPeerArgs{
			NamespaceSelector: nsSelector("kube-system"),
			PodSelector:       &metav1.LabelSelectorArgs{MatchLabels: pulumi.StringMap{"k8s-app": pulumi.String("kube-dns")}},
		}
	case Internet:
		return networkingv1.NetworkPolicyPeerArgs{IpBlock: &networkingv1.IPBlockArgs{
			Cidr: pulumi.String("0.0.0.0/0"), Except: pulumi.ToStringArray(privateRanges),
		}}
	default:
		return networkingv1.NetworkPolicyPeerArgs{PodSelector: PodSelector(name)}
	}
}

func nsSelector(ns string) *metav1.LabelSelectorArgs {
	return &metav1.LabelSelectorArgs{MatchLabels: pulumi.StringMap{"kubernetes.io/metadata.name": pulumi.String(ns)}}
}

// PodSelector selects the pods of a workload of the namespace.
func PodSelector(name string) *metav1.LabelSelectorArgs {
	if name == ACMESolver {
		return &metav1.LabelSelectorArgs{MatchLabels: pulumi.StringMap{ACMESolverLabel: pulumi.String("true")}}
	}
	return &metav1.LabelSelectorArgs{MatchLabels: kube.Selector(name)}
}

func tcp(port int) networkingv1.NetworkPolicyPortArray {
	return networkingv1.NetworkPolicyPortArray{networkingv1.NetworkPolicyPortArgs{
		Protocol: pulumi.String("TCP"), Port: pulumi.Int(port),
	}}
}

// Spec is the policy of one workload: who may reach it (ingress) and what it
// may reach (egress), straight from Flows. Anything else stays denied.
func Spec(workload string) (*networkingv1.NetworkPolicySpecArgs, error) {
	ingress := networkingv1.NetworkPolicyIngressRuleArray{}
	egress := networkingv1.NetworkPolicyEgressRuleArray{}
	known := false
	for _, f := range sorted() {
		if f.To == workload {
			known = true
			ingress = append(ingress, networkingv1.NetworkPolicyIngressRuleArgs{
				From: networkingv1.NetworkPolicyPeerArray{peer(f.From)}, Ports: tcp(f.Port),
			})
		}
		if f.From == workload {
			known = true
			egress = append(egress, networkingv1.NetworkPolicyEgressRuleArgs{
				To: networkingv1.NetworkPolicyPeerArray{peer(f.To)}, Ports: tcp(f.Port),
			})
		}
	}
	if !known {
		return nil, fmt.Errorf("netpol: %q appears in no flow; add its flows to netpol.Flows", workload)
	}
	return &networkingv1.NetworkPolicySpecArgs{
		PodSelector: PodSelector(workload),
		PolicyTypes: pulumi.StringArray{pulumi.String("Ingress"), pulumi.String("Egress")},
		Ingress:     ingress,
		Egress:      egress,
	}, nil
}

// sorted returns Flows in a stable order so the generated specs never diff.
func sorted() []Flow {
	out := append([]Flow(nil), Flows...)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].From != out[j].From {
			return out[i].From < out[j].From
		}
		if out[i].To != out[j].To {
			return out[i].To < out[j].To
		}
		return out[i].Port < out[j].Port
	})
	return out
}

// NewPolicy creates the NetworkPolicy named after a workload.
func NewPolicy(ctx *pulumi.Context, ns pulumi.StringInput, workload string, opts ...pulumi.ResourceOption) (*networkingv1.NetworkPolicy, error) {
	spec, err := Spec(workload)
	if err != nil {
		return nil, err
	}
	return networkingv1.NewNetworkPolicy(ctx, "netpol-"+workload, &networkingv1.NetworkPolicyArgs{
		Metadata: kube.Meta(ns, "allow-"+workload, "network-policy", nil),
		Spec:     spec,
	}, opts...)
}

// Baseline is the namespace-wide part of the contract.
type Baseline struct {
	pulumi.ResourceState

	// Names of the policies it created.
	Names pulumi.StringArrayOutput `pulumi:"names"`
}

// BaselineArgs says where the baseline goes.
type BaselineArgs struct {
	Namespace pulumi.StringInput // the Namespace resource's name output
}

// NewBaseline creates default-deny (ingress and egress), DNS egress for every
// pod, and the ACME solver's ingress from Traefik (without it certificates
// neither issue nor renew).
func NewBaseline(ctx *pulumi.Context, name string, args *BaselineArgs, opts ...pulumi.ResourceOption) (*Baseline, error) {
	if args == nil || args.Namespace == nil {
		return nil, fmt.Errorf("netpol: BaselineArgs.Namespace is required")
	}
	ns := args.Namespace
	b := &Baseline{}
	if err := ctx.RegisterComponentResource("pressroom:netpol:Baseline", name, b, opts...); err != nil {
		return nil, err
	}
	child := kube.Child(b)
	all := &metav1.LabelSelectorArgs{}
	if _, err := networkingv1.NewNetworkPolicy(ctx, "netpol-default-deny", &networkingv1.NetworkPolicyArgs{
		Metadata: kube.Meta(ns, "default-deny", "network-policy", nil),
		Spec: &networkingv1.NetworkPolicySpecArgs{
			PodSelector: all,
			PolicyTypes: pulumi.StringArray{pulumi.String("Ingress"), pulumi.String("Egress")},
		},
	}, child...); err != nil {
		return nil, fmt.Errorf("default-deny policy: %w", err)
	}
	dns := peer(DNS)
	if _, err := networkingv1.NewNetworkPolicy(ctx, "netpol-allow-dns", &networkingv1.NetworkPolicyArgs{
		Metadata: kube.Meta(ns, "allow-dns", "network-policy", nil),
		Spec: &networkingv1.NetworkPolicySpecArgs{
			PodSelector: all,
			PolicyTypes: pulumi.StringArray{pulumi.String("Egress")},
			Egress: networkingv1.NetworkPolicyEgressRuleArray{networkingv1.NetworkPolicyEgressRuleArgs{
				To: networkingv1.NetworkPolicyPeerArray{dns},
				Ports: networkingv1.NetworkPolicyPortArray{
					networkingv1.NetworkPolicyPortArgs{Protocol: pulumi.String("UDP"), Port: pulumi.Int(53)},
					networkingv1.NetworkPolicyPortArgs{Protocol: pulumi.String("TCP"), Port: pulumi.Int(53)},
				},
			}},
		},
	}, child...); err != nil {
		return nil, fmt.Errorf("dns policy: %w", err)
	}
	if _, err := NewPolicy(ctx, ns, ACMESolver, child...); err != nil {
		return nil, fmt.Errorf("acme solver policy: %w", err)
	}
	b.Names = pulumi.ToStringArray([]string{"default-deny", "allow-dns", "allow-" + ACMESolver}).ToStringArrayOutput()
	if err := ctx.RegisterResourceOutputs(b, pulumi.Map{"names": b.Names}); err != nil {
		return nil, err
	}
	return b, nil
}

package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"pressroom.dev/infra/naming"
	"pressroom.dev/stacks"
)

// Kube is what the platform layer gets in every mode: a provider whose
// kubeconfig resolves only once the cluster is ready for the platform
// (WaitReady: /readyz, a Ready node, the CRDs it needs), and the resources
// to depend on.
type Kube struct {
	Provider   *kubernetes.Provider
	DependsOn  []pulumi.Resource
	Kubeconfig pulumi.StringOutput // secret; "" in render mode
}

// NewKube builds the Kubernetes provider for cfg's cluster mode. cl is the
// cloud cluster (digitalocean mode only, nil otherwise); ready is the
// readiness gate (WaitReady in the real program).
func NewKube(ctx *pulumi.Context, cfg *stacks.Config, cl *Cluster, ready ReadyFunc) (*Kube, error) {
	id := pulumi.String(naming.ClusterIdentifier(cfg.Stack))
	k := &Kube{}
	args := &kubernetes.ProviderArgs{
		// A stable identity: a new kubeconfig (cert renewal, new IP) must
		// not look like a new cluster and replace every object.
		ClusterIdentifier:     id,
		EnableServerSideApply: pulumi.Bool(true),
	}
	switch cfg.Cluster.Mode {
	case stacks.ModeDigitalOcean:
		if cl == nil {
			return nil, fmt.Errorf("cluster: digitalocean mode needs the cloud cluster")
		}
		k.Kubeconfig = gate(ctx, cl.Kubeconfig, cfg, ready)
		k.DependsOn = cl.Ready
		args.Kubeconfig = k.Kubeconfig
	case stacks.ModeExisting:
		k.Kubeconfig = gate(ctx, cfg.Secrets.Kubeconfig, cfg, ready)
		args.Kubeconfig = k.Kubeconfig
	case stacks.ModeRender:
		k.Kubeconfig = pulumi.String("").ToStringOutput()
		args.RenderYamlToDirectory = pulumi.String(cfg.Cluster.RenderDir)
	default:
		return nil, fmt.Errorf("cluster: unknown mode %q", cfg.Cluster.Mode)
	}
	p, err := kubernetes.NewProvider(ctx, naming.Prefix(cfg.Stack)+"-k8s", args, pulumi.DependsOn(k.DependsOn))
	if err != nil {
		return nil, fmt.Errorf("cluster: kubernetes provider: %w", err)
	}
	k.Provider = p
	k.DependsOn = append(k.DependsOn, p)
	return k, nil
}

// gate resolves kubeconfig only after the cluster is ready for the
// platform: the API server, a Ready node and the CRDs the platform creates
// objects of (NeedsFor). Previews skip the wait: nothing is created and the
// cluster may not exist yet.
func gate(ctx *pulumi.Context, kubeconfig pulumi.StringOutput, cfg *stacks.Config, ready ReadyFunc) pulumi.StringOutput {
	timeout := time.Duration(cfg.Cluster.ReadyTimeout) * time.Second
	needs := NeedsFor(cfg)
	return pulumi.ToSecret(kubeconfig.ApplyTWithContext(ctx.Context(), func(c context.Context, kc string) (string, error) {
		if ctx.DryRun() || ready == nil {
			return kc, nil
		}
		if err := ready(c, kc, needs, timeout); err != nil {
			return "", err
		}
		return kc, nil
	})).(pulumi.StringOutput)
}

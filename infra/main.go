// Command infra is the pressroom Pulumi program: it reads the typed stack
// configuration and composes the cluster layer (cloud or not) and the
// platform on top of it.
package main

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"pressroom.dev/infra/cluster"
	"pressroom.dev/infra/dns"
	"pressroom.dev/infra/network"
	"pressroom.dev/infra/platform"
	"pressroom.dev/infra/upgrades"
	"pressroom.dev/stacks"
)

func main() {
	pulumi.Run(func(ctx *pulumi.Context) error {
		out, err := deploy(ctx, cluster.Live)
		for k, v := range out {
			ctx.Export(k, v)
		}
		return err
	})
}

// deploy composes the stack and returns its stack outputs; probes ask the
// live API server (tests pass their own).
func deploy(ctx *pulumi.Context, probes cluster.Probes) (map[string]pulumi.Input, error) {
	out := map[string]pulumi.Input{}
	cfg, err := stacks.FromPulumi(ctx)
	if err != nil {
		return nil, err
	}
	var cl *cluster.Cluster
	if cfg.CloudEnabled() {
		if cl, err = cloud(ctx, cfg, out); err != nil {
			return nil, err
		}
	}
	kube, err := cluster.NewKube(ctx, cfg, cl, probes.Ready)
	if err != nil {
		return nil, err
	}
	out["url"] = pulumi.String(cfg.URL())
	out["wwwUrl"] = pulumi.String(cfg.WWWURL())
	if cfg.Cluster.Mode != stacks.ModeRender {
		out["kubeconfig"] = kube.Kubeconfig
	}
	if err := platformLayer(ctx, cfg, kube, out); err != nil {
		return out, err
	}
	return out, upgradesLayer(ctx, cfg, kube, probes.NodeVersions, out)
}

// cloud declares the DigitalOcean and Cloudflare resources.
func cloud(ctx *pulumi.Context, cfg *stacks.Config, out map[string]pulumi.Input) (*cluster.Cluster, error) {
	c := cfg.Cluster
	net, err := network.NewNetwork(ctx, "network", &network.NetworkArgs{
		Stack:         cfg.Stack,
		Region:        c.Region,
		VPCCIDR:       c.VPCCIDR,
		AdminCIDRs:    c.AdminCIDRs,
		SSHPublicKeys: c.SSHPublicKeys,
		HA:            c.Nodes > 1,
	})
	if err != nil {
		return nil, err
	}
	cl, err := cluster.NewCluster(ctx, "cluster", &cluster.ClusterArgs{
		Stack:        cfg.Stack,
		Domain:       cfg.Domain,
		Region:       c.Region,
		Size:         c.Size,
		Image:        c.Image,
		Nodes:        c.Nodes,
		K3sVersion:   c.K3sVersion,
		VolumeSizeGB: c.VolumeSizeGB,
		APIHost:      c.APIHost,
		Protect:      cfg.Protect,
		Network:      net,
	})
	if err != nil {
		return nil, err
	}
	if _, err := dns.NewDNS(ctx, "dns", &dns.DNSArgs{
		ZoneID: cfg.Cloudflare.ZoneID,
		Domain: cfg.Domain,
		IPs:    cl.PublicIPs(),
	}); err != nil {
		return nil, err
	}
	out["ip"] = cl.IP
	out["nodeIps"] = cl.NodeIPs
	if len(c.SSHPublicKeys) == 0 {
		out["sshPrivateKey"] = net.GeneratedPrivateKey
		out["sshCommand"] = pulumi.Sprintf("pulumi stack output --show-secrets sshPrivateKey > pressroom-%s.key && chmod 600 pressroom-%s.key && ssh -i pressroom-%s.key root@%s", cfg.Stack, cfg.Stack, cfg.Stack, cl.IP)
	} else {
		out["sshCommand"] = pulumi.Sprintf("ssh root@%s", cl.IP)
	}
	return cl, nil
}

// platformLayer puts the platform on the cluster's Kubernetes provider; it
// waits for the cluster's readiness gate.
func platformLayer(ctx *pulumi.Context, cfg *stacks.Config, kube *cluster.Kube, out map[string]pulumi.Input) error {
	p, err := platform.NewPlatform(ctx, "platform", platform.ArgsFromConfig(cfg, kube.DependsOn...), pulumi.Provider(kube.Provider))
	if err != nil {
		return err
	}
	out["images"] = p.Images
	out["issuer"] = p.Issuer
	out["jwtKeyIds"] = p.JWTKeyIDs
	return nil
}

// upgradesLayer keeps the K3s servers at cluster.k3sVersion (when enabled).
// On `up` the nodes' versions are read first, so a downgrade or a skipped
// minor version is refused before the Plan changes; a preview shows the change.
func upgradesLayer(ctx *pulumi.Context, cfg *stacks.Config, kube *cluster.Kube, nodeVersions cluster.NodeVersionsFunc, out map[string]pulumi.Input) error {
	if !cfg.Upgrades.Enabled {
		return nil
	}
	var running pulumi.StringArrayInput
	if !ctx.DryRun() && nodeVersions != nil && cfg.Cluster.Mode != stacks.ModeRender {
		// Versions are not secret, though the kubeconfig they come from is.
		running = pulumi.Unsecret(kube.Kubeconfig.ApplyTWithContext(ctx.Context(), nodeVersions)).(pulumi.StringArrayOutput)
	}
	u, err := upgrades.NewK3sUpgrades(ctx, "k3s-upgrades", &upgrades.K3sUpgradesArgs{
		K3sVersion:        cfg.Cluster.K3sVersion,
		Install:           cfg.Upgrades.Install,
		ControllerVersion: cfg.Upgrades.ControllerVersion,
		RunningVersions:   running,
		DependsOn:         kube.DependsOn,
	}, pulumi.Provider(kube.Provider))
	if err != nil {
		return err
	}
	out["k3sVersion"] = u.K3sVersion
	out["upgradePlan"] = u.Plan
	return nil
}

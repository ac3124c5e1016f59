// Package network declares the stack's private network and who may reach
// the nodes: a VPC, SSH keys, a tag and a Cloud Firewall attached by tag.
package network

import (
	"fmt"

	"github.com/pulumi/pulumi-digitalocean/sdk/v4/go/digitalocean"
	"github.com/pulumi/pulumi-tls/sdk/v5/go/tls"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"pressroom.dev/infra/naming"
)

// NetworkArgs configures the network.
type NetworkArgs struct {
	Stack         string
	Region        string
	VPCCIDR       string
	AdminCIDRs    []string // SSH (22) and Kubernetes API (6443)
	SSHPublicKeys []string // empty: a key is generated
	HA            bool     // open the etcd ports inside the VPC
}

// Network is the component.
type Network struct {
	pulumi.ResourceState

	VPCID        pulumi.StringOutput      `pulumi:"vpcId"`
	Tag          pulumi.StringOutput      `pulumi:"tag"`
	Fingerprints pulumi.StringArrayOutput `pulumi:"sshKeyFingerprints"`
	// GeneratedPrivateKey is the OpenSSH private key when no key was given
	// (secret), otherwise "".
	GeneratedPrivateKey pulumi.StringOutput `pulumi:"generatedSshPrivateKey"`

	Firewall *digitalocean.Firewall
	VPC      *digitalocean.Vpc
}

// Rule is one firewall rule: protocol, port range and peer CIDRs.
type Rule struct {
	Protocol string // tcp | udp | icmp
	Ports    string // "22", "2379-2380", "1-65535"; "" for icmp
	CIDRs    []string
}

var anywhere = []string{"0.0.0.0/0", "::/0"}

// InboundRules are exactly what may reach a node: SSH and the API from the
// admin networks, HTTP(S) from anywhere, and cluster traffic only from the VPC.
func InboundRules(admin []string, vpc string, ha bool) []Rule {
	rules := []Rule{
		{"tcp", "22", admin},
		{"tcp", "6443", admin},
		{"tcp", "80", anywhere},
		{"tcp", "443", anywhere},
		{"icmp", "", anywhere},
		// node to node inside the VPC: API for joining servers, kubelet, flannel VXLAN
		{"tcp", "6443", []string{vpc}},
		{"tcp", "10250", []string{vpc}},
		{"udp", "8472", []string{vpc}},
	}
	if ha {
		rules = append(rules, Rule{"tcp", "2379-2380", []string{vpc}}) // embedded etcd client/peer
	}
	return rules
}

// OutboundRules let nodes reach anything (package mirrors, image registries, ACME).
func OutboundRules() []Rule {
	return []Rule{{"tcp", "1-65535", anywhere}, {"udp", "1-65535", anywhere}, {"icmp", "", anywhere}}
}

// New declares the network.
func NewNetwork(ctx *pulumi.Context, name string, args *NetworkArgs, opts ...pulumi.ResourceOption) (*Network, error) {
	if args == nil || args.Stack == "" || args.Region == "" || args.VPCCIDR == "" {
		return nil, fmt.Errorf("network: Stack, Region and VPCCIDR are required")
	}
	if len(args.AdminCIDRs) == 0 {
		return nil, fmt.Errorf("network: at least one admin CIDR is required (pressroom:cluster.adminCidrs)")
	}
	n := &Network{}
	if err := ctx.RegisterComponentResource("pressroom:cloud:Network", name, n, opts...); err != nil {
		return nil, err
	}
	child := pulumi.Parent(n)

	vpc, err := digitalocean.NewVpc(ctx, name+"-vpc", &digitalocean.VpcArgs{
		Name:        pulumi.String(naming.Name(args.Stack, "vpc")),
		Region:      pulumi.String(args.Region),
		IpRange:     pulumi.String(args.VPCCIDR),
		Description: pulumi.String("pressroom " + args.Stack + " nodes"),
	}, child)
	if err != nil {
		return nil, fmt.Errorf("network: vpc: %w", err)
	}
	tag, err := digitalocean.NewTag(ctx, name+"-tag", &digitalocean.TagArgs{
		Name: pulumi.String(naming.Tag(args.Stack)),
	}, child)
	if err != nil {
		return nil, fmt.Errorf("network: tag: %w", err)
	}

	keys := args.SSHPublicKeys
	generated := pulumi.ToSecret(pulumi.String("")).(pulumi.StringOutput)
	var fps pulumi.StringArray
	if len(keys) == 0 {
		k, err := tls.NewPrivateKey(ctx, name+"-ssh", &tls.PrivateKeyArgs{Algorithm: pulumi.String("ED25519")}, child)
		if err != nil {
			return nil, fmt.Errorf("network: generated ssh key: %w", err)
		}
		generated = pulumi.ToSecret(k.PrivateKeyOpenssh).(pulumi.StringOutput)
		key, err := digitalocean.NewSshKey(ctx, name+"-ssh-generated", &digitalocean.SshKeyArgs{
			Name:      pulumi.String(naming.Name(args.Stack, "generated")),
			PublicKey: k.PublicKeyOpenssh,
		}, child)
		if err != nil {
			return nil, fmt.Errorf("network: ssh key: %w", err)
		}
		fps = append(fps, key.Fingerprint)
	}
	for i, pub := range keys {
		key, err := digitalocean.NewSshKey(ctx, fmt.Sprintf("%s-ssh-%d", name, i+1), &digitalocean.SshKeyArgs{
			Name:      pulumi.String(naming.Name(args.Stack, "admin", fmt.Sprint(i+1))),
			PublicKey: pulumi.String(pub),
		}, child)
		if err != nil {
			return nil, fmt.Errorf("network: ssh key %d: %w", i+1, err)
		}
		fps = append(fps, key.Fingerprint)
	}

	var in digitalocean.FirewallInboundRuleArray
	for _, r := range InboundRules(args.AdminCIDRs, args.VPCCIDR, args.HA) {
		in = append(in, digitalocean.FirewallInboundRuleArgs{
			Protocol:        pulumi.String(r.Protocol),
			PortRange:       portRange(r.Ports),
			SourceAddresses: pulumi.ToStringArray(r.CIDRs),
		})
	}
	var out digitalocean.FirewallOutboundRuleArray
	for _, r := range OutboundRules() {
		out = append(out, digitalocean.FirewallOutboundRuleArgs{
			Protocol:             pulumi.String(r.Protocol),
			PortRange:            portRange(r.Ports),
			DestinationAddresses: pulumi.ToStringArray(r.CIDRs),
		})
	}
	fw, err := digitalocean.NewFirewall(ctx, name+"-firewall", &digitalocean.FirewallArgs{
		Name:          pulumi.String(naming.Name(args.Stack, "firewall")),
		Tags:          pulumi.StringArray{tag.Name},
		InboundRules:  in,
		OutboundRules: out,
	}, child)
	if err != nil {
		return nil, fmt.Errorf("network: firewall: %w", err)
	}

	n.VPC, n.Firewall = vpc, fw
	n.VPCID = vpc.ID().ToStringOutput()
	n.Tag = tag.Name
	n.Fingerprints = fps.ToStringArrayOutput()
	n.GeneratedPrivateKey = generated
	return n, ctx.RegisterResourceOutputs(n, pulumi.Map{
		"vpcId":              n.VPCID,
		"tag":                n.Tag,
		"sshKeyFingerprints": n.Fingerprints,
	})
}

func portRange(p string) pulumi.StringPtrInput {
	if p == "" {
		return nil
	}
	return pulumi.String(p)
}

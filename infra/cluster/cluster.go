// Package cluster declares the K3s servers on DigitalOcean (droplets,
// reserved IP, data volume, project), the cluster's certificate authorities,
// the admin kubeconfig, and the Kubernetes provider for every cluster mode.
package cluster

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/pulumi/pulumi-digitalocean/sdk/v4/go/digitalocean"
	"github.com/pulumi/pulumi-random/sdk/v4/go/random"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"pressroom.dev/infra/naming"
	"pressroom.dev/infra/network"
)

// ClusterArgs configures the cloud cluster.
type ClusterArgs struct {
	Stack        string
	Domain       string
	Region       string
	Size         string
	Image        string
	Nodes        int // 1, or 3 (embedded etcd)
	K3sVersion   string
	VolumeSizeGB int
	APIHost      string // extra TLS SAN
	Protect      bool   // prod: volume and droplets cannot be deleted or replaced by `pulumi up`
	Network      *network.Network
}

// Cluster is the component.
type Cluster struct {
	pulumi.ResourceState

	IP         pulumi.StringOutput      `pulumi:"ip"`         // reserved IP of the first server
	NodeIPs    pulumi.StringArrayOutput `pulumi:"nodeIps"`    // public IPs, first = reserved IP
	Kubeconfig pulumi.StringOutput      `pulumi:"kubeconfig"` // admin, secret

	Droplets []*digitalocean.Droplet
	Volume   *digitalocean.Volume
	PKI      *PKI
	// Ready lists the resources the API server depends on (for DependsOn).
	Ready []pulumi.Resource
}

// New declares the servers and computes the admin kubeconfig.
func NewCluster(ctx *pulumi.Context, name string, args *ClusterArgs, opts ...pulumi.ResourceOption) (*Cluster, error) {
	if err := args.check(); err != nil {
		return nil, err
	}
	c := &Cluster{}
	if err := ctx.RegisterComponentResource("pressroom:cloud:Cluster", name, c, opts...); err != nil {
		return nil, err
	}
	child := pulumi.Parent(c)
	protect := pulumi.Protect(args.Protect)

	// The CAs, the service-account key and the token cannot be regenerated
	// for a running cluster: a new one locks every later `up` out of it.
	pki, err := NewPKI(ctx, name, child, protect)
	if err != nil {
		return nil, err
	}
	c.PKI = pki
	token, err := random.NewRandomPassword(ctx, name+"-token", &random.RandomPasswordArgs{
		Length:  pulumi.Int(48),
		Special: pulumi.Bool(false),
	}, child, protect)
	if err != nil {
		return nil, fmt.Errorf("cluster: token: %w", err)
	}

	// Created unassigned first: its address goes into the API certificate.
	rip, err := digitalocean.NewReservedIp(ctx, name+"-ip", &digitalocean.ReservedIpArgs{
		Region: pulumi.String(args.Region),
	}, child, protect)
	if err != nil {
		return nil, fmt.Errorf("cluster: reserved ip: %w", err)
	}
	volName := naming.Name(args.Stack, "data")
	vol, err := digitalocean.NewVolume(ctx, name+"-data", &digitalocean.VolumeArgs{
		Name:                  pulumi.String(volName),
		Region:                pulumi.String(args.Region),
		Size:                  pulumi.Int(args.VolumeSizeGB),
		InitialFilesystemType: pulumi.String("ext4"),
		Description:           pulumi.String("pressroom " + args.Stack + " data: K3s local-path volumes (Postgres, Redis, NATS, media)"),
	}, child, protect)
	if err != nil {
		return nil, fmt.Errorf("cluster: volume: %w", err)
	}
	c.Volume = vol

	files := pki.Files()
	sans := pulumi.All(rip.IpAddress).ApplyT(func(v []any) []string {
		return []string{v[0].(string), args.APIHost}
	}).(pulumi.StringArrayOutput)

	// Replacing a server would lose its etcd member and (first node) detach
	// the data volume, so bootstrap-only inputs never trigger a replacement:
	// user data, image and SSH keys are read at first boot only. K3s is
	// upgraded in place (infra/OPERATIONS.md, "Replace a node").
	nodeOpts := []pulumi.ResourceOption{child, protect, pulumi.IgnoreChanges([]string{"userData", "image", "sshKeys"})}
	tags := pulumi.StringArray{args.Network.Tag, pulumi.String("k3s-server")}
	if !Pinned(args.K3sVersion) {
		_ = ctx.Log.Warn(fmt.Sprintf("K3s %s has no checksums pinned in infra/cluster/release.go: new servers check its binary only against the release's own sha256sum-amd64.txt; pin it before the next up", args.K3sVersion), nil)
	}

	var joinURL pulumi.StringOutput
	for i := 0; i < args.Nodes; i++ {
		// The first server always starts embedded etcd, even alone, so
		// servers can join it later (a single K3s server on SQLite cannot
		// take them).
		spec := NodeSpec{Index: i, K3sVersion: args.K3sVersion, ClusterInit: i == 0}
		var volumeIDs pulumi.StringArrayInput
		dopts := nodeOpts
		if i == 0 {
			spec.VolumeName = volName
			volumeIDs = pulumi.StringArray{vol.ID().ToStringOutput()}
			// DigitalOcean attaches a volume to one droplet at a time: a
			// replacement must release it before the new droplet claims it.
			dopts = append(append([]pulumi.ResourceOption{}, nodeOpts...), pulumi.DeleteBeforeReplace(true))
		}
		inputs := []any{token.Result, files, sans, rip.IpAddress}
		if i > 0 {
			inputs = append(inputs, joinURL)
		}
		userData := pulumi.ToSecret(pulumi.All(inputs...).ApplyT(func(v []any) (string, error) {
			s := spec
			s.Token = v[0].(string)
			s.CAFiles = v[1].(map[string]string)
			s.TLSSANs = v[2].([]string)
			if s.Index == 0 {
				s.ExternalIP = v[3].(string) // DNS gives the reserved IP for the first server
			}
			if len(v) > 4 {
				s.JoinURL = v[4].(string)
			}
			return UserData(s)
		})).(pulumi.StringOutput)
		d, err := digitalocean.NewDroplet(ctx, fmt.Sprintf("%s-node-%d", name, i+1), &digitalocean.DropletArgs{
			Name:       pulumi.String(naming.Node(args.Stack, i)),
			Region:     pulumi.String(args.Region),
			Size:       pulumi.String(args.Size),
			Image:      pulumi.String(args.Image),
			VpcUuid:    args.Network.VPCID,
			SshKeys:    args.Network.Fingerprints,
			Tags:       tags,
			Monitoring: pulumi.Bool(true),
			UserData:   userData,
			VolumeIds:  volumeIDs,
		}, dopts...)
		if err != nil {
			return nil, fmt.Errorf("cluster: node %d: %w", i+1, err)
		}
		if i == 0 {
			joinURL = d.Ipv4AddressPrivate.ApplyT(func(ip string) string {
				return "https://" + ip + ":6443"
			}).(pulumi.StringOutput)
		}
		c.Droplets = append(c.Droplets, d)
	}

	first := c.Droplets[0]
	assign, err := digitalocean.NewReservedIpAssignment(ctx, name+"-ip-assignment", &digitalocean.ReservedIpAssignmentArgs{
		IpAddress: rip.IpAddress,
		DropletId: first.ID().ApplyT(func(id pulumi.ID) (int, error) {
			n, err := strconv.Atoi(string(id))
			if err != nil {
				return 0, fmt.Errorf("droplet id %q is not a number: %w", id, err)
			}
			return n, nil
		}).(pulumi.IntOutput),
	}, child)
	if err != nil {
		return nil, fmt.Errorf("cluster: reserved ip assignment: %w", err)
	}

	urns := pulumi.StringArray{rip.ReservedIpUrn, vol.VolumeUrn}
	for _, d := range c.Droplets {
		urns = append(urns, d.DropletUrn)
	}
	env := "Staging"
	if args.Protect {
		env = "Production"
	}
	if _, err := digitalocean.NewProject(ctx, name+"-project", &digitalocean.ProjectArgs{
		Name:        pulumi.String(naming.Prefix(args.Stack)),
		Description: pulumi.String("pressroom " + args.Stack + " (" + args.Domain + ")"),
		Purpose:     pulumi.String("Web Application"),
		Environment: pulumi.String(env),
		Resources:   urns,
	}, child); err != nil {
		return nil, fmt.Errorf("cluster: project: %w", err)
	}

	admin, err := NewAdminCert(ctx, name+"-admin", pki.ClientCA, child)
	if err != nil {
		return nil, err
	}
	c.Kubeconfig = pulumi.ToSecret(pulumi.All(rip.IpAddress, pki.ServerCA.Cert.CertPem, admin.Cert.CertPem, admin.Key.PrivateKeyPem).
		ApplyT(func(v []any) (string, error) {
			return RenderKubeconfig(naming.Prefix(args.Stack), "https://"+v[0].(string)+":6443", v[1].(string), v[2].(string), v[3].(string))
		})).(pulumi.StringOutput)

	c.IP = rip.IpAddress
	var ips []any
	ips = append(ips, rip.IpAddress)
	for _, d := range c.Droplets[1:] {
		ips = append(ips, d.Ipv4Address)
	}
	c.NodeIPs = pulumi.All(ips...).ApplyT(func(v []any) []string {
		out := make([]string, len(v))
		for i, s := range v {
			out[i] = s.(string)
		}
		return out
	}).(pulumi.StringArrayOutput)
	c.Ready = []pulumi.Resource{assign}
	for _, d := range c.Droplets {
		c.Ready = append(c.Ready, d)
	}
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{
		"ip":         c.IP,
		"nodeIps":    c.NodeIPs,
		"kubeconfig": c.Kubeconfig,
	})
}

// PublicIPs are the addresses the site's DNS points at: the reserved IP of
// the first server, then the other servers' addresses.
func (c *Cluster) PublicIPs() []pulumi.StringInput {
	out := []pulumi.StringInput{c.IP}
	for _, d := range c.Droplets[1:] {
		out = append(out, d.Ipv4Address)
	}
	return out
}

func (a *ClusterArgs) check() error {
	if a == nil {
		return fmt.Errorf("cluster: args are required")
	}
	var missing []string
	for k, v := range map[string]string{"Stack": a.Stack, "Region": a.Region, "Size": a.Size, "Image": a.Image, "K3sVersion": a.K3sVersion, "APIHost": a.APIHost} {
		if v == "" {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		return fmt.Errorf("cluster: missing %v", missing)
	}
	if a.Nodes != 1 && a.Nodes != 3 {
		return fmt.Errorf("cluster: Nodes must be 1 or 3, got %d", a.Nodes)
	}
	if a.Network == nil {
		return fmt.Errorf("cluster: Network is required")
	}
	if a.VolumeSizeGB < 1 {
		return fmt.Errorf("cluster: VolumeSizeGB must be at least 1")
	}
	return nil
}

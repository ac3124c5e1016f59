// Package dns points the site's names at the cluster in Cloudflare.
package dns

import (
	"fmt"

	"github.com/pulumi/pulumi-cloudflare/sdk/v5/go/cloudflare"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// DNSArgs configures the records.
type DNSArgs struct {
	ZoneID string
	Domain string // apex
	// IPs are the node addresses (first = reserved IP); one A record per
	// address for the apex and for www.
	IPs []pulumi.StringInput
	TTL int // seconds; default 300
}

// DNS is the component.
type DNS struct {
	pulumi.ResourceState

	Records []*cloudflare.Record
}

// Names are the record names created for the apex domain.
func Names(domain string) []string { return []string{domain, "www." + domain} }

// New creates A records for the apex and www, DNS-only (not proxied) so
// Let's Encrypt HTTP-01 reaches the origin.
func NewDNS(ctx *pulumi.Context, name string, args *DNSArgs, opts ...pulumi.ResourceOption) (*DNS, error) {
	if args == nil || args.ZoneID == "" || args.Domain == "" || len(args.IPs) == 0 {
		return nil, fmt.Errorf("dns: ZoneID, Domain and at least one IP are required")
	}
	ttl := args.TTL
	if ttl == 0 {
		ttl = 300
	}
	d := &DNS{}
	if err := ctx.RegisterComponentResource("pressroom:cloud:DNS", name, d, opts...); err != nil {
		return nil, err
	}
	for _, host := range []struct{ key, name string }{{"apex", args.Domain}, {"www", "www." + args.Domain}} {
		for i, ip := range args.IPs {
			r, err := cloudflare.NewRecord(ctx, fmt.Sprintf("%s-%s-%d", name, host.key, i+1), &cloudflare.RecordArgs{
				ZoneId:  pulumi.String(args.ZoneID),
				Name:    pulumi.String(host.name),
				Type:    pulumi.String("A"),
				Content: ip,
				Proxied: pulumi.Bool(false),
				Ttl:     pulumi.Int(ttl),
				Comment: pulumi.String("pressroom: managed by Pulumi"),
				// Take over a record Cloudflare refuses as already there (an
				// identical one left by an interrupted up or a lost state)
				// instead of failing. It does not remove other addresses on
				// the name: the cutover deletes the old server's records.
				AllowOverwrite: pulumi.Bool(true),
			}, pulumi.Parent(d))
			if err != nil {
				return nil, fmt.Errorf("dns: %s record %d: %w", host.name, i+1, err)
			}
			d.Records = append(d.Records, r)
		}
	}
	return d, ctx.RegisterResourceOutputs(d, pulumi.Map{})
}

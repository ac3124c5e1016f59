// Package naming derives every cloud resource name from the stack, so two
// stacks never collide and a name says which stack owns the resource.
package naming

import (
	"fmt"
	"strings"
)

// Project is the prefix of every name.
const Project = "pressroom"

// Prefix is "pressroom-<stack>".
func Prefix(stack string) string { return Project + "-" + stack }

// Name joins the prefix and parts with "-": Name("prod", "node", "1") = "pressroom-prod-node-1".
func Name(stack string, parts ...string) string {
	return strings.Join(append([]string{Prefix(stack)}, parts...), "-")
}

// Node is the name of the i-th server (0-based in code, 1-based in names).
func Node(stack string, i int) string { return Name(stack, "node", fmt.Sprint(i+1)) }

// Tag is the DigitalOcean tag carried by the stack's droplets; the firewall
// is attached by tag so a replacement node is covered at once.
func Tag(stack string) string { return Prefix(stack) }

// ClusterIdentifier names the cluster for the Kubernetes provider: stable
// across kubeconfig changes so they never replace every object.
func ClusterIdentifier(stack string) string { return Prefix(stack) }

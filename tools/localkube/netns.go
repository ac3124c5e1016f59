package localkube

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// A node's network, per slot s (make cluster uses slot 0, tests the others):
//
//	host     <-> node      10.254.s.1/29 (host end "prk<s>")  - 10.254.s.2/29 (node eth0): the API server, Traefik
//	node     <-> internet  203.0.113.1/24 (node eth1)         - 203.0.113.2/24 (internet eth0): the node's public address
//	host     <-> internet  10.254.s.9/29 (host end "pri<s>")  - 10.254.s.10/29 (internet eth1): a browser reaching internet servers
//
// The node namespace holds every process of the node (control plane,
// containerd, kubelet, kube-proxy, kube-router) and its pods' bridge cni0;
// the "internet" namespace holds the servers pods reach on public addresses
// (a DNS answerer, the OIDC provider, the ACME server), on addresses from a
// documentation range, because the platform's egress policies refuse
// private ones. Both namespaces die with their holder processes, and with
// them every interface, route and iptables rule made in them.
const (
	// PublicIP is the node's address on the internet side (what the site's
	// DNS names resolve to there, like a droplet's public address).
	PublicIP = "203.0.113.1"
	// InternetGateway is the internet side of the node's public link.
	InternetGateway = "203.0.113.2"
	// InternetDNS answers the internet namespace's names (see AddInternetHost).
	InternetDNS = "203.0.113.53"
	// PodCIDR, ServiceCIDR, ClusterDNS and ClusterDomain are K3s' defaults.
	PodCIDR       = "10.42.0.0/16"
	NodePodCIDR   = "10.42.0.0/24" // the first node's range, as the controller manager allocates it
	ServiceCIDR   = "10.43.0.0/16"
	ClusterDNS    = "10.43.0.10"
	ClusterDomain = "cluster.local"
	// NodeName is the node's name (K3s uses the host name).
	NodeName = "pressroom-node"
	// MaxSlot bounds the slots: each has its own host links.
	MaxSlot = 3
)

// slotNet is the addressing of one slot.
type slotNet struct {
	slot                     int
	hostNodeIf, hostInetIf   string
	hostNodeIP, nodeIP       string // /29 link host <-> node
	hostInetIP, inetHostSide string // /29 link host <-> internet
}

func netFor(slot int) slotNet {
	return slotNet{
		slot:       slot,
		hostNodeIf: fmt.Sprintf("prk%d", slot), hostInetIf: fmt.Sprintf("pri%d", slot),
		hostNodeIP: fmt.Sprintf("10.254.%d.1", slot), nodeIP: fmt.Sprintf("10.254.%d.2", slot),
		hostInetIP: fmt.Sprintf("10.254.%d.9", slot), inetHostSide: fmt.Sprintf("10.254.%d.10", slot),
	}
}

// nsenter returns the command line that runs argv in the namespaces of the
// process pid (network, and mount when mount is set).
func nsenter(pid int, mount bool, argv ...string) []string {
	cmd := []string{"nsenter", fmt.Sprintf("--target=%d", pid), "--net"}
	if mount {
		cmd = append(cmd, "--mount")
	}
	return append(append(cmd, "--"), argv...)
}

// run runs a setup command to completion, failing with its output.
func run(ctx context.Context, argv ...string) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("localkube: %s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// runAll runs each command in order, stopping at the first failure.
func runAll(ctx context.Context, cmds ...[]string) error {
	for _, c := range cmds {
		if err := run(ctx, c...); err != nil {
			return err
		}
	}
	return nil
}

// wireNetworks creates the three links and addresses the namespaces of the
// holder processes node and inet.
func wireNetworks(ctx context.Context, n slotNet, node, inet int) error {
	in := func(pid int, argv ...string) []string { return nsenter(pid, false, argv...) }
	p := func(pid int) string { return fmt.Sprint(pid) }
	return runAll(ctx,
		// host <-> node
		[]string{"ip", "link", "add", n.hostNodeIf, "type", "veth", "peer", "name", "eth0", "netns", p(node)},
		[]string{"ip", "addr", "add", n.hostNodeIP + "/29", "dev", n.hostNodeIf},
		[]string{"ip", "link", "set", n.hostNodeIf, "up"},
		in(node, "ip", "link", "set", "lo", "up"),
		in(node, "ip", "addr", "add", n.nodeIP+"/29", "dev", "eth0"),
		in(node, "ip", "link", "set", "eth0", "up"),
		// node <-> internet: the node's default route, like a droplet's uplink
		in(node, "ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", p(inet)),
		in(node, "ip", "addr", "add", PublicIP+"/24", "dev", "eth1"),
		in(node, "ip", "link", "set", "eth1", "up"),
		in(inet, "ip", "link", "set", "lo", "up"),
		in(inet, "ip", "addr", "add", InternetGateway+"/24", "dev", "eth0"),
		in(inet, "ip", "addr", "add", InternetDNS+"/32", "dev", "lo"),
		in(inet, "ip", "link", "set", "eth0", "up"),
		in(node, "ip", "route", "add", "default", "via", InternetGateway),
		// host <-> internet
		[]string{"ip", "link", "add", n.hostInetIf, "type", "veth", "peer", "name", "eth1", "netns", p(inet)},
		[]string{"ip", "addr", "add", n.hostInetIP + "/29", "dev", n.hostInetIf},
		[]string{"ip", "link", "set", n.hostInetIf, "up"},
		in(inet, "ip", "addr", "add", n.inetHostSide+"/29", "dev", "eth1"),
		in(inet, "ip", "link", "set", "eth1", "up"),
		// The node routes for its pods (K3s sets the same).
		in(node, "sysctl", "-qw", "net.ipv4.ip_forward=1"),
		in(node, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"),
		in(node, "sysctl", "-qw", "net.bridge.bridge-nf-call-ip6tables=1"),
	)
}

// removeLinks deletes host ends a crashed run of this slot may have left
// (deleting one end of a veth deletes both).
func removeLinks(ctx context.Context, n slotNet) {
	for _, ifc := range []string{n.hostNodeIf, n.hostInetIf} {
		if _, err := net.InterfaceByName(ifc); err == nil {
			_ = run(ctx, "ip", "link", "del", ifc)
		}
	}
}

// InNamespace runs fn on an OS thread that has joined the network namespace
// of pid; sockets fn creates stay in that namespace after it returns (a
// listener there can be served from any goroutine). The thread then goes
// back to its own namespace and is released. It must not exit instead: the
// node's components are started with Pdeathsig, which the kernel ties to
// the thread that forked them, and Go runs a goroutine on any thread, so a
// thread that dies can take the kubelet with it.
func InNamespace(pid int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		own, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("localkube: this thread's namespace: %w", err)
			return
		}
		defer own.Close()
		target, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("localkube: namespace of pid %d: %w", pid, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("localkube: join the namespace of pid %d: %w", pid, err)
			return
		}
		err = fn()
		// A thread that cannot go back stays locked and exits with the
		// goroutine rather than serve others in the wrong namespace.
		if unix.Setns(int(own.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

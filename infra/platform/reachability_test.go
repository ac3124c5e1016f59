package platform

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"

	"pressroom.dev/stacks"
)

// A pod (or an outside address) of the model cluster.
type endpoint struct {
	name, ns string
	labels   map[string]string
	ip       netip.Addr
	ports    []pport
}

type pport struct {
	num   int
	proto string
}

func (p pport) String() string { return fmt.Sprintf("%d/%s", p.num, p.proto) }

func tcpPorts(ns ...int) []pport {
	out := []pport{}
	for _, n := range ns {
		out = append(out, pport{n, "TCP"})
	}
	return out
}

// modelCluster is K3s with pressroom deployed: our pods, Traefik and CoreDNS
// in kube-system, another kube-system pod, a look-alike pod in another
// namespace, and the internet.
func modelCluster() []endpoint {
	n := 0
	pod := func(name, ns string, labels map[string]string, ports []pport) endpoint {
		n++
		return endpoint{name: name, ns: ns, labels: labels, ip: netip.MustParseAddr(fmt.Sprintf("10.42.0.%d", n)), ports: ports}
	}
	app := func(name string, ports ...int) endpoint {
		return pod(name, "pressroom", map[string]string{"app.kubernetes.io/name": name}, tcpPorts(ports...))
	}
	return []endpoint{
		app("web", 8080), app("auth", 8081), app("article", 8082), app("media", 8083), app("notification", 8084),
		app("postgres", 5432), app("redis", 6379), app("nats", 4222, 8222), app("jaeger", 4317, 4318, 16686, 13133), app("backup"),
		pod("acme-solver", "pressroom", map[string]string{"acme.cert-manager.io/http01-solver": "true"}, tcpPorts(8089)),
		pod("traefik", "kube-system", map[string]string{"app.kubernetes.io/name": "traefik"}, tcpPorts(80, 443)),
		pod("coredns", "kube-system", map[string]string{"k8s-app": "kube-dns"}, []pport{{53, "UDP"}, {53, "TCP"}}),
		pod("metrics-server", "kube-system", map[string]string{"app.kubernetes.io/name": "metrics-server"}, tcpPorts(10250)),
		pod("intruder", "default", map[string]string{"app.kubernetes.io/name": "web"}, tcpPorts(8080)),
		{name: "internet", ns: "", ip: netip.MustParseAddr("203.0.113.10"), ports: tcpPorts(80, 443, 25)},
	}
}

// intended is the platform's flow table, written independently of netpol.Flows.
func intended() map[string]bool {
	f := map[string]bool{}
	add := func(from, to string, p pport) { f[from+" → "+to+":"+p.String()] = true }
	tcp := func(from, to string, port int) { add(from, to, pport{port, "TCP"}) }
	tcp("traefik", "web", 8080)
	tcp("traefik", "media", 8083)
	tcp("traefik", "acme-solver", 8089)
	tcp("web", "auth", 8081)
	tcp("web", "article", 8082)
	tcp("web", "media", 8083)
	tcp("auth", "postgres", 5432)
	tcp("auth", "redis", 6379)
	tcp("article", "postgres", 5432)
	tcp("article", "nats", 4222)
	tcp("media", "postgres", 5432)
	tcp("notification", "postgres", 5432)
	tcp("notification", "nats", 4222)
	tcp("backup", "postgres", 5432)
	for _, s := range stacks.Services {
		tcp(s, "jaeger", 4317)
	}
	tcp("auth", "internet", 443)
	tcp("notification", "internet", 443)
	for _, e := range modelCluster() {
		if e.ns == "pressroom" {
			add(e.name, "coredns", pport{53, "UDP"})
			add(e.name, "coredns", pport{53, "TCP"})
		}
	}
	return f
}

type policy struct {
	name, ns string
	selector map[string]any
	types    map[string]bool
	ingress  []map[string]any
	egress   []map[string]any
}

func policies(t *testing.T, g *graph) []policy {
	var out []policy
	for _, r := range g.all("NetworkPolicy") {
		spec := r.In["spec"].(map[string]any)
		p := policy{name: r.metaName(), ns: get(r.In, "metadata", "namespace").(string), types: map[string]bool{}}
		p.selector, _ = spec["podSelector"].(map[string]any)
		for _, ty := range spec["policyTypes"].([]any) {
			p.types[ty.(string)] = true
		}
		p.ingress = list(spec["ingress"])
		p.egress = list(spec["egress"])
		out = append(out, p)
	}
	if len(out) == 0 {
		t.Fatal("no NetworkPolicies in the graph")
	}
	return out
}

// matches implements a LabelSelector (matchLabels; expressions are not used
// by the platform, so meeting one is a test failure rather than a guess).
func matches(t *testing.T, sel map[string]any, labels map[string]string) bool {
	if sel == nil {
		return true
	}
	if sel["matchExpressions"] != nil {
		t.Fatalf("selector %v uses matchExpressions; teach the model first", sel)
	}
	ml, _ := sel["matchLabels"].(map[string]any)
	for k, v := range ml {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func nsLabels(ns string) map[string]string {
	return map[string]string{"kubernetes.io/metadata.name": ns}
}

func peerMatches(t *testing.T, p policy, peer map[string]any, e endpoint) bool {
	if ipb, ok := peer["ipBlock"].(map[string]any); ok {
		cidr := netip.MustParsePrefix(ipb["cidr"].(string))
		if !cidr.Contains(e.ip) {
			return false
		}
		for _, ex := range ipb["except"].([]any) {
			if netip.MustParsePrefix(ex.(string)).Contains(e.ip) {
				return false
			}
		}
		return true
	}
	if e.ns == "" { // outside the cluster: only ipBlocks match
		return false
	}
	nsSel, hasNS := peer["namespaceSelector"].(map[string]any)
	podSel, hasPod := peer["podSelector"].(map[string]any)
	if hasNS {
		if !matches(t, nsSel, nsLabels(e.ns)) {
			return false
		}
	} else if e.ns != p.ns {
		return false
	}
	if hasPod {
		return matches(t, podSel, e.labels)
	}
	return true
}

func ruleAllows(t *testing.T, p policy, rule map[string]any, peersKey string, other endpoint, port pport) bool {
	if ports := list(rule["ports"]); len(ports) > 0 {
		ok := false
		for _, rp := range ports {
			proto, _ := rp["protocol"].(string)
			if proto == "" {
				proto = "TCP"
			}
			if proto == port.proto && rp["port"] == float64(port.num) {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	peers := list(rule[peersKey])
	if len(peers) == 0 {
		return true
	}
	for _, peer := range peers {
		if peerMatches(t, p, peer, other) {
			return true
		}
	}
	return false
}

// allowed is Kubernetes NetworkPolicy semantics: a pod selected by no policy
// of a direction is open in that direction; otherwise some rule must allow.
func allowed(t *testing.T, pols []policy, src, dst endpoint, port pport) bool {
	check := func(self, other endpoint, typ, rulesKey, peersKey string) bool {
		if self.ns == "" {
			return true
		}
		selected := false
		for _, p := range pols {
			if p.ns != self.ns || !p.types[typ] || !matches(t, p.selector, self.labels) {
				continue
			}
			selected = true
			rules := p.ingress
			if rulesKey == "egress" {
				rules = p.egress
			}
			for _, r := range rules {
				if ruleAllows(t, p, r, peersKey, other, port) {
					return true
				}
			}
		}
		return !selected
	}
	return check(src, dst, "Egress", "egress", "to") && check(dst, src, "Ingress", "ingress", "from")
}

func TestNetworkReachabilityMatchesIntendedFlows(t *testing.T) {
	g := run(t, "staging", stagingArgs())
	pols := policies(t, g)
	want := intended()
	cluster := modelCluster()
	seen := map[string]bool{}
	var wrong []string
	for _, src := range cluster {
		for _, dst := range cluster {
			if src.name == dst.name || (src.ns != "pressroom" && dst.ns != "pressroom") {
				continue // only flows that touch the namespace are ours to decide
			}
			for _, port := range dst.ports {
				key := src.name + " → " + dst.name + ":" + port.String()
				got := allowed(t, pols, src, dst, port)
				if got {
					seen[key] = true
				}
				if got != want[key] {
					verdict := "allowed but not intended"
					if want[key] {
						verdict = "intended but denied"
					}
					wrong = append(wrong, key+" "+verdict)
				}
			}
		}
	}
	for k := range want {
		if !seen[k] {
			wrong = append(wrong, k+" intended but never allowed")
		}
	}
	sort.Strings(wrong)
	if len(wrong) > 0 {
		t.Errorf("reachability differs from the intended flows:\n%s", strings.Join(wrong, "\n"))
	}
	if len(seen) != len(want) {
		t.Errorf("allowed %d flows, intended %d", len(seen), len(want))
	}
	// A default-deny that also cuts the solver off stops every issuance: it
	// must be reachable from Traefik and from nothing else.
	solver := cluster[10]
	for _, src := range cluster {
		if src.name != "acme-solver" && allowed(t, pols, src, solver, pport{8089, "TCP"}) != (src.name == "traefik") {
			t.Errorf("acme solver reachability from %s is wrong", src.name)
		}
	}
}

// The model itself must be able to fail: without the solver's policy the
// challenge's 502 comes back.
func TestReachabilityModelCatchesTheSeedIncident(t *testing.T) {
	g := run(t, "staging", stagingArgs())
	var pols []policy
	for _, p := range policies(t, g) {
		if p.name != "allow-acme-solver" {
			pols = append(pols, p)
		}
	}
	c := modelCluster()
	if allowed(t, pols, c[11], c[10], pport{8089, "TCP"}) {
		t.Fatal("with default-deny and no solver policy Traefik still reaches the solver: the model is wrong")
	}
}

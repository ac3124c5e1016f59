package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"pressroom.dev/tools/localkube"
	"pressroom.dev/tools/localstack"
)

// networkMatrix measures the namespace's NetworkPolicies from real pods: a
// probe pod for every role tries every Service port of the namespace and the
// peers outside it, and what it sees must be exactly what netpol.Flows allows.
func (lc *liveCluster) networkMatrix(ctx context.Context, t *testing.T) {
	t.Helper()
	netMatrix{
		kubectl:     lc.c.KubectlStdin,
		image:       lc.c.BusyboxImage(),
		source:      filepath.Join(lc.repo, "infra", "netpol", "netpol.go"),
		internetIP:  localstack.OIDCIP,
		internetDNS: localkube.InternetDNS,
		dnsName:     localstack.OIDCHost,
	}.run(ctx, t)
}

// kubectlRunner runs kubectl against the node (combined output).
type kubectlRunner func(ctx context.Context, stdin io.Reader, args ...string) ([]byte, error)

// netMatrix is the reachability test, driven by any kubectl.
type netMatrix struct {
	kubectl     kubectlRunner
	image       string // busybox: nc, nslookup, httpd, timeout
	source      string // infra/netpol/netpol.go
	internetIP  string // a public address serving HTTPS (the OIDC provider)
	internetDNS string // a public DNS server
	dnsName     string // a name internetDNS answers
}

const (
	netNS        = "pressroom"
	otherNS      = "netpol-probe"
	probeOwner   = "netpol-probe" // ConfigMap owning the probe pods, so no ReplicaSet adopts them
	nameLabel    = "app.kubernetes.io/name"
	otherNSPort  = 8080
	solverPort   = 8089
	probeTimeout = 4 // seconds for one connect
)

// netFlow is one row of netpol.Flows.
type netFlow struct {
	from, to string
	port     int
}

// netTable is netpol's contract as its source states it (tools does not
// depend on the infra module, so the source is parsed).
type netTable struct {
	flows map[netFlow]bool
	order []netFlow
	// the endpoint names of the peers that are not workloads
	traefik, dns, internet, solver string
	solverLabel, traefikLabel      string
}

func parseNetTable(path string) (netTable, error) {
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		return netTable{}, err
	}
	consts := map[string]string{}
	var flows *ast.CompositeLit
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok {
			continue
		}
		for _, s := range g.Specs {
			vs, ok := s.(*ast.ValueSpec)
			if !ok {
				continue
			}
			for i, n := range vs.Names {
				if i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && g.Tok == token.CONST && lit.Kind == token.STRING {
					consts[n.Name], _ = strconv.Unquote(lit.Value)
				}
				if g.Tok == token.VAR && n.Name == "Flows" {
					flows, _ = vs.Values[i].(*ast.CompositeLit)
				}
			}
		}
	}
	if flows == nil {
		return netTable{}, fmt.Errorf("%s: no var Flows = []Flow{...}", path)
	}
	str := func(e ast.Expr) (string, error) {
		switch e := e.(type) {
		case *ast.BasicLit:
			if e.Kind == token.STRING {
				return strconv.Unquote(e.Value)
			}
		case *ast.Ident:
			if v, ok := consts[e.Name]; ok {
				return v, nil
			}
		}
		return "", fmt.Errorf("%s: a flow endpoint is %T, not a string or string constant", path, e)
	}
	tb := netTable{flows: map[netFlow]bool{}}
	for _, e := range flows.Elts {
		cl, ok := e.(*ast.CompositeLit)
		if !ok || len(cl.Elts) != 3 {
			return netTable{}, fmt.Errorf("%s: a Flow is not {From, To, Port}", path)
		}
		fields := map[string]ast.Expr{}
		for i, el := range cl.Elts {
			if kv, ok := el.(*ast.KeyValueExpr); ok {
				fields[fmt.Sprint(kv.Key)] = kv.Value
			} else {
				fields[[]string{"From", "To", "Port"}[i]] = el
			}
		}
		var fl netFlow
		if fl.from, err = str(fields["From"]); err != nil {
			return netTable{}, err
		}
		if fl.to, err = str(fields["To"]); err != nil {
			return netTable{}, err
		}
		lit, ok := fields["Port"].(*ast.BasicLit)
		if !ok || lit.Kind != token.INT {
			return netTable{}, fmt.Errorf("%s: flow %s → %s: the port is not an integer literal", path, fl.from, fl.to)
		}
		if fl.port, err = strconv.Atoi(lit.Value); err != nil {
			return netTable{}, err
		}
		tb.flows[fl] = true
		tb.order = append(tb.order, fl)
	}
	for name, dst := range map[string]*string{
		"Traefik": &tb.traefik, "DNS": &tb.dns, "Internet": &tb.internet, "ACMESolver": &tb.solver,
		"ACMESolverLabel": &tb.solverLabel, "TraefikLabel": &tb.traefikLabel,
	} {
		if *dst = consts[name]; *dst == "" {
			return netTable{}, fmt.Errorf("%s: no string constant %s", path, name)
		}
	}
	return tb, nil
}

// workload reports whether an endpoint is one of the namespace's workloads.
func (tb netTable) workload(e string) bool {
	return e != tb.traefik && e != tb.dns && e != tb.internet && e != tb.solver
}

// allowed is the contract: default-deny in the namespace, DNS to kube-dns for
// every pod, and the TCP flows of the table; nothing decides flows between
// two ends outside the namespace.
func (tb netTable) allowed(src *netRole, dst *netTarget) bool {
	if dst.endpoint == tb.dns {
		return true
	}
	if src.ns != netNS && !dst.inNS {
		return true
	}
	return !dst.udp && tb.flows[netFlow{src.endpoint, dst.endpoint, dst.port}]
}

// netRole is a probe pod standing in for one kind of pod.
type netRole struct {
	title    string // column of the matrix
	endpoint string // its name in the flows ("" for none)
	ns       string
	labels   map[string]string
	listen   int // a port it serves (0: none)
	ip       string
}

func (r *netRole) pod() string { return "netpol-probe-" + r.title }

// netTarget is one address and port a probe connects to.
type netTarget struct {
	title    string
	endpoint string // its name in the flows ("" for a private address outside the namespace)
	inNS     bool
	host     string
	port     int
	udp      bool   // a DNS query instead of a TCP connect
	query    string // the name asked for
}

type netCell struct {
	src  *netRole
	dst  *netTarget
	want bool
}

type netResult struct {
	open bool
	how  string // "open", "rej" (refused), "t/o" (timed out), "unreach"
	out  string
}

func (m netMatrix) run(ctx context.Context, t *testing.T) {
	t.Helper()
	tb, err := parseNetTable(m.source)
	if err != nil {
		t.Fatal(err)
	}
	roles, err := m.roles(ctx, tb)
	if err != nil {
		t.Fatal(err)
	}
	m.checkPolicies(ctx, t, tb)

	t0 := time.Now()
	defer m.cleanup(roles)
	if err := m.startProbes(ctx, roles); err != nil {
		t.Fatal(err)
	}
	targets, err := m.targets(ctx, tb, roles)
	if err != nil {
		t.Fatal(err)
	}
	var cells []netCell
	for _, dst := range targets {
		for _, src := range roles {
			if dst.host == src.ip {
				continue
			}
			cells = append(cells, netCell{src, dst, tb.allowed(src, dst)})
		}
	}
	// A flow nothing here can measure is a flow without a pod or Service port.
	for _, f := range tb.order {
		measured := false
		for _, c := range cells {
			measured = measured || (c.src.endpoint == f.from && c.dst.endpoint == f.to && c.dst.port == f.port && !c.dst.udp)
		}
		if !measured {
			t.Errorf("flow %s → %s:%d of netpol.Flows is not measured: no workload or Service port in %s carries it", f.from, f.to, f.port, netNS)
		}
	}

	settled := m.settle(ctx, t, tb, cells)
	t.Logf("   %d probe pods running and admitted by kube-router in %s", len(roles), settled.Round(time.Second))
	got, err := m.measure(ctx, cells)
	if err != nil {
		t.Fatal(err)
	}
	// An overloaded node drops a connect now and then (CoreDNS missing its
	// readiness probe leaves kube-dns without endpoints for a moment): a
	// flow that should be open is asked twice more. A closed policy stays
	// closed however often it is asked; an open result is never re-asked.
	retried, recovered := 0, 0
	for round := 0; round < 2; round++ {
		var again []int
		for i, c := range cells {
			if c.want && !got[i].open {
				again = append(again, i)
			}
		}
		if len(again) == 0 {
			break
		}
		time.Sleep(5 * time.Second)
		sub := make([]netCell, len(again))
		for j, i := range again {
			sub[j] = cells[i]
		}
		res, err := m.measure(ctx, sub)
		if err != nil {
			t.Fatal(err)
		}
		retried += len(again)
		for j, i := range again {
			if res[j].open {
				got[i] = res[j]
				recovered++
			}
		}
	}
	if retried > 0 {
		t.Logf("   %d open-flow probes asked again, %d of them answered then", retried, recovered)
	}
	bad := 0
	for i, c := range cells {
		if got[i].open != c.want {
			bad++
			t.Errorf("%s (%s %s) → %s (%s:%d): %s, want %s; probe said %q", c.src.title, c.src.ns, c.src.ip,
				c.dst.title, c.dst.host, c.dst.port, got[i].how, map[bool]string{true: "open", false: "closed"}[c.want], got[i].out)
		}
	}
	t.Logf("   reachability from real pods (rows: to; columns: from; open / rej = refused / t/o = timed out; ! = not what netpol.Flows says):\n%s",
		renderMatrix(roles, targets, cells, got))
	t.Logf("   %d probes from %d pods (%s with the pods' start), %d of them not as netpol.Flows says (%d flows open, everything else closed)",
		len(cells), len(roles), time.Since(t0).Round(time.Second), bad, len(tb.order))
}

// roles: one probe pod per workload of the namespace with its pods' labels,
// Traefik's with the Traefik pods' labels, an ACME solver, an unlabelled pod
// and a pod in another namespace.
func (m netMatrix) roles(ctx context.Context, tb netTable) ([]*netRole, error) {
	type template struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
	}
	var wl struct {
		Items []struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Spec struct {
				Template    template `json:"template"`
				JobTemplate struct {
					Spec struct {
						Template template `json:"template"`
					} `json:"spec"`
				} `json:"jobTemplate"`
			} `json:"spec"`
		} `json:"items"`
	}
	if err := m.getJSON(ctx, &wl, "get", "deployments,statefulsets,cronjobs", "-n", netNS, "-o", "json"); err != nil {
		return nil, err
	}
	var traefik struct {
		Spec struct {
			Template template `json:"template"`
		} `json:"spec"`
	}
	if err := m.getJSON(ctx, &traefik, "get", "deployment", "traefik", "-n", "kube-system", "-o", "json"); err != nil {
		return nil, err
	}
	tl := traefik.Spec.Template.Metadata.Labels
	if tl[nameLabel] != tb.traefikLabel {
		return nil, fmt.Errorf("the Traefik pods are labelled %v, netpol selects %s=%s", tl, nameLabel, tb.traefikLabel)
	}
	roles := []*netRole{{title: tb.traefik, endpoint: tb.traefik, ns: "kube-system", labels: tl}}
	seen := map[string]bool{}
	for _, w := range wl.Items {
		labels := w.Spec.Template.Metadata.Labels
		if w.Kind == "CronJob" {
			labels = w.Spec.JobTemplate.Spec.Template.Metadata.Labels
		}
		name := labels[nameLabel]
		if name == "" || seen[name] {
			return nil, fmt.Errorf("%s %s: pods labelled %v; each workload's pods need their own %s", w.Kind, w.Metadata.Name, labels, nameLabel)
		}
		seen[name] = true
		roles = append(roles, &netRole{title: name, endpoint: name, ns: netNS, labels: labels})
	}
	var missing []string
	for _, f := range tb.order {
		for _, e := range []string{f.from, f.to} {
			if tb.workload(e) && !seen[e] {
				seen[e] = true
				missing = append(missing, e)
			}
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("netpol.Flows names %v, but no workload in %s has pods labelled so", missing, netNS)
	}
	roles = append(roles,
		&netRole{title: tb.solver, endpoint: tb.solver, ns: netNS, labels: map[string]string{tb.solverLabel: "true"}, listen: solverPort},
		&netRole{title: "unlabelled", ns: netNS},
		&netRole{title: "other-ns", ns: otherNS, listen: otherNSPort},
	)
	rank := map[string]int{}
	for i, f := range tb.order {
		for _, e := range []string{f.from, f.to} {
			if _, ok := rank[e]; !ok {
				rank[e] = i
			}
		}
	}
	sort.SliceStable(roles, func(i, j int) bool {
		ri, oki := rank[roles[i].endpoint]
		rj, okj := rank[roles[j].endpoint]
		if oki != okj {
			return oki
		}
		return ri < rj
	})
	return roles, nil
}

// checkPolicies: the namespace holds default-deny, allow-dns and one policy
// per endpoint of the flows, and no other.
func (m netMatrix) checkPolicies(ctx context.Context, t *testing.T, tb netTable) {
	t.Helper()
	out, err := m.kubectl(ctx, nil, "get", "networkpolicies", "-n", netNS, "-o", "jsonpath={.items[*].metadata.name}")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"default-deny": true, "allow-dns": true}
	for _, f := range tb.order {
		for _, e := range []string{f.from, f.to} {
			if e == tb.solver || tb.workload(e) {
				want["allow-"+e] = true
			}
		}
	}
	have := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		have[p] = true
		if !want[p] {
			t.Errorf("NetworkPolicy %s/%s has no flow in netpol.Flows", netNS, p)
		}
	}
	for p := range want {
		if !have[p] {
			t.Errorf("NetworkPolicy %s/%s is missing: netpol.Flows needs it", netNS, p)
		}
	}
}

func (m netMatrix) getJSON(ctx context.Context, v any, args ...string) error {
	out, err := m.kubectl(ctx, nil, args...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("kubectl %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// startProbes creates the probe pods and waits until they run. Each is owned
// by a ConfigMap (a ReplicaSet would adopt an orphan with its labels) and
// never Ready (a readiness gate nobody sets), so no Service sends it traffic.
func (m netMatrix) startProbes(ctx context.Context, roles []*netRole) error {
	m.cleanup(roles) // a run interrupted before its cleanup
	ns := map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{
		"name": otherNS, "labels": map[string]string{"pod-security.kubernetes.io/enforce": "restricted"},
	}}
	if err := m.create(ctx, ns); err != nil {
		return err
	}
	uids := map[string]string{}
	for _, r := range roles {
		if uids[r.ns] != "" {
			continue
		}
		cm := map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{
			"name": probeOwner, "namespace": r.ns,
			"annotations": map[string]string{"pressroom.dev/purpose": "owns the reachability test's probe pods"},
		}}
		if err := m.create(ctx, cm); err != nil {
			return err
		}
		out, err := m.kubectl(ctx, nil, "get", "configmap", probeOwner, "-n", r.ns, "-o", "jsonpath={.metadata.uid}")
		if err != nil {
			return err
		}
		uids[r.ns] = strings.TrimSpace(string(out))
	}
	for _, r := range roles {
		cmd := "exec sleep 3600"
		if r.listen != 0 {
			cmd = fmt.Sprintf("exec httpd -f -p %d -h /tmp", r.listen)
		}
		stands := "no workload: a pod without the platform's labels"
		if r.endpoint != "" {
			stands = fmt.Sprintf("%s's pods, with their labels", r.endpoint)
		}
		pod := map[string]any{
			"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{
				"name": r.pod(), "namespace": r.ns, "labels": r.labels,
				"annotations": map[string]string{"pressroom.dev/stands-in-for": stands + " (a probe of the reachability test)"},
				"ownerReferences": []map[string]any{{
					"apiVersion": "v1", "kind": "ConfigMap", "name": probeOwner, "uid": uids[r.ns], "controller": true,
				}},
			},
			"spec": map[string]any{
				"automountServiceAccountToken":  false,
				"terminationGracePeriodSeconds": 1,
				"readinessGates":                []map[string]string{{"conditionType": "pressroom.dev/netpol-probe"}},
				"securityContext": map[string]any{
					"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
					"seccompProfile": map[string]string{"type": "RuntimeDefault"},
				},
				"containers": []map[string]any{{
					"name": "probe", "image": m.image, "command": []string{"sh", "-c", cmd},
					"resources": map[string]any{
						"requests": map[string]string{"cpu": "5m", "memory": "8Mi"},
						"limits":   map[string]string{"cpu": "200m", "memory": "32Mi"},
					},
					"securityContext": map[string]any{
						"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
						"capabilities": map[string]any{"drop": []string{"ALL"}},
					},
				}},
			},
		}
		if err := m.create(ctx, pod); err != nil {
			return err
		}
	}
	for _, r := range roles {
		if out, err := m.kubectl(ctx, nil, "wait", "--for=jsonpath={.status.phase}=Running", "pod/"+r.pod(), "-n", r.ns, "--timeout=180s"); err != nil {
			desc, _ := m.kubectl(ctx, nil, "describe", "pod", r.pod(), "-n", r.ns)
			return fmt.Errorf("probe pod %s/%s: %w\n%s\n%s", r.ns, r.pod(), err, out, desc)
		}
		out, err := m.kubectl(ctx, nil, "get", "pod", r.pod(), "-n", r.ns, "-o", "jsonpath={.status.podIP}")
		if err != nil {
			return err
		}
		r.ip = strings.TrimSpace(string(out))
	}
	return nil
}

func (m netMatrix) create(ctx context.Context, obj any) error {
	b, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	_, err = m.kubectl(ctx, bytes.NewReader(b), "create", "-f", "-")
	return err
}

// cleanup deletes the probe pods and waits until they are gone, so the
// checks after this one see only the platform.
func (m netMatrix) cleanup(roles []*netRole) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	byNS := map[string][]string{}
	for _, r := range roles {
		if r.ns != otherNS {
			byNS[r.ns] = append(byNS[r.ns], "pod/"+r.pod())
		}
	}
	for ns, objs := range byNS {
		_, _ = m.kubectl(ctx, nil, append([]string{"delete", "-n", ns, "--ignore-not-found", "--wait", "configmap/" + probeOwner}, objs...)...)
	}
	_, _ = m.kubectl(ctx, nil, "delete", "namespace", otherNS, "--ignore-not-found", "--wait")
}

// targets: every TCP port of every Service of the namespace (by ClusterIP),
// the ACME solver, and the peers outside: the internet on 443 and on DNS,
// kube-dns on 53/UDP and TCP, the API server, a pod in another namespace.
func (m netMatrix) targets(ctx context.Context, tb netTable, roles []*netRole) ([]*netTarget, error) {
	var svcs struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Spec struct {
				ClusterIP string            `json:"clusterIP"`
				Selector  map[string]string `json:"selector"`
				Ports     []struct {
					Port     int    `json:"port"`
					Protocol string `json:"protocol"`
				} `json:"ports"`
			} `json:"spec"`
		} `json:"items"`
	}
	if err := m.getJSON(ctx, &svcs, "get", "services", "-n", netNS, "-o", "json"); err != nil {
		return nil, err
	}
	var out []*netTarget
	for _, s := range svcs.Items {
		name := s.Spec.Selector[nameLabel]
		if name == "" || s.Spec.ClusterIP == "" || s.Spec.ClusterIP == "None" {
			return nil, fmt.Errorf("service %s: selector %v, clusterIP %q: no workload to measure it by", s.Metadata.Name, s.Spec.Selector, s.Spec.ClusterIP)
		}
		for _, p := range s.Spec.Ports {
			if p.Protocol == "TCP" {
				out = append(out, &netTarget{title: fmt.Sprintf("%s:%d", s.Metadata.Name, p.Port), endpoint: name, inNS: true, host: s.Spec.ClusterIP, port: p.Port})
			}
		}
	}
	ip := func(ns, svc string) (string, error) {
		b, err := m.kubectl(ctx, nil, "get", "service", svc, "-n", ns, "-o", "jsonpath={.spec.clusterIP}")
		return strings.TrimSpace(string(b)), err
	}
	dnsIP, err := ip("kube-system", "kube-dns")
	if err != nil {
		return nil, err
	}
	apiIP, err := ip("default", "kubernetes")
	if err != nil {
		return nil, err
	}
	for _, r := range roles {
		switch r.title {
		case tb.solver:
			out = append(out, &netTarget{title: fmt.Sprintf("%s:%d", tb.solver, solverPort), endpoint: tb.solver, inNS: true, host: r.ip, port: solverPort})
		case "other-ns":
			out = append(out, &netTarget{title: fmt.Sprintf("other-ns:%d", otherNSPort), host: r.ip, port: otherNSPort})
		}
	}
	out = append(out,
		&netTarget{title: "internet:443", endpoint: tb.internet, host: m.internetIP, port: 443},
		&netTarget{title: "internet:53/udp", endpoint: tb.internet, host: m.internetDNS, port: 53, udp: true, query: m.dnsName},
		&netTarget{title: "kube-dns:53/udp", endpoint: tb.dns, host: dnsIP, port: 53, udp: true, query: "kubernetes.default.svc." + localkube.ClusterDomain},
		&netTarget{title: "kube-dns:53", endpoint: tb.dns, host: dnsIP, port: 53},
		&netTarget{title: "apiserver:443", host: apiIP, port: 443},
	)
	return out, nil
}

// settle waits until kube-router has admitted the new pods (it does so a few
// seconds after they start): from every probe pod one flow of the table into
// the namespace is open (DNS if it has none), and every pod of the namespace
// is refused towards another namespace, as is an unlabelled pod towards the
// solver. Then neither a missing allow nor a missing deny is measured.
func (m netMatrix) settle(ctx context.Context, t *testing.T, tb netTable, cells []netCell) time.Duration {
	t.Helper()
	t0 := time.Now()
	var probe []netCell
	hasFlowIn := map[*netRole]bool{}
	for _, c := range cells {
		hasFlowIn[c.src] = hasFlowIn[c.src] || (c.want && c.dst.inNS)
	}
	for _, c := range cells {
		if (c.want && c.dst.inNS) || (c.want && c.dst.endpoint == tb.dns && !hasFlowIn[c.src]) ||
			(c.src.ns == netNS && c.dst.title == fmt.Sprintf("other-ns:%d", otherNSPort)) ||
			(c.src.title == "unlabelled" && c.dst.endpoint == tb.solver) {
			probe = append(probe, c)
		}
	}
	for {
		got, err := m.measure(ctx, probe)
		if err != nil {
			t.Fatal(err)
		}
		admitted := map[*netRole]bool{}
		for i, c := range probe {
			admitted[c.src] = admitted[c.src] || (c.want && got[i].open)
		}
		var left []string
		for i, c := range probe {
			if (!c.want && got[i].open) || (c.want && !admitted[c.src]) {
				left = append(left, c.src.title+"→"+c.dst.title)
			}
		}
		if len(left) == 0 {
			return time.Since(t0)
		}
		if time.Since(t0) > 90*time.Second {
			t.Logf("   after %s still not as the contract says (measured anyway): %s", time.Since(t0).Round(time.Second), strings.Join(left, " "))
			return time.Since(t0)
		}
		time.Sleep(2 * time.Second)
	}
}

// measure runs the cells, all of one probe pod in one exec, in parallel.
func (m netMatrix) measure(ctx context.Context, cells []netCell) ([]netResult, error) {
	bySrc := map[*netRole][]int{}
	for i, c := range cells {
		bySrc[c.src] = append(bySrc[c.src], i)
	}
	res := make([]netResult, len(cells))
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for src, idx := range bySrc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.measureFrom(ctx, src, cells, idx, res); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, errs[0]
	}
	return res, nil
}

// measureFrom runs one pod's probes in the background of one shell; each
// prints "@@ <cell> <exit code> <output>" (busybox 1.35's wget -T crashes,
// so nc and nslookup are bounded by timeout).
func (m netMatrix) measureFrom(ctx context.Context, src *netRole, cells []netCell, idx []int, res []netResult) error {
	var sh strings.Builder
	sh.WriteString(`p() { id=$1; shift; out=$(timeout ` + strconv.Itoa(probeTimeout+3) + ` "$@" 2>&1); rc=$?; printf '@@ %s %s %s\n' "$id" "$rc" "$(echo $out)"; }` + "\n")
	for _, i := range idx {
		d := cells[i].dst
		if d.udp {
			fmt.Fprintf(&sh, "p %d nslookup -type=a %s %s &\n", i, d.query, d.host)
		} else {
			fmt.Fprintf(&sh, "p %d nc -w %d %s %d -e true &\n", i, probeTimeout, d.host, d.port)
		}
	}
	sh.WriteString("wait\n")
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	out, err := m.kubectl(ctx, nil, "exec", "-n", src.ns, src.pod(), "--", "sh", "-c", sh.String())
	if err != nil {
		return fmt.Errorf("probes from %s: %w", src.title, err)
	}
	seen := map[int]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.SplitN(line, " ", 4)
		if len(f) < 3 || f[0] != "@@" {
			continue
		}
		i, err1 := strconv.Atoi(f[1])
		rc, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil || i < 0 || i >= len(res) {
			return fmt.Errorf("probes from %s: bad line %q", src.title, line)
		}
		msg := ""
		if len(f) == 4 {
			msg = f[3]
		}
		r, err := probeVerdict(rc, msg)
		if err != nil {
			return fmt.Errorf("probe %s → %s (%s:%d): %w", src.title, cells[i].dst.title, cells[i].dst.host, cells[i].dst.port, err)
		}
		res[i], seen[i] = r, true
	}
	for _, i := range idx {
		if !seen[i] {
			return fmt.Errorf("probes from %s: no answer for %s in:\n%s", src.title, cells[i].dst.title, out)
		}
	}
	return nil
}

// probeVerdict reads a probe's exit code and output. A refused or silent peer is
// closed (kube-router rejects, a dropped packet times out); anything else
// means the probe tested nothing.
func probeVerdict(rc int, out string) (netResult, error) {
	l := strings.ToLower(out)
	switch {
	case rc == 0:
		return netResult{open: true, how: "open", out: out}, nil
	case strings.Contains(l, "refused"):
		return netResult{how: "rej", out: out}, nil
	case rc == 143 || strings.Contains(l, "timed out") || strings.Contains(l, "no servers could be reached"):
		return netResult{how: "t/o", out: out}, nil
	case strings.Contains(l, "unreachable") || strings.Contains(l, "no route") || strings.Contains(l, "prohibited"):
		return netResult{how: "unreach", out: out}, nil
	}
	return netResult{}, fmt.Errorf("exit %d: %s", rc, out)
}

// renderMatrix prints targets as rows and roles as columns.
func renderMatrix(roles []*netRole, targets []*netTarget, cells []netCell, got []netResult) string {
	at := map[[2]any]int{}
	for i, c := range cells {
		at[[2]any{c.src, c.dst}] = i
	}
	w0 := len("to \\ from")
	for _, d := range targets {
		w0 = max(w0, len(d.title))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-*s", w0, "to \\ from")
	for _, r := range roles {
		fmt.Fprintf(&b, " %*s", max(len(r.title), 5), r.title)
	}
	b.WriteString("\n")
	for _, d := range targets {
		fmt.Fprintf(&b, "%-*s", w0, d.title)
		for _, r := range roles {
			cell := "self"
			if i, ok := at[[2]any{r, d}]; ok {
				cell = got[i].how
				if got[i].open != cells[i].want {
					cell += "!"
				}
			}
			fmt.Fprintf(&b, " %*s", max(len(r.title), 5), cell)
		}
		b.WriteString("\n")
	}
	return b.String()
}

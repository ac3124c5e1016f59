package main

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"gopkg.in/yaml.v3"

	"pressroom.dev/infra/cluster"
	"pressroom.dev/infra/cluster/boottest"
	"pressroom.dev/infra/cluster/cloudmock"
	"pressroom.dev/infra/network"
	"pressroom.dev/infra/platform"
	"pressroom.dev/stacks"
)

const (
	tDroplet    = "digitalocean:index/droplet:Droplet"
	tFirewall   = "digitalocean:index/firewall:Firewall"
	tVolume     = "digitalocean:index/volume:Volume"
	tRecord     = "cloudflare:index/record:Record"
	tProvider   = "pulumi:providers:kubernetes"
	tSelfSigned = "tls:index/selfSignedCert:SelfSignedCert"
)

// operatorSecrets stand in for `pulumi config set --secret ...`.
var operatorSecrets = map[string]string{
	"pressroom:googleClientSecret": "placeholder-client-secret",
	"pressroom:resendApiKey":       "re_placeholder",
}

// run is one mocked `pulumi up` of the program.
type run struct {
	mocks   *cloudmock.Mocks
	outputs map[string]any
	secret  map[string]bool
	probed  []string        // kubeconfigs handed to the readiness gate
	needs   []cluster.Needs // what the gate was asked to wait for, per call
	// versionsAsked counts the reads of the nodes' versions (the upgrade check).
	versionsAsked int
}

func stackConfig(t *testing.T, stack string, override map[string]string) map[string]string {
	t.Helper()
	cfg, err := stacks.ReadStackFile("../Pulumi." + stack + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range operatorSecrets {
		cfg[k] = v
	}
	for k, v := range override {
		cfg[k] = v
	}
	return cfg
}

func deployWith(t *testing.T, stack string, config map[string]string) (*run, error) {
	t.Helper()
	return deployOn(t, stack, config, []string{stacks.DefaultK3sVersion})
}

// deployOn is deployWith on nodes that run the given kubelet versions.
func deployOn(t *testing.T, stack string, config map[string]string, nodeVersions []string) (*run, error) {
	t.Helper()
	return deployRun(t, stack, config, nodeVersions, false)
}

// operatorAccount is a cloud account as the deploy steps leave it: the one
// container registry the stacks share was created once, by hand.
func operatorAccount() *cloudmock.Account {
	return &cloudmock.Account{Registries: map[string]string{"pressroom": "fra1"}}
}

// deployRun is one mocked `pulumi up`, or `pulumi preview` with dryRun.
func deployRun(t *testing.T, stack string, config map[string]string, nodeVersions []string, dryRun bool) (*run, error) {
	t.Helper()
	return deployIn(t, operatorAccount(), stack, config, nodeVersions, dryRun)
}

// deployIn is deployRun against a given account (shared by stacks).
func deployIn(t *testing.T, account *cloudmock.Account, stack string, config map[string]string, nodeVersions []string, dryRun bool) (*run, error) {
	t.Helper()
	r := &run{mocks: &cloudmock.Mocks{Account: account}, outputs: map[string]any{}, secret: map[string]bool{}}
	var mu sync.Mutex
	probe := func(_ context.Context, kc string, needs cluster.Needs, timeout time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		if timeout <= 0 {
			return fmt.Errorf("readiness gate without a bound")
		}
		r.probed = append(r.probed, kc)
		r.needs = append(r.needs, needs)
		return nil
	}
	secretKeys := []string{}
	for _, k := range stacks.SecretKeys() {
		secretKeys = append(secretKeys, stacks.Namespace+":"+k)
	}
	outs := map[string]pulumi.Output{}
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		out, err := deploy(ctx, cluster.Probes{Ready: probe, NodeVersions: func(_ context.Context, kc string) ([]string, error) {
			if kc == "" {
				return nil, fmt.Errorf("node versions asked without a kubeconfig")
			}
			mu.Lock()
			defer mu.Unlock()
			r.versionsAsked++
			return nodeVersions, nil
		}})
		for k, v := range out {
			outs[k] = pulumi.ToOutput(v)
		}
		return err
	}, pulumi.WithMocks("pressroom", stack, r.mocks), func(info *pulumi.RunInfo) {
		info.Config = config
		info.ConfigSecretKeys = secretKeys
		info.DryRun = dryRun
	})
	// Outputs built from config are not tracked by the run: await them here.
	for k, o := range outs {
		ch := make(chan any, 1)
		o.ApplyT(func(x any) any { ch <- x; return x })
		select {
		case x := <-ch:
			r.outputs[k], r.secret[k] = x, pulumi.IsSecret(o)
		case <-time.After(10 * time.Second):
			t.Fatalf("output %s never resolved", k)
		}
	}
	return r, err
}

func mustDeploy(t *testing.T, stack string, override map[string]string) *run {
	t.Helper()
	r, err := deployWith(t, stack, stackConfig(t, stack, override))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func str(v resource.PropertyValue) string {
	if v.IsSecret() {
		v = v.SecretValue().Element
	}
	if v.IsString() {
		return v.StringValue()
	}
	return ""
}

func in(r cloudmock.Resource, k string) resource.PropertyValue {
	v := r.Inputs[resource.PropertyKey(k)]
	if v.IsSecret() {
		return v.SecretValue().Element
	}
	return v
}

func strs(v resource.PropertyValue) []string {
	var out []string
	if v.IsSecret() {
		v = v.SecretValue().Element
	}
	if !v.IsArray() {
		return nil
	}
	for _, e := range v.ArrayValue() {
		out = append(out, str(e))
	}
	return out
}

type rule struct{ Protocol, Ports, CIDRs string }

func firewallRules(t *testing.T, fw cloudmock.Resource, key string, peers string) []rule {
	t.Helper()
	var out []rule
	for _, e := range in(fw, key).ArrayValue() {
		o := e.ObjectValue()
		out = append(out, rule{str(o["protocol"]), str(o["portRange"]), strings.Join(strs(o[resource.PropertyKey(peers)]), ",")})
	}
	return out
}

// cloudInit boots a droplet's user data in a scratch root (boottest) and
// returns its K3s config, the script, and every file it wrote.
func cloudInit(t *testing.T, d cloudmock.Resource) (k3s map[string]any, script string, files map[string]string) {
	t.Helper()
	ud := str(d.Inputs["userData"])
	if !d.Inputs["userData"].IsSecret() {
		t.Errorf("%s: user data carries CA keys and the token and must be secret", d.Name)
	}
	m := regexp.MustCompile(`(?m)^version='([^']+)'$`).FindStringSubmatch(ud)
	if m == nil {
		t.Fatalf("%s: user data names no K3s version:\n%.300s", d.Name, ud)
	}
	n := boottest.New(t)
	const meta = "http://169.254.169.254/metadata/v1/interfaces/"
	n.Fixtures[meta+"private/0/ipv4/address"] = str(d.Outputs["ipv4AddressPrivate"])
	n.Fixtures[meta+"public/0/ipv4/address"] = str(d.Outputs["ipv4Address"])
	binary := "k3s " + m[1] + "\n"
	n.Fixtures[cluster.InstallScriptURL(m[1])] = boottest.Installer
	n.Fixtures[cluster.BinaryURL(m[1])] = binary
	n.Fixtures[cluster.ChecksumsURL(m[1])] = boottest.SHA256(binary) + "  k3s\n"
	if dev := regexp.MustCompile(`/dev/disk/by-id/scsi-0DO_Volume_[a-z0-9-]+`).FindString(ud); dev != "" {
		n.Device(dev)
	}
	r := n.Run(ud)
	if r.Err != nil {
		t.Fatalf("%s: user data failed to boot: %v\n%s", d.Name, r.Err, r.Stderr)
	}
	files = map[string]string{}
	for p, f := range r.Files {
		files[p] = f.Content
	}
	if err := yaml.Unmarshal([]byte(files[cluster.K3sConfig]), &k3s); err != nil {
		t.Fatal(err)
	}
	return k3s, ud, files
}

// stackK3sVersion is the K3s release a stack file pins.
func stackK3sVersion(t *testing.T, stack string) string {
	t.Helper()
	var c struct {
		K3sVersion string `json:"k3sVersion"`
	}
	if err := json.Unmarshal([]byte(stackConfig(t, stack, nil)["pressroom:cluster"]), &c); err != nil || c.K3sVersion == "" {
		t.Fatalf("%s stack file: cluster.k3sVersion: %v", stack, err)
	}
	return c.K3sVersion
}

func caByCN(t *testing.T, m *cloudmock.Mocks, cn string) *x509.Certificate {
	t.Helper()
	for _, r := range m.ByType(tSelfSigned) {
		c, err := cloudmock.ParseCert(str(r.Outputs["certPem"]))
		if err != nil {
			t.Fatal(err)
		}
		if c.Subject.CommonName == cn {
			return c
		}
	}
	t.Fatalf("no CA %s", cn)
	return nil
}

func TestStagingGraph(t *testing.T) {
	r := mustDeploy(t, "staging", nil)
	m := r.mocks
	want := map[string]int{
		"digitalocean:index/vpc:Vpc":                                   1,
		"digitalocean:index/tag:Tag":                                   1,
		"digitalocean:index/sshKey:SshKey":                             1, // generated: staging lists no key
		tFirewall:                                                      1,
		"digitalocean:index/reservedIp:ReservedIp":                     1,
		"digitalocean:index/reservedIpAssignment:ReservedIpAssignment": 1,
		tVolume:                              1,
		tDroplet:                             1,
		"digitalocean:index/project:Project": 1,
		tRecord:                              2,
		"tls:index/privateKey:PrivateKey":    8, // 5 CAs, service account, admin, ssh
		tSelfSigned:                          5,
		"tls:index/certRequest:CertRequest":  1,
		"tls:index/locallySignedCert:LocallySignedCert": 1,
		"random:index/randomPassword:RandomPassword":    1,
		tProvider: 1,
	}
	got := map[string]int{}
	for _, r := range m.Resources() {
		// the cloud layer's own resources (the platform's are counted elsewhere)
		if strings.HasPrefix(r.Name, "cluster") || strings.HasPrefix(r.Name, "network") || strings.HasPrefix(r.Name, "dns") || strings.HasPrefix(r.Name, "pressroom-") {
			got[r.Type]++
		}
	}
	for typ, n := range want {
		if got[typ] != n {
			t.Errorf("%s: %d resources, want %d", typ, got[typ], n)
		}
	}

	// Firewall: exactly as specified.
	fw := m.ByType(tFirewall)[0]
	if tags := strs(in(fw, "tags")); !reflect.DeepEqual(tags, []string{"pressroom-staging"}) {
		t.Errorf("firewall tags %v", tags)
	}
	wantIn := []rule{
		{"tcp", "22", "203.0.113.10/32"},
		{"tcp", "6443", "203.0.113.10/32"},
		{"tcp", "80", "0.0.0.0/0,::/0"},
		{"tcp", "443", "0.0.0.0/0,::/0"},
		{"icmp", "", "0.0.0.0/0,::/0"},
		{"tcp", "6443", "10.110.0.0/20"},
		{"tcp", "10250", "10.110.0.0/20"},
		{"udp", "8472", "10.110.0.0/20"},
	}
	if gotIn := firewallRules(t, fw, "inboundRules", "sourceAddresses"); !reflect.DeepEqual(gotIn, wantIn) {
		t.Errorf("inbound rules\n got %v\nwant %v", gotIn, wantIn)
	}
	if out := firewallRules(t, fw, "outboundRules", "destinationAddresses"); len(out) != 3 {
		t.Errorf("outbound rules %v", out)
	}

	// DNS: apex and www, DNS-only, at the reserved IP.
	names := []string{}
	for _, rec := range m.ByType(tRecord) {
		names = append(names, str(in(rec, "name")))
		if p := in(rec, "proxied"); !p.IsBool() || p.BoolValue() {
			t.Errorf("record %s must be DNS-only (proxied=false), got %v", rec.Name, p)
		}
		if str(in(rec, "content")) != "198.51.100.7" || str(in(rec, "type")) != "A" || str(in(rec, "zoneId")) != "0123456789abcdef0123456789abcdef" {
			t.Errorf("record %s inputs %v", rec.Name, rec.Inputs)
		}
	}
	sort.Strings(names)
	if !reflect.DeepEqual(names, []string{"staging.example.com", "www.staging.example.com"}) {
		t.Errorf("record names %v", names)
	}

	// The node: pinned K3s, CA files, tls-san, replacement safety.
	d := m.ByType(tDroplet)[0]
	k3s, script, files := cloudInit(t, d)
	if v := stackK3sVersion(t, "staging"); files[cluster.InstalledStamp] != v+"\n" || !strings.Contains(script, cluster.BinaryURL(v)) {
		t.Errorf("bootstrap does not install the pinned K3s: %s", script)
	}
	for _, f := range []string{"server-ca.crt", "server-ca.key", "client-ca.crt", "client-ca.key", "request-header-ca.crt",
		"request-header-ca.key", "etcd/server-ca.crt", "etcd/peer-ca.crt", "service.key"} {
		if !strings.Contains(files[cluster.TLSDir+"/"+f], "-----BEGIN") {
			t.Errorf("user data lacks %s", f)
		}
	}
	if sans := fmt.Sprint(k3s["tls-san"]); sans != "[198.51.100.7 k8s.staging.example.com]" {
		t.Errorf("tls-san %s", sans)
	}
	// embedded etcd even alone, so servers can join later
	if k3s["cluster-init"] != true || k3s["server"] != nil {
		t.Errorf("a single server starts embedded etcd and joins nothing: %v", k3s)
	}
	if !reflect.DeepEqual(d.IgnoreChanges, []string{"userData", "image", "sshKeys"}) {
		t.Errorf("droplet ignoreChanges %v", d.IgnoreChanges)
	}
	if mon := in(d, "monitoring"); !mon.IsBool() || !mon.BoolValue() {
		t.Error("droplet monitoring must be on")
	}
	if vols := strs(in(d, "volumeIds")); len(vols) != 1 {
		t.Errorf("first node volumes %v", vols)
	}
	if v := m.ByType(tVolume)[0]; v.Protect || d.Protect {
		t.Error("staging resources are not protected")
	}
	for _, res := range m.Resources() {
		if res.Protect {
			t.Errorf("staging %s %s is protected", res.Type, res.Name)
		}
	}

	// Outputs.
	for k, v := range map[string]any{"url": "https://staging.example.com", "wwwUrl": "https://www.staging.example.com", "ip": "198.51.100.7"} {
		if r.outputs[k] != v {
			t.Errorf("output %s = %v, want %v", k, r.outputs[k], v)
		}
	}
	if ips := fmt.Sprint(r.outputs["nodeIps"]); ips != "[198.51.100.7]" {
		t.Errorf("nodeIps %s", ips)
	}
	if !strings.Contains(fmt.Sprint(r.outputs["sshCommand"]), "root@198.51.100.7") {
		t.Errorf("sshCommand %v", r.outputs["sshCommand"])
	}
	for _, k := range []string{"kubeconfig", "sshPrivateKey"} {
		if !r.secret[k] || r.outputs[k] == "" {
			t.Errorf("output %s must be a non-empty secret (secret=%v)", k, r.secret[k])
		}
	}
	if len(r.probed) != 1 || r.probed[0] != r.outputs["kubeconfig"] {
		t.Errorf("the readiness gate must see the exported kubeconfig once, saw %d", len(r.probed))
	}

	// The provider: the gated kubeconfig and a stable cluster identity.
	p := m.ByType(tProvider)[0]
	if str(in(p, "clusterIdentifier")) != "pressroom-staging" || str(in(p, "kubeconfig")) != r.outputs["kubeconfig"] {
		t.Errorf("provider inputs %v", p.Inputs)
	}
}

func TestKubeconfigVerifiesAgainstTheGeneratedCAs(t *testing.T) {
	r := mustDeploy(t, "staging", nil)
	kc, err := cluster.ParseKubeconfig(r.outputs["kubeconfig"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if len(kc.Clusters) != 1 || kc.Clusters[0].Cluster.Server != "https://198.51.100.7:6443" {
		t.Fatalf("clusters %+v", kc.Clusters)
	}
	server, tlsCfg, _, err := kc.Current()
	if err != nil || server == "" || len(tlsCfg.Certificates) != 1 {
		t.Fatalf("current: %v %v", server, err)
	}
	client, err := x509.ParseCertificate(tlsCfg.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	clientCA := caByCN(t, r.mocks, cluster.ClientCACN)
	serverCA := caByCN(t, r.mocks, cluster.ServerCACN)
	roots := x509.NewCertPool()
	roots.AddCert(clientCA)
	if _, err := client.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("admin certificate does not verify against the client CA: %v", err)
	}
	serverOnly := x509.NewCertPool()
	serverOnly.AddCert(serverCA)
	if _, err := client.Verify(x509.VerifyOptions{Roots: serverOnly, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("admin certificate must not verify against the server CA")
	}
	if !reflect.DeepEqual(client.Subject.Organization, []string{cluster.AdminOrg}) || client.Subject.CommonName != cluster.AdminCN {
		t.Errorf("admin subject %v", client.Subject)
	}
	caData, _ := base64.StdEncoding.DecodeString(kc.Clusters[0].Cluster.CertificateAuthorityData)
	b, _ := pem.Decode(caData)
	if b == nil || !serverCA.Equal(mustParse(t, b.Bytes)) {
		t.Error("kubeconfig must trust exactly the generated server CA")
	}
	if !clientCA.IsCA || clientCA.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Error("client CA must be a signing CA")
	}
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestProdGraphIsHAAndProtected(t *testing.T) {
	r := mustDeploy(t, "prod", nil)
	m := r.mocks
	drops := m.ByType(tDroplet)
	if len(drops) != 3 {
		t.Fatalf("%d droplets, want 3", len(drops))
	}
	var token string
	for i, d := range drops {
		k3s, script, _ := cloudInit(t, d)
		if i == 0 {
			token = fmt.Sprint(k3s["token"])
			if k3s["cluster-init"] != true || k3s["server"] != nil {
				t.Errorf("first server must start embedded etcd: %v", k3s)
			}
			if !strings.Contains(script, "DO_Volume_pressroom-prod-data") {
				t.Error("first server mounts the data volume")
			}
		} else {
			if k3s["server"] != "https://10.110.0.2:6443" || k3s["cluster-init"] != nil {
				t.Errorf("node %d join config %v", i+1, k3s)
			}
			if fmt.Sprint(k3s["token"]) != token || len(token) != 48 {
				t.Errorf("node %d must share the 48-character token", i+1)
			}
			if len(strs(in(d, "volumeIds"))) != 0 {
				t.Errorf("node %d must not attach the volume", i+1)
			}
		}
		if !d.Protect {
			t.Errorf("prod droplet %s must be protected", d.Name)
		}
		if !strings.Contains(fmt.Sprint(k3s["tls-san"]), "k8s.example.com") {
			t.Errorf("tls-san %v", k3s["tls-san"])
		}
	}
	if !m.ByType(tVolume)[0].Protect {
		t.Error("prod volume must be protected")
	}
	// What a running cluster cannot get back: its CAs, service-account key,
	// join token, and the passwords its databases were initialised with.
	passwords := 0
	for _, typ := range []string{"tls:index/privateKey:PrivateKey", tSelfSigned, "random:index/randomPassword:RandomPassword"} {
		for _, res := range m.ByType(typ) {
			datastore := res.Name == "postgres-superuser" || res.Name == "redis" || strings.HasPrefix(res.Name, "db-")
			if datastore {
				passwords++
			}
			if (datastore || strings.HasPrefix(res.Name, "cluster-") && !strings.HasPrefix(res.Name, "cluster-admin")) && !res.Protect {
				t.Errorf("prod %s %s must be protected", typ, res.Name)
			}
		}
	}
	if passwords != 6 {
		t.Errorf("%d datastore passwords, want 6", passwords)
	}
	// etcd ports open only inside the VPC.
	fw := m.ByType(tFirewall)[0]
	etcd := 0
	for _, rl := range firewallRules(t, fw, "inboundRules", "sourceAddresses") {
		if rl.Ports == "2379-2380" {
			etcd++
			if rl.CIDRs != "10.120.0.0/20" {
				t.Errorf("etcd ports open to %s", rl.CIDRs)
			}
		}
		if rl.Ports == "22" && rl.CIDRs != "203.0.113.10/32,198.51.100.0/28" {
			t.Errorf("ssh open to %s", rl.CIDRs)
		}
	}
	if etcd != 1 {
		t.Errorf("%d etcd rules, want 1", etcd)
	}
	// Only the volume holder is deleted before its replacement is created:
	// DigitalOcean attaches a volume to one droplet at a time.
	for i, d := range drops {
		if d.DeleteBeforeReplace != (i == 0) {
			t.Errorf("droplet %s deleteBeforeReplace = %v", d.Name, d.DeleteBeforeReplace)
		}
	}
	// Hairpin: each name's A records are exactly the servers' external IPs,
	// which ServiceLB puts in Traefik's LoadBalancer status and kube-proxy
	// then answers inside the cluster.
	external := map[string]bool{}
	for _, d := range drops {
		k3s, _, _ := cloudInit(t, d)
		external[fmt.Sprint(k3s["node-external-ip"])] = true
		if k3s["advertise-address"] != k3s["node-ip"] || !strings.HasPrefix(fmt.Sprint(k3s["node-ip"]), "10.110.") {
			t.Errorf("%s: the API must advertise its VPC address: %v", d.Name, k3s)
		}
	}
	// DNS points at all three servers.
	recs := m.ByType(tRecord)
	if len(recs) != 6 {
		t.Fatalf("%d records, want 6", len(recs))
	}
	targets := map[string]bool{}
	for _, rec := range recs {
		targets[str(in(rec, "content"))] = true
	}
	if !reflect.DeepEqual(targets, map[string]bool{"198.51.100.7": true, "203.0.113.12": true, "203.0.113.13": true}) {
		t.Errorf("DNS targets %v", targets)
	}
	if !reflect.DeepEqual(targets, external) {
		t.Errorf("DNS targets %v, servers' external IPs %v", targets, external)
	}
	if len(m.ByType("digitalocean:index/sshKey:SshKey")) != 1 || r.outputs["sshPrivateKey"] != nil {
		t.Error("prod lists its own key: no key is generated")
	}
	if fmt.Sprint(r.outputs["sshCommand"]) != "ssh root@198.51.100.7" {
		t.Errorf("sshCommand %v", r.outputs["sshCommand"])
	}
	if fmt.Sprint(r.outputs["nodeIps"]) != "[198.51.100.7 203.0.113.12 203.0.113.13]" {
		t.Errorf("nodeIps %v", r.outputs["nodeIps"])
	}
}

func TestFirewallRulesHelper(t *testing.T) {
	for _, ha := range []bool{false, true} {
		for _, r := range network.InboundRules([]string{"192.0.2.1/32"}, "10.1.0.0/20", ha) {
			if r.Ports == "22" || r.Ports == "2379-2380" || r.Ports == "10250" {
				if strings.Contains(strings.Join(r.CIDRs, ","), "0.0.0.0/0") {
					t.Errorf("port %s open to the internet", r.Ports)
				}
			}
		}
	}
}

func noCloud(t *testing.T, m *cloudmock.Mocks) {
	t.Helper()
	for _, r := range m.Resources() {
		for _, bad := range []string{"digitalocean:", "cloudflare:", "command:", "docker:", "pulumi:providers:digitalocean", "pulumi:providers:cloudflare"} {
			if strings.HasPrefix(r.Type, bad) {
				t.Errorf("%s mode registered %s %s", "no-cloud", r.Type, r.Name)
			}
		}
	}
}

// pinnedImages gives every service a prebuilt image, as no-cloud stacks must.
func pinnedImages() string {
	var parts []string
	for i, svc := range stacks.Services {
		parts = append(parts, fmt.Sprintf("%q:%q", svc, fmt.Sprintf("registry.example.com/pressroom/%s@sha256:%064x", svc, i+1)))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

const localKubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}
users:
- name: admin
  user: {token: abc}
contexts:
- name: local
  context: {cluster: local, user: admin}
current-context: local
`

func TestExistingModeCreatesNoCloudResources(t *testing.T) {
	r := mustDeploy(t, "staging", map[string]string{
		"pressroom:cluster":    `{"mode":"existing"}`,
		"pressroom:kubeconfig": localKubeconfig,
		"pressroom:registry":   `{"kind":"none"}`,
		"pressroom:images":     pinnedImages(),
	})
	noCloud(t, r.mocks)
	ps := r.mocks.ByType(tProvider)
	if len(ps) != 1 || str(in(ps[0], "kubeconfig")) != localKubeconfig || str(in(ps[0], "clusterIdentifier")) != "pressroom-staging" {
		t.Fatalf("providers %v", ps)
	}
	if len(r.probed) != 1 {
		t.Error("existing clusters also pass the readiness gate")
	}
	if !r.secret["kubeconfig"] {
		t.Error("kubeconfig output must be secret")
	}
	for _, k := range []string{"ip", "nodeIps", "sshCommand"} {
		if _, ok := r.outputs[k]; ok {
			t.Errorf("existing mode exports %s", k)
		}
	}
}

// The readiness gate waits for what the platform creates objects of:
// Traefik's Middleware CRD always, cert-manager's CRDs when the stack does
// not install cert-manager; a preview waits for nothing.
func TestReadinessGateWaitsForWhatThePlatformNeeds(t *testing.T) {
	existing := map[string]string{
		"pressroom:cluster": `{"mode":"existing"}`, "pressroom:kubeconfig": localKubeconfig,
		"pressroom:registry": `{"kind":"none"}`, "pressroom:images": pinnedImages(),
	}
	names := func(r *run) []string {
		if len(r.needs) != 1 {
			t.Fatalf("the gate was asked %d times, want once", len(r.needs))
		}
		var out []string
		for _, c := range r.needs[0].CRDs {
			out = append(out, c.Name)
		}
		return out
	}
	if got := names(mustDeploy(t, "staging", nil)); strings.Join(got, " ") != "middlewares.traefik.io" {
		t.Errorf("digitalocean mode, cert-manager installed by the stack: the gate waits for CRDs %v", got)
	}
	preinstalled := map[string]string{"pressroom:certManager": `{"install":false}`}
	for k, v := range existing {
		preinstalled[k] = v
	}
	if got := names(mustDeploy(t, "staging", preinstalled)); strings.Join(got, " ") != "middlewares.traefik.io clusterissuers.cert-manager.io certificates.cert-manager.io" {
		t.Errorf("existing mode with cert-manager preinstalled: the gate waits for CRDs %v", got)
	}
	r, err := deployRun(t, "staging", stackConfig(t, "staging", existing), []string{stacks.DefaultK3sVersion}, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.probed) != 0 {
		t.Errorf("a preview waited for the cluster %d times", len(r.probed))
	}
}

func TestRenderModeCreatesNoCloudResources(t *testing.T) {
	r := mustDeploy(t, "staging", map[string]string{
		"pressroom:cluster":  `{"mode":"render","renderDir":"out/manifests"}`,
		"pressroom:registry": `{"kind":"none"}`,
		"pressroom:images":   pinnedImages(),
	})
	noCloud(t, r.mocks)
	ps := r.mocks.ByType(tProvider)
	if len(ps) != 1 || str(in(ps[0], "renderYamlToDirectory")) != "out/manifests" {
		t.Fatalf("providers %v", ps)
	}
	if len(r.probed) != 0 {
		t.Error("render mode has no API server to wait for")
	}
	if r.outputs["url"] != "https://staging.example.com" {
		t.Errorf("url %v", r.outputs["url"])
	}
}

func TestInvalidConfigFailsBeforeAnyResource(t *testing.T) {
	r, err := deployWith(t, "staging", stackConfig(t, "staging", map[string]string{
		"pressroom:domain":  "not a domain",
		"pressroom:cluster": `{"nodes":2,"adminCidrs":["0.0.0.0/0"]}`,
	}))
	if err == nil {
		t.Fatal("invalid config deployed")
	}
	for _, want := range []string{
		`pressroom:domain: must be a DNS name like example.com (got "not a domain")`,
		"pressroom:cluster.nodes: must be 1, or 3",
		"pressroom:cluster.adminCidrs: entry 1 (0.0.0.0/0) opens SSH and the Kubernetes API to the whole internet",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if n := len(r.mocks.Resources()); n != 0 {
		t.Errorf("%d resources registered before validation failed", n)
	}
}

func TestPlainTextSecretsAreRefused(t *testing.T) {
	cfg := stackConfig(t, "staging", nil)
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		_, err := deploy(ctx, cluster.Probes{})
		return err
	}, pulumi.WithMocks("pressroom", "staging", &cloudmock.Mocks{}), func(info *pulumi.RunInfo) {
		info.Config = cfg // no ConfigSecretKeys: as if set without --secret
	})
	if err == nil || !strings.Contains(err.Error(), "pressroom:googleClientSecret: is stored in plain text; run `pulumi config set --secret googleClientSecret <value>`") {
		t.Errorf("plain-text secret accepted: %v", err)
	}
}

// kinds counts the Kubernetes objects of the platform by kind.
func kinds(m *cloudmock.Mocks) map[string]int {
	out := map[string]int{}
	for _, r := range m.Resources() {
		if strings.HasPrefix(r.Type, "kubernetes:") && r.Custom {
			out[r.Type[strings.LastIndex(r.Type, ":")+1:]]++
		}
	}
	return out
}

// onProvider checks that every Kubernetes object goes through the stack's
// provider (never an ambient kubeconfig) and returns how many there are.
func onProvider(t *testing.T, m *cloudmock.Mocks, stack string) int {
	t.Helper()
	n := 0
	for _, r := range m.Resources() {
		if !strings.HasPrefix(r.Type, "kubernetes:") || !r.Custom {
			continue
		}
		n++
		if !strings.Contains(r.Provider, "pulumi:providers:kubernetes::pressroom-"+stack+"-k8s::") {
			t.Errorf("%s %s uses provider %q, not the stack's", r.Type, r.Name, r.Provider)
		}
	}
	return n
}

func TestWholeGraphPerStack(t *testing.T) {
	for _, tc := range []struct {
		stack    string
		override map[string]string
		docker   int // images built by the stack
	}{
		{"staging", nil, 5},
		{"prod", nil, 5},
		{"staging", map[string]string{
			"pressroom:cluster": `{"mode":"existing"}`, "pressroom:kubeconfig": localKubeconfig,
			"pressroom:registry": `{"kind":"none"}`, "pressroom:images": pinnedImages(),
		}, 0},
		{"staging", map[string]string{
			"pressroom:cluster":  `{"mode":"render"}`,
			"pressroom:registry": `{"kind":"none"}`, "pressroom:images": pinnedImages(),
		}, 0},
	} {
		mode := tc.stack
		if tc.override != nil {
			mode = tc.override["pressroom:cluster"]
		}
		t.Run(mode, func(t *testing.T) {
			r := mustDeploy(t, tc.stack, tc.override)
			m := r.mocks
			if n := onProvider(t, m, tc.stack); n < 30 {
				t.Errorf("only %d Kubernetes objects on the stack's provider", n)
			}
			k := kinds(m)
			for kind, min := range map[string]int{"Deployment": 5, "StatefulSet": 3, "Service": 5, "Ingress": 1,
				"HorizontalPodAutoscaler": 2, "PodDisruptionBudget": 2, "NetworkPolicy": 2, "Namespace": 1} {
				if k[kind] < min {
					t.Errorf("%d %s objects, want at least %d (all: %v)", k[kind], kind, min, k)
				}
			}
			if got := len(m.ByType("docker:index/image:Image")); got != tc.docker {
				t.Errorf("%d images built, want %d", got, tc.docker)
			}
			// The readiness gate: in digitalocean mode the provider waits for the servers.
			p := m.ByType(tProvider)[0]
			if tc.override == nil {
				deps := strings.Join(p.Deps, " ")
				for _, want := range []string{"ReservedIpAssignment", "Droplet"} {
					if !strings.Contains(deps, want) {
						t.Errorf("provider does not depend on the %s: %v", want, p.Deps)
					}
				}
			}
			if imgs, _ := r.outputs["images"].(map[string]string); len(imgs) != 5 {
				t.Errorf("images output %v", r.outputs["images"])
			}
			// K3s upgrades: only where the stack owns K3s (existing clusters opt in).
			plans, releases := m.ByType("kubernetes:upgrade.cattle.io/v1:Plan"), m.ByType("kubernetes:yaml/v2:ConfigGroup")
			if tc.override != nil {
				if len(plans)+len(releases) != 0 || r.outputs["k3sVersion"] != nil {
					t.Errorf("%d upgrade Plans and %d releases outside digitalocean mode", len(plans), len(releases))
				}
				return
			}
			if len(plans) != 1 || len(releases) != 1 {
				t.Fatalf("%d upgrade Plans and %d controller releases, want one of each", len(plans), len(releases))
			}
			spec := in(plans[0], "spec").ObjectValue()
			if v := str(spec["version"]); v != "v1.36.4+k3s1" || r.outputs["k3sVersion"] != v || r.outputs["upgradePlan"] != "system-upgrade/k3s-server" {
				t.Errorf("plan version %q, outputs %v %v: want the stack's cluster.k3sVersion", v, r.outputs["k3sVersion"], r.outputs["upgradePlan"])
			}
			if deps := strings.Join(releases[0].Deps, " "); !strings.Contains(deps, "Droplet") {
				t.Errorf("the controller is applied before the servers are up: deps %v", releases[0].Deps)
			}
			if r.versionsAsked != 1 {
				t.Errorf("the nodes' versions were read %d times before the Plan, want once", r.versionsAsked)
			}
			if v := spec["version"]; v.IsSecret() || v.ContainsUnknowns() {
				t.Errorf("the Plan's version should be plain text, got %v", v)
			}
		})
	}
}

// The platform pins persistent pods to the node the cluster layer labels as
// holding the data volume; the two must name the same label.
func TestDataNodeLabelAgrees(t *testing.T) {
	if want := platform.DataNodeLabel + "=true"; cluster.DataLabel != want {
		t.Fatalf("cluster labels the data node %q, the platform selects %q", cluster.DataLabel, want)
	}
}

// infra/README.md's Outputs table names exactly what the program exports, across
// the modes (generated SSH key in staging, given keys in prod, no cloud).
func TestReadmeListsEveryStackOutput(t *testing.T) {
	exported := map[string]bool{}
	for _, tc := range []struct {
		stack    string
		override map[string]string
	}{
		{"staging", nil},
		{"prod", nil},
		{"staging", map[string]string{
			"pressroom:cluster": `{"mode":"existing"}`, "pressroom:kubeconfig": localKubeconfig,
			"pressroom:registry": `{"kind":"none"}`, "pressroom:images": pinnedImages(),
		}},
	} {
		for k := range mustDeploy(t, tc.stack, tc.override).outputs {
			exported[k] = true
		}
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	start := strings.Index(section, "\n## Outputs\n")
	if start < 0 {
		t.Fatal("README has no ## Outputs section")
	}
	section = section[start+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	documented := map[string]bool{}
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || !strings.Contains(cells[1], "`") {
			continue
		}
		for _, name := range regexp.MustCompile("`([A-Za-z0-9]+)`").FindAllStringSubmatch(cells[1], -1) {
			documented[name[1]] = true
		}
	}
	for k := range exported {
		if !documented[k] {
			t.Errorf("stack output %q is not in the README's Outputs table", k)
		}
	}
	for k := range documented {
		if !exported[k] {
			t.Errorf("the README's Outputs table lists %q, which no stack exports", k)
		}
	}
	if len(exported) < 12 {
		t.Errorf("only %d outputs exported: %v", len(exported), exported)
	}
}

// The Plan never asks K3s to downgrade a node or to skip a minor version: the
// update fails with what to set instead.
func TestK3sVersionIsCheckedAgainstTheNodes(t *testing.T) {
	for _, tc := range []struct {
		nodes []string
		want  string
	}{
		{[]string{"v1.36.4+k3s1", "v1.37.2+k3s1"}, "cluster.k3sVersion v1.36.4+k3s1 is older than v1.37.2+k3s1, which a node runs: K3s does not support downgrades; set cluster.k3sVersion to v1.37.2+k3s1 or newer"},
		// A stack still on v1.31 cannot take the new default in one step.
		{[]string{"v1.31.4+k3s1"}, "cluster.k3sVersion v1.36.4+k3s1 skips a minor version: the oldest node runs v1.31.4; upgrade to a v1.32 release first"},
		{[]string{"v1.34.9+k3s1", "v1.35.8+k3s1"}, "cluster.k3sVersion v1.36.4+k3s1 skips a minor version: the oldest node runs v1.34.9; upgrade to a v1.35 release first"},
	} {
		_, err := deployOn(t, "staging", stackConfig(t, "staging", nil), tc.nodes)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("nodes %v: got %v, want %q", tc.nodes, err, tc.want)
		}
	}
	if _, err := deployOn(t, "staging", stackConfig(t, "staging", nil), []string{"v1.35.8+k3s1", "v1.36.4+k3s1"}); err != nil {
		t.Errorf("one minor ahead of the oldest node is an upgrade: %v", err)
	}
}

// One DigitalOcean account holds one registry: every stack pushes to it,
// none creates (or, on destroy, deletes) it.
func TestStacksShareTheAccountsRegistry(t *testing.T) {
	account := operatorAccount()
	for _, stack := range []string{"staging", "prod"} {
		r, err := deployIn(t, account, stack, stackConfig(t, stack, nil), []string{stackK3sVersion(t, stack)}, false)
		if err != nil {
			t.Fatalf("%s after the other stacks: %v", stack, err)
		}
		if n := len(r.mocks.ByType("digitalocean:index/containerRegistry:ContainerRegistry")); n != 0 {
			t.Errorf("%s declares %d registries; it must use the account's", stack, n)
		}
		imgs, _ := r.outputs["images"].(map[string]string)
		for svc, ref := range imgs {
			if !strings.HasPrefix(fmt.Sprint(ref), "registry.digitalocean.com/pressroom/"+svc+"@sha256:") {
				t.Errorf("%s image %s = %v", stack, svc, ref)
			}
		}
		if len(imgs) != 5 {
			t.Errorf("%s images %v", stack, r.outputs["images"])
		}
	}
	if len(account.Registries) != 1 {
		t.Errorf("account registries %v", account.Registries)
	}
	_, err := deployIn(t, &cloudmock.Account{}, "staging", stackConfig(t, "staging", nil), []string{stackK3sVersion(t, "staging")}, false)
	if err == nil || !strings.Contains(err.Error(), "doctl registry create pressroom --subscription-tier basic --region fra1") {
		t.Errorf("an account without the registry: %v", err)
	}
}

// A name that already has the stack's record (a state lost, an `up`
// interrupted after Cloudflare created it) is adopted, not refused or
// doubled. Another address on the name (the old server) is the operator's
// to delete at cutover: Cloudflare keeps several A records on one name.
func TestDNSAdoptsRecordsAlreadyThere(t *testing.T) {
	account := operatorAccount()
	zone := "0123456789abcdef0123456789abcdef"
	account.Records = []cloudmock.DNSRecord{
		{Zone: zone, Name: "staging.example.com", Type: "A", Content: "198.51.100.7"},
		{Zone: zone, Name: "www.staging.example.com", Type: "A", Content: "192.0.2.10"},
	}
	if _, err := deployIn(t, account, "staging", stackConfig(t, "staging", nil), []string{stackK3sVersion(t, "staging")}, false); err != nil {
		t.Fatal(err)
	}
	if got := account.RecordsNamed("staging.example.com"); len(got) != 1 || got[0].Content != "198.51.100.7" {
		t.Errorf("apex records %v, want the one at the reserved IP", got)
	}
	if got := account.RecordsNamed("www.staging.example.com"); len(got) != 2 {
		t.Errorf("www records %v: the old server's record stays until the operator deletes it", got)
	}
}

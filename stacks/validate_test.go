package stacks

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"golang.org/x/crypto/ssh"
)

// renderStack is a valid render-mode stack: no cloud, no secrets needed.
func renderStack() map[string]string {
	return map[string]string{
		"pressroom:domain":  "example.com",
		"pressroom:cluster": `{"mode":"render"}`,
		"pressroom:acme":    `{"email":"ops@example.com"}`,
		"pressroom:app":     `{"googleLoginEnabled":false}`,
		"pressroom:images":  allImages(),
	}
}

// existingStack is a valid existing-mode stack.
// testKubeconfig is the smallest kubeconfig existing mode accepts.
const testKubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443"}
users:
- name: u
  user: {token: t}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
`

func existingStack() map[string]string {
	v := renderStack()
	v["pressroom:cluster"] = `{"mode":"existing"}`
	v["pressroom:kubeconfig"] = testKubeconfig
	return v
}

// stagingStack is the example staging stack with the operator's secrets.
func stagingStack(t *testing.T) map[string]string {
	t.Helper()
	raw, err := ReadStackFile("../Pulumi.staging.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return withSecrets(raw)
}

// set returns values with one setting of an object key replaced.
func set(t *testing.T, values map[string]string, key, field string, v any) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, s := range values {
		out[k] = s
	}
	obj := map[string]any{}
	if raw := out["pressroom:"+key]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &obj); err != nil {
			t.Fatal(err)
		}
	}
	obj[field] = v
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	out["pressroom:"+key] = string(b)
	return out
}

// with returns values with top-level keys replaced.
func with(values map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, s := range values {
		out[k] = s
	}
	for i := 0; i < len(kv); i += 2 {
		out["pressroom:"+kv[i]] = kv[i+1]
	}
	return out
}

type refusal struct {
	name   string
	values map[string]string
	want   []string // each must be in some problem
}

func wantRefused(t *testing.T, cases []refusal) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load("staging", tc.values)
			if cfg != nil {
				t.Fatalf("accepted: %+v", cfg)
			}
			ps := problems(t, err)
			for _, w := range tc.want {
				wantProblem(t, ps, w)
			}
		})
	}
}

func wantAccepted(t *testing.T, cases map[string]map[string]string) {
	t.Helper()
	for name, values := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Load("staging", values); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestSecretValuesNeverInProblems(t *testing.T) {
	const leak = "sk-live-abcdefghijklmnop"
	const kcWant = "pressroom:kubeconfig: must be a kubeconfig file (YAML with clusters, users and contexts)"
	for _, tc := range []struct {
		name   string
		values map[string]string
		want   string
	}{
		{"kubeconfig is a token", with(existingStack(), "kubeconfig", leak), kcWant},
		{"kubeconfig of the wrong shape", with(existingStack(), "kubeconfig", "clusters: "+leak), kcWant},
		{"kubeconfig with a token for a server", with(existingStack(), "kubeconfig", "clusters:\n- cluster: {server: [\""+leak+"\"]}\n"), kcWant},
		{"kubeconfig that is not YAML", with(existingStack(), "kubeconfig", "{"+leak+": ["), kcWant},
		{"kubeconfig without contexts", with(existingStack(), "kubeconfig", "clusters:\n- name: c\n  cluster: {server: https://"+leak+"}\nusers:\n- name: u\n"), kcWant},
		{"kubeconfig whose current-context is missing", with(existingStack(), "kubeconfig", strings.Replace(existingStack()["pressroom:kubeconfig"], "current-context: x", "current-context: "+leak, 1)), kcWant},
		{"resend key of another service", with(renderStack(), "resendApiKey", leak, "app", `{"googleLoginEnabled":false,"emailFrom":"news@example.com"}`), "pressroom:resendApiKey: must be a Resend API key"},
		{"padded client secret", with(set(t, renderStack(), "app", "googleClientId", "x.apps.example.com"), "googleClientSecret", " "+leak+"\n"), "pressroom:googleClientSecret: has spaces or line breaks at the start or end"},
		{"padded registry password", with(set(t, renderStack(), "registry", "kind", "external"), "registryPassword", leak+" "), "pressroom:registryPassword: has spaces or line breaks at the start or end"},
		{"padded resend key", with(renderStack(), "resendApiKey", " re_"+leak), "pressroom:resendApiKey: has spaces or line breaks at the start or end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load("staging", tc.values)
			wantProblem(t, problems(t, err), tc.want)
			for _, part := range []string{leak, "sk-live", "abcdefghijklmnop"} {
				if strings.Contains(err.Error(), part) {
					t.Errorf("the error quotes the secret (%q):\n%v", part, err)
				}
			}
		})
	}
}

func TestClusterNodesAtLeastOneInEveryMode(t *testing.T) {
	wantRefused(t, []refusal{
		{"render -1", set(t, renderStack(), "cluster", "nodes", -1), []string{"pressroom:cluster.nodes: must be at least 1 (got -1)"}},
		{"render 0", set(t, renderStack(), "cluster", "nodes", 0), []string{"pressroom:cluster.nodes: must be at least 1 (got 0)"}},
		{"existing -3", set(t, existingStack(), "cluster", "nodes", "-3"), []string{"pressroom:cluster.nodes: must be at least 1 (got -3)"}},
		{"digitalocean 0", set(t, stagingStack(t), "cluster", "nodes", 0), []string{"pressroom:cluster.nodes: must be at least 1 (got 0)"}},
	})
	// one problem for one mistake
	_, err := Load("staging", set(t, stagingStack(t), "cluster", "nodes", -1))
	if ps := problems(t, err); len(ps) != 1 {
		t.Errorf("want one problem, got %v", ps)
	}
	wantAccepted(t, map[string]map[string]string{
		"render 2":            set(t, renderStack(), "cluster", "nodes", 2),
		"existing 5":          set(t, existingStack(), "cluster", "nodes", 5),
		"null is the default": set(t, renderStack(), "cluster", "nodes", nil),
	})
}

func TestReadyTimeoutCheckedWhereUsed(t *testing.T) {
	wantRefused(t, []refusal{
		{"existing 5", set(t, existingStack(), "cluster", "readyTimeoutSeconds", 5), []string{"pressroom:cluster.readyTimeoutSeconds: must be between 30 and 3600 (got 5)"}},
		{"existing 0", set(t, existingStack(), "cluster", "readyTimeoutSeconds", 0), []string{"pressroom:cluster.readyTimeoutSeconds: must be between 30 and 3600 (got 0)"}},
		{"existing 4000", set(t, existingStack(), "cluster", "readyTimeoutSeconds", 4000), []string{"pressroom:cluster.readyTimeoutSeconds: must be between 30 and 3600 (got 4000)"}},
		{"digitalocean -1", set(t, stagingStack(t), "cluster", "readyTimeoutSeconds", -1), []string{"pressroom:cluster.readyTimeoutSeconds: must be between 30 and 3600 (got -1)"}},
	})
	wantAccepted(t, map[string]map[string]string{
		"existing 30":                  set(t, existingStack(), "cluster", "readyTimeoutSeconds", 30),
		"render waits for nothing (0)": set(t, renderStack(), "cluster", "readyTimeoutSeconds", 0),
	})
}

func TestBackupScheduleAsKubernetesParsesIt(t *testing.T) {
	bad := map[string]string{
		"99 99 99 99 99":                  "end of range (99) above maximum (59)",
		"60 25 32 13 8":                   "above maximum",
		"- - - - -":                       "failed to parse int from",
		"/ / / / /":                       "failed to parse int from",
		"0 3 * *":                         "expected exactly 5 fields, found 4",
		"0 0 3 * * *":                     "expected exactly 5 fields, found 6",
		"@fortnightly":                    "unrecognized descriptor",
		"0 3 * * FUN":                     "failed to parse int from FUN",
		"TZ=UTC 0 3 * * *":                "must not set a time zone (TZ= or CRON_TZ=)",
		"CRON_TZ=Europe/Berlin 0 3 * * *": "must not set a time zone (TZ= or CRON_TZ=)",
	}
	var cases []refusal
	for s, why := range bad {
		cases = append(cases, refusal{s, set(t, renderStack(), "backup", "schedule", s), []string{"pressroom:backup.schedule: ", why, `(got "` + s + `")`}})
	}
	wantRefused(t, cases)
	good := map[string]map[string]string{}
	for _, s := range []string{"0 3 * * *", "0 3 * * MON", "30 2 * * mon-fri", "@daily", "@weekly", "*/15 * * * *", "0 3 1,15 * *", "0 3 * JAN,JUL 0"} {
		good[s] = set(t, renderStack(), "backup", "schedule", s)
	}
	wantAccepted(t, good)
}

func TestOIDCIssuerMustMatchDiscoveryExactly(t *testing.T) {
	bad := map[string]string{
		"https://accounts.google.com/":             "no trailing slash",
		"https://keycloak.example.com/realms/x/":   "no trailing slash",
		"HTTPS://accounts.google.com":              "a lowercase scheme",
		"Https://accounts.google.com":              "a lowercase scheme",
		"https://Accounts.Google.com":              "a lowercase host",
		"https://accounts.google.com?x":            "no query (?...)",
		"https://accounts.google.com?":             "no query (?...)",
		"https://accounts.google.com#f":            "no fragment (#...)",
		"https://accounts.google.com#":             "no fragment (#...)",
		"https://user:pw@accounts.google.com":      "no user name or password",
		"https://:443":                             "must be an https URL like https://accounts.google.com",
		"https:accounts.google.com":                "must be an https URL like https://accounts.google.com",
		"http://accounts.example.com":              "must be an https URL like https://accounts.google.com",
		"accounts.google.com":                      "must be an https URL like https://accounts.google.com",
		"https://accounts.google.com/?x#y":         "or sign-in fails; it needs no query (?...), no fragment (#...), no trailing slash (got",
		"https://accounts.google.com/ ":            "has spaces at the start or end; remove the spaces",
		" https://accounts.google.com":             "has spaces at the start or end; remove the spaces",
		"https://accounts.google.com/realms/x?a=b": "no query (?...)",
	}
	var cases []refusal
	for s, why := range bad {
		cases = append(cases, refusal{s, set(t, renderStack(), "app", "oidcIssuerUrl", s), []string{"pressroom:app.oidcIssuerUrl: ", why}})
	}
	wantRefused(t, cases)
	good := map[string]map[string]string{}
	for _, s := range []string{
		"https://accounts.google.com",
		"https://login.microsoftonline.com/0b7f2c9e-0000-4000-8000-000000000000/v2.0",
		"https://keycloak.example.com/realms/Pressroom",
		"https://accounts.google.com:443",
		"http://localhost:5556/dex",
		"http://127.0.0.1:5556",
	} {
		good[s] = set(t, renderStack(), "app", "oidcIssuerUrl", s)
	}
	wantAccepted(t, good)
}

// eightBits lists n distinct IPv4 /8 networks.
func eightBits(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%d.0.0.0/8", i+1)
	}
	return out
}

func TestAdminCIDRsRefuseWideNetworks(t *testing.T) {
	cidrs := func(c ...string) map[string]string { return set(t, stagingStack(t), "cluster", "adminCidrs", c) }
	const wide = "opens SSH and the Kubernetes API to the whole internet or a large part of it: prefixes must be /8 or longer for IPv4 and /16 or longer for IPv6"
	wantRefused(t, []refusal{
		{"0.0.0.0/0", cidrs("0.0.0.0/0"), []string{"pressroom:cluster.adminCidrs: entry 1 (0.0.0.0/0) " + wide}},
		{"two IPv4 halves", cidrs("0.0.0.0/1", "128.0.0.0/1"), []string{"entry 1 (0.0.0.0/1) " + wide, "entry 2 (128.0.0.0/1) " + wide}},
		{"two IPv6 halves", cidrs("::/1", "8000::/1"), []string{"entry 1 (::/1) " + wide, "entry 2 (8000::/1) " + wide}},
		{"::/0", cidrs("::/0"), []string{"entry 1 (::/0) " + wide}},
		{"IPv4 /7", cidrs("10.0.0.0/7"), []string{"entry 1 (10.0.0.0/7) " + wide}},
		{"IPv6 /15", cidrs("2001:db8::/15"), []string{"entry 1 (2001:db8::/15) " + wide}},
		{"IPv4-mapped IPv6", cidrs("::ffff:0.0.0.0/96"), []string{"entry 1 (::ffff:0.0.0.0/96) is an IPv4 network in IPv6 form"}},
	})
	// Each entry narrow enough, but together more than one /8 (or /16).
	const together = "together open SSH and the Kubernetes API to more addresses than one "
	wantRefused(t, []refusal{
		{"two IPv4 /8s", cidrs("10.0.0.0/8", "203.0.113.7/32", "11.0.0.0/8"), []string{"pressroom:cluster.adminCidrs: entries 1, 2 and 3 " + together + "/8 holds"}},
		{"a /8 and one more address", cidrs("10.0.0.0/8", "203.0.113.7/32"), []string{"entries 1 and 2 " + together + "/8 holds"}},
		{"128 IPv4 /8s", cidrs(eightBits(128)...), []string{together + "/8 holds"}},
		{"two IPv6 /16s", cidrs("2001::/16", "2002::/16"), []string{"entries 1 and 2 " + together + "/16 holds"}},
	})
	wantAccepted(t, map[string]map[string]string{
		"a /8 and networks inside it": cidrs("10.0.0.0/8", "10.1.0.0/16", "10.0.0.0/8", "10.2.3.4/32"),
		"a /8 and a /16 of IPv6":      cidrs("10.0.0.0/8", "2001:db8::/16"),
		"IPv4 /9 twice over":          cidrs("10.0.0.0/9", "10.128.0.0/9"),
		"IPv4 /32":                    cidrs("203.0.113.7/32"),
		"IPv6 /16":                    cidrs("2001:db8::/16"),
		"IPv6 /64":                    cidrs("2001:db8:1:2::/64", "198.51.100.0/28"),
	})
}

func TestBlankAndPaddedValuesRefused(t *testing.T) {
	external := set(t, renderStack(), "registry", "kind", "external")
	external = set(t, external, "registry", "server", "registry.example.com")
	login := set(t, renderStack(), "app", "googleLoginEnabled", true)
	login = set(t, login, "app", "googleClientId", "abc.apps.googleusercontent.com")
	login = with(login, "googleClientSecret", "secret")
	cases := []refusal{
		{"blank registry user and password", with(set(t, external, "registry", "username", " "), "registryPassword", " "), []string{
			"pressroom:registry.username: is only spaces; remove the spaces and set a value",
			"pressroom:registryPassword: is only spaces; run `pulumi config set --secret registryPassword <value>`",
		}},
		{"blank client secret", with(login, "googleClientSecret", "  "), []string{"pressroom:googleClientSecret: is only spaces"}},
		{"padded client id", set(t, login, "app", "googleClientId", " abc.apps "), []string{`pressroom:app.googleClientId: has spaces at the start or end; remove the spaces (got " abc.apps ")`}},
		{"blank client id", set(t, login, "app", "googleClientId", "\t"), []string{"pressroom:app.googleClientId: is only spaces"}},
		{"padded user", with(set(t, external, "registry", "username", "ci "), "registryPassword", "pw"), []string{`pressroom:registry.username: has spaces at the start or end; remove the spaces (got "ci ")`}},
		{"padded domain", with(renderStack(), "domain", "example.com "), []string{`pressroom:domain: has spaces at the start or end; remove the spaces (got "example.com ")`}},
		{"padded list entry", set(t, renderStack(), "app", "adminEmails", []string{"admin@example.com", " ed@example.com"}), []string{`pressroom:app.adminEmails: entry 2 has spaces at the start or end; remove the spaces (got " ed@example.com")`}},
		{"padded e-mail", set(t, renderStack(), "acme", "email", "ops@example.com "), []string{`pressroom:acme.email: has spaces at the start or end; remove the spaces`}},
	}
	wantRefused(t, cases)
	// A blank value is one problem, not also "is required".
	for _, tc := range cases[:4] {
		_, err := Load("staging", tc.values)
		for _, p := range problems(t, err) {
			if strings.Contains(p, "is required") {
				t.Errorf("%s: blank value reported twice: %s", tc.name, p)
			}
		}
	}
	cfg, err := Load("staging", set(t, login, "app", "emailFrom", "Pressroom News <news@example.com>"))
	if err != nil || cfg.App.EmailFrom != "Pressroom News <news@example.com>" {
		t.Errorf("inner spaces must stay allowed: %v", err)
	}
}

// noResources is a mock engine for running FromPulumi outside `pulumi up`.
type noResources struct{}

func (noResources) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	return args.Name, args.Inputs, nil
}

func (noResources) Call(pulumi.MockCallArgs) (resource.PropertyMap, error) {
	return resource.PropertyMap{}, nil
}

func TestPlainTextSecretsReportedWithOtherProblems(t *testing.T) {
	config := stagingStack(t)
	config["pressroom:resendApikey"] = "re_typo" // misspelt: an unknown key
	raw, _ := json.Marshal(config)
	t.Setenv("PULUMI_CONFIG", string(raw)) // how the engine passes the whole config
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		_, err := FromPulumi(ctx)
		return err
	}, pulumi.WithMocks(Namespace, "staging", noResources{}), func(info *pulumi.RunInfo) {
		info.Config = config
		// googleClientSecret is encrypted, resendApiKey was set without --secret
		info.ConfigSecretKeys = []string{"pressroom:googleClientSecret"}
	})
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"pressroom:resendApiKey: is stored in plain text; run `pulumi config set --secret resendApiKey <value>`",
		"pressroom:resendApikey: unknown setting",
		"2 configuration problem(s)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "googleClientSecret: is stored in plain text") {
		t.Errorf("an encrypted secret reported:\n%v", err)
	}
}

func TestSmallerChecks(t *testing.T) {
	staging := stagingStack(t)
	var (
		edPub, _, _ = ed25519.GenerateKey(rand.Reader)
		ecKey, _    = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		rsaKey, _   = rsa.GenerateKey(rand.Reader, 2048)
	)
	authorized := func(k any) string {
		pk, err := ssh.NewPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk)))
	}
	ed, ec, rs := authorized(edPub), authorized(&ecKey.PublicKey), authorized(&rsaKey.PublicKey)
	keys := func(k ...string) map[string]string { return set(t, staging, "cluster", "sshPublicKeys", k) }
	const sshWant = "pressroom:cluster.sshPublicKeys: entry 1 must be an OpenSSH public key line"
	long := strings.Repeat(strings.Repeat("a", 63)+".", 4) + "com" // 259 characters

	wantRefused(t, []refusal{
		{"acme.email at a bad label", set(t, staging, "acme", "email", "ops@-x.com"), []string{`pressroom:acme.email: must be an e-mail address like ops@example.com for Let's Encrypt expiry notices (got "ops@-x.com")`}},
		{"acme.email at an address literal", set(t, staging, "acme", "email", "ops@[192.0.2.1]"), []string{`pressroom:acme.email: must be an e-mail address`}},
		{"emailFrom at an address literal", set(t, staging, "app", "emailFrom", "News <news@[192.0.2.1]>"), []string{`pressroom:app.emailFrom: must be an address like`}},
		{"vpcCidr with host bits", set(t, staging, "cluster", "vpcCidr", "10.110.0.5/20"), []string{`pressroom:cluster.vpcCidr: has host bits set; the range starts at 10.110.0.0, so write 10.110.0.0/20 (got "10.110.0.5/20")`}},
		{"vpcCidr too large", set(t, staging, "cluster", "vpcCidr", "10.0.0.0/8"), []string{`pressroom:cluster.vpcCidr: must be between /16 and /28 (DigitalOcean's VPC sizes), like 10.110.0.0/20 (got "10.0.0.0/8")`}},
		{"vpcCidr too small", set(t, staging, "cluster", "vpcCidr", "10.110.0.0/29"), []string{`pressroom:cluster.vpcCidr: must be between /16 and /28`}},
		{"vpcCidr public", set(t, staging, "cluster", "vpcCidr", "172.32.0.0/16"), []string{`pressroom:cluster.vpcCidr: must be a private (RFC 1918) IPv4 range like 10.110.0.0/20 (got "172.32.0.0/16")`}},
		{"vpcCidr IPv6", set(t, staging, "cluster", "vpcCidr", "fd00::/48"), []string{`pressroom:cluster.vpcCidr: must be a private (RFC 1918) IPv4 range`}},
		{"ssh key cut short", keys("ssh-ed25519 AAAA"), []string{sshWant}},
		{"ssh key of another type", keys("ssh-rsa" + strings.TrimPrefix(ed, "ssh-ed25519")), []string{sshWant}},
		{"ssh key with options", keys(`command="true" ` + ed), []string{sshWant}},
		{"two ssh keys in one entry", keys(ed + "\n" + ec), []string{sshWant}},
		{"ssh dss key", keys("ssh-dss " + strings.Fields(ed)[1]), []string{sshWant}},
		{"domain over 253 characters", with(staging, "domain", long), []string{`pressroom:domain: must be a DNS name like example.com`}},
		{"domain leaves no room for www.", with(staging, "domain", long[len(long)-250:]), []string{`pressroom:domain: is 250 characters; at most 249, so that www.<domain> stays within DNS's 253`}},
		{"apiHost over 253 characters", set(t, staging, "cluster", "apiHost", long), []string{`pressroom:cluster.apiHost: must be a DNS name like k8s.example.com`}},
	})
	wantAccepted(t, map[string]map[string]string{
		"punycode TLD":                with(staging, "domain", "example.xn--p1ai"),
		"punycode labels":             with(staging, "domain", "xn--e1afmkfd.xn--p1ai"),
		"e-mail at a punycode TLD":    set(t, staging, "acme", "email", "ops@example.xn--p1ai"),
		"vpcCidr /16 in 172.16/12":    set(t, staging, "cluster", "vpcCidr", "172.31.0.0/16"),
		"vpcCidr /28 in 192.168/16":   set(t, staging, "cluster", "vpcCidr", "192.168.10.16/28"),
		"ed25519, ecdsa and rsa keys": keys(ed+" me@laptop", ec, rs),
	})
}

// cert-manager must support the Kubernetes minor of cluster.k3sVersion:
// the default chart on a stack still on K3s v1.31 is refused with the way
// out, and every step of the documented upgrade path is accepted.
func TestCertManagerMustSupportTheK3sMinor(t *testing.T) {
	at := func(k3s, cm string) map[string]string {
		return set(t, set(t, stagingStack(t), "cluster", "k3sVersion", k3s), "certManager", "version", cm)
	}
	wantRefused(t, []refusal{
		{"default cert-manager on K3s v1.31", at("v1.31.4+k3s1", DefaultCertManagerVersion),
			[]string{`pressroom:certManager.version: v1.21.2 supports Kubernetes 1.33 to 1.36, but cluster.k3sVersion is v1.31.4+k3s1: raise K3s and cert-manager in turn, one minor at a time (infra/OPERATIONS.md, "Upgrade K3s")`}},
		{"cert-manager 1.19 on K3s v1.36", at(DefaultK3sVersion, "v1.19.4"),
			[]string{`pressroom:certManager.version: v1.19.4 supports Kubernetes 1.31 to 1.35, but cluster.k3sVersion is v1.36.4+k3s1`}},
	})
	wantAccepted(t, map[string]map[string]string{
		"the defaults":                      at(DefaultK3sVersion, DefaultCertManagerVersion),
		"still on v1.31 and v1.16":          at("v1.31.4+k3s1", "v1.16.2"), // 1.16 is not in the table: not checked
		"cert-manager 1.19 on K3s v1.31":    at("v1.31.4+k3s1", "v1.19.4"),
		"K3s v1.35 under cert-manager 1.19": at("v1.35.8+k3s1", "v1.19.4"),
		"cert-manager 1.21 on K3s v1.35":    at("v1.35.8+k3s1", "v1.21.2"),
		"install off":                       set(t, at("v1.31.4+k3s1", DefaultCertManagerVersion), "certManager", "install", false),
	})
}

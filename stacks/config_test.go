package stacks

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// operatorSecrets are what `pulumi config set --secret` adds to a stack file.
var operatorSecrets = map[string]string{
	"pressroom:googleClientSecret": "placeholder-client-secret",
	"pressroom:resendApiKey":       "re_placeholder",
}

func stackFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../Pulumi.*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("expected at least Pulumi.staging.yaml and Pulumi.prod.yaml in the repo root, found %v", files)
	}
	return files
}

func stackName(path string) string {
	return strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), "Pulumi."), ".yaml")
}

func withSecrets(v map[string]string) map[string]string {
	out := map[string]string{}
	for k, s := range v {
		out[k] = s
	}
	for k, s := range operatorSecrets {
		out[k] = s
	}
	return out
}

func problems(t *testing.T, err error) []string {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want *ValidationError, got %v", err)
	}
	return ve.Problems
}

func wantProblem(t *testing.T, ps []string, want string) {
	t.Helper()
	for _, p := range ps {
		if strings.Contains(p, want) {
			return
		}
	}
	t.Errorf("no problem contains %q; got:\n  %s", want, strings.Join(ps, "\n  "))
}

func TestEveryStackFileLoadsAndValidates(t *testing.T) {
	for _, path := range stackFiles(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			raw, err := ReadStackFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range SecretKeys() {
				if _, ok := raw[Namespace+":"+k]; ok {
					t.Errorf("%s holds secret %s; set it with pulumi config set --secret instead", path, k)
				}
			}
			cfg, err := Load(stackName(path), withSecrets(raw))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(cfg.Domain, "example.com") {
				t.Errorf("example stacks must use example.com placeholders, got domain %q", cfg.Domain)
			}
			if IsProdLike(cfg.Stack) != cfg.Protect {
				t.Errorf("protect = %v for stack %s", cfg.Protect, cfg.Stack)
			}
		})
	}
}

func TestExampleStacksContent(t *testing.T) {
	load := func(name string) *Config {
		raw, err := ReadStackFile("../Pulumi." + name + ".yaml")
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(name, withSecrets(raw))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	st, prod := load("staging"), load("prod")
	if st.Cluster.Nodes != 1 || prod.Cluster.Nodes != 3 {
		t.Errorf("nodes: staging %d prod %d, want 1 and 3", st.Cluster.Nodes, prod.Cluster.Nodes)
	}
	if st.ACME.Issuer != "staging" || prod.ACME.Issuer != "prod" {
		t.Errorf("issuers: %q %q", st.ACME.Issuer, prod.ACME.Issuer)
	}
	if st.Protect || !prod.Protect {
		t.Errorf("protect: staging %v prod %v", st.Protect, prod.Protect)
	}
	if prod.Scaling.Article != (Bounds{2, 5}) || prod.Scaling.Web != (Bounds{2, 6}) || prod.Scaling.CPUTarget != 70 {
		t.Errorf("scaling: %+v", prod.Scaling)
	}
	for _, c := range []*Config{st, prod} {
		if u := c.Upgrades; !u.Enabled || !u.Install || u.ControllerVersion != DefaultUpgradeControllerVersion {
			t.Errorf("%s: upgrades %+v: the stacks that own K3s keep it at cluster.k3sVersion", c.Stack, u)
		}
	}
	if st.Cluster.APIHost != "k8s.staging.example.com" {
		t.Errorf("default apiHost = %q", st.Cluster.APIHost)
	}
	if got := st.NeedsBuild(); len(got) != len(Services) || st.Registry.Kind != RegistryDigitalOcean {
		t.Errorf("staging builds %v into %q", got, st.Registry.Kind)
	}
}

func TestExampleStackWithoutSecretsSaysWhatToSet(t *testing.T) {
	raw, err := ReadStackFile("../Pulumi.staging.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Load("staging", raw)
	ps := problems(t, err)
	wantProblem(t, ps, "pressroom:googleClientSecret: is required while app.googleLoginEnabled is true: run `pulumi config set --secret googleClientSecret <secret>`")
	if len(ps) != 1 {
		t.Errorf("want exactly one problem, got %v", ps)
	}
}

func TestDefaultsOfAMinimalRenderStack(t *testing.T) {
	cfg, err := Load("dev", map[string]string{
		"pressroom:domain":  "example.com",
		"pressroom:cluster": `{"mode":"render"}`,
		"pressroom:acme":    `{"email":"ops@example.com"}`,
		"pressroom:app":     `{"googleLoginEnabled":"false"}`,
		"pressroom:images": `{"auth":"registry.example.com/pressroom/auth@sha256:` + strings.Repeat("a", 64) + `",
			"article":"registry.example.com/pressroom/article@sha256:` + strings.Repeat("b", 64) + `",
			"media":"registry.example.com/pressroom/media@sha256:` + strings.Repeat("c", 64) + `",
			"notification":"registry.example.com/pressroom/notification@sha256:` + strings.Repeat("d", 64) + `",
			"web":"registry.example.com/pressroom/web@sha256:` + strings.Repeat("e", 64) + `"}`,
		"digitalocean:token": "ignored: other namespaces belong to providers",
	})
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]bool{
		"mode render":            cfg.Cluster.Mode == ModeRender,
		"no cloud":               !cfg.CloudEnabled(),
		"renderDir":              cfg.Cluster.RenderDir == "rendered",
		"issuer staging":         cfg.ACME.Issuer == "staging",
		"cert-manager installed": cfg.CertManager.Install && cfg.CertManager.Version == DefaultCertManagerVersion,
		"no upgrade plan":        !cfg.Upgrades.Enabled && cfg.Upgrades.Install && cfg.Upgrades.ControllerVersion == DefaultUpgradeControllerVersion,
		"oidc default":           cfg.App.OIDCIssuerURL == "https://accounts.google.com",
		"login off":              !cfg.App.GoogleLoginEnabled,
		"no registry":            cfg.Registry.Kind == RegistryNone && len(cfg.NeedsBuild()) == 0,
		"jwt gen":                cfg.JWT.KeyGeneration == 1,
		"storage":                cfg.Storage.Postgres == "10Gi" && cfg.Storage.Backups == "20Gi",
		"backup":                 cfg.Backup.Schedule == "0 3 * * *" && cfg.Backup.RetentionDays == 14,
		"not protected":          !cfg.Protect,
		"resend off":             !cfg.App.ResendConfigured,
		"url":                    cfg.URL() == "https://example.com" && cfg.WWWURL() == "https://www.example.com",
	}
	for name, ok := range checks {
		if !ok {
			t.Errorf("default %s wrong: %+v", name, cfg)
		}
	}
}

func TestSecretsStaySecret(t *testing.T) {
	raw, err := ReadStackFile("../Pulumi.staging.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Load("staging", withSecrets(raw))
	if err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]pulumi.StringOutput{
		"googleClientSecret": cfg.Secrets.GoogleClientSecret,
		"resendApiKey":       cfg.Secrets.ResendAPIKey,
	} {
		v, known, secret, _, err := awaitString(o)
		if err != nil || !known || !secret {
			t.Errorf("%s: known=%v secret=%v err=%v", name, known, secret, err)
		}
		if v != operatorSecrets["pressroom:"+name] {
			t.Errorf("%s = %q", name, v)
		}
	}
	if !cfg.App.ResendConfigured {
		t.Error("resend key set but ResendConfigured false")
	}
}

// awaitString resolves an output created outside any Pulumi context.
func awaitString(o pulumi.StringOutput) (value string, known, secret bool, deps []pulumi.Resource, err error) {
	ch := make(chan string, 1)
	o.ApplyT(func(s string) string { ch <- s; return s })
	return <-ch, true, pulumi.IsSecret(o), nil, nil
}

func TestBrokenConfigsReportEveryProblem(t *testing.T) {
	cases := []struct {
		name   string
		values map[string]string
		want   []string
	}{
		{
			name:   "empty",
			values: map[string]string{},
			want: []string{
				"pressroom:domain: is required: the apex domain of the site, like example.com",
				"pressroom:cluster.adminCidrs: must list the networks allowed to reach SSH and the Kubernetes API",
				"pressroom:cloudflare.zoneId: must be the 32-hex-digit Cloudflare zone id",
				`pressroom:acme.email: must be an e-mail address like ops@example.com`,
				"pressroom:app.googleClientId: is required while app.googleLoginEnabled is true",
			},
		},
		{
			name: "everything wrong",
			values: map[string]string{
				"pressroom:domain": "Not A Domain",
				"pressroom:cluster": `{"mode":"digitalocean","region":"Frankfurt","nodes":2,"k3sVersion":"latest",
					"adminCidrs":["0.0.0.0/0","10.0.0.300/8"],"sshPublicKeys":["my key"],"vpcCidr":"10.42.0.0/16","nodez":1}`,
				"pressroom:cloudflare":  `{"zoneId":"abc"}`,
				"pressroom:acme":        `{"email":"ops","issuer":"production"}`,
				"pressroom:certManager": `{"version":"latest"}`,
				"pressroom:app":         `{"googleLoginEnabled":false,"oidcIssuerUrl":"http://accounts.example.com","adminEmails":["root"],"emailFrom":"nobody"}`,
				"pressroom:scaling":     `{"articleMin":0,"webMin":4,"webMax":3,"cpuTarget":100}`,
				"pressroom:images":      `{"web":"registry.example.com/web:latest","blog":"x@sha256:` + strings.Repeat("0", 64) + `"}`,
				"pressroom:registry":    `{"kind":"external"}`,
				"pressroom:jwt":         `{"keyGeneration":0}`,
				"pressroom:storage":     `{"postgres":"10GB"}`,
				"pressroom:backup":      `{"schedule":"daily","retentionDays":0}`,
				"pressroom:protect":     "maybe",
				"pressroom:replicas":    "3",
			},
			want: []string{
				`pressroom:domain: must be a DNS name like example.com (got "Not A Domain")`,
				`pressroom:cluster.region: must be a DigitalOcean region slug like fra1 (got "Frankfurt")`,
				"pressroom:cluster.nodes: must be 1, or 3 for high availability",
				`pressroom:cluster.k3sVersion: must be a pinned K3s release like v1.36.4+k3s1 (got "latest")`,
				"pressroom:cluster.adminCidrs: entry 1 (0.0.0.0/0) opens SSH and the Kubernetes API to the whole internet",
				`pressroom:cluster.adminCidrs: entry 2 must be a CIDR like 203.0.113.7/32 (got "10.0.0.300/8")`,
				"pressroom:cluster.sshPublicKeys: entry 1 must be an OpenSSH public key line",
				"pressroom:cluster.vpcCidr: 10.42.0.0/16 overlaps K3s' pod/service network 10.42.0.0/16",
				"pressroom:cluster.nodez: unknown setting; known settings of cluster are mode, region",
				`pressroom:cloudflare.zoneId: must be the 32-hex-digit Cloudflare zone id of the domain`,
				`pressroom:acme.email: must be an e-mail address like ops@example.com for Let's Encrypt expiry notices (got "ops")`,
				`pressroom:acme.issuer: must be staging or prod (got "production")`,
				`pressroom:certManager.version: must be a pinned chart version like v1.21.2 (got "latest")`,
				`pressroom:app.oidcIssuerUrl: must be an https URL like https://accounts.google.com (got "http://accounts.example.com")`,
				`pressroom:app.adminEmails: entry 1 must be an e-mail address like admin@example.com (got "root")`,
				`pressroom:app.emailFrom: must be an address like "Pressroom <news@example.com>" (got "nobody")`,
				"pressroom:scaling.articleMin: must be at least 1 (got 0)",
				"pressroom:scaling.webMax: must be at least webMin (4) (got 3)",
				"pressroom:scaling.cpuTarget: must be a CPU utilisation percent between 10 and 95 (got 100)",
				`pressroom:images.web: must be pinned by digest like registry.example.com/pressroom/web@sha256:<64 hex> (got "registry.example.com/web:latest")`,
				"pressroom:images.blog: unknown service; services are auth, article, media, notification, web",
				`pressroom:registry.server: must be a registry host like registry.example.com (got "")`,
				"pressroom:registry.username: is required for an external registry",
				"pressroom:registryPassword: is required for an external registry: run `pulumi config set --secret registryPassword <token>`",
				"pressroom:jwt.keyGeneration: must be 1 or more; increase it by one to rotate the signing key (got 0)",
				`pressroom:storage.postgres: must be a size like 10Gi (Mi, Gi or Ti) (got "10GB")`,
				`pressroom:backup.schedule: must be a cron schedule Kubernetes accepts, five fields like "0 3 * * *" or "0 3 * * MON", or a macro like @daily: expected exactly 5 fields, found 1: [daily] (got "daily")`,
				"pressroom:backup.retentionDays: must be between 1 and 3650 (got 0)",
				`pressroom:protect: must be true or false (got "maybe")`,
				"pressroom:replicas: unknown setting; known settings are",
			},
		},
		{
			name: "wrong types",
			values: map[string]string{
				"pressroom:domain":  "example.com",
				"pressroom:cluster": `{"mode":"render","nodes":"three","adminCidrs":"203.0.113.1/32"}`,
				"pressroom:acme":    `["ops@example.com"]`,
				"pressroom:app":     `{"googleLoginEnabled":"yes please"}`,
			},
			want: []string{
				`pressroom:cluster.nodes: must be a whole number (got "three")`,
				`pressroom:cluster.adminCidrs: must be a list of strings (got "203.0.113.1/32")`,
				"pressroom:acme: must be an object of settings",
				`pressroom:app.googleLoginEnabled: must be true or false (got "yes please")`,
				"pressroom:images: render mode builds no images: give auth, article, media, notification, web as image@sha256:<digest>",
			},
		},
		{
			name: "existing mode needs a kubeconfig",
			values: map[string]string{
				"pressroom:domain":   "example.com",
				"pressroom:cluster":  `{"mode":"existing"}`,
				"pressroom:acme":     `{"email":"ops@example.com"}`,
				"pressroom:app":      `{"googleLoginEnabled":false}`,
				"pressroom:registry": `{"kind":"digitalocean"}`,
			},
			want: []string{
				"pressroom:kubeconfig: is required in existing mode: run `pulumi config set --secret kubeconfig < admin.kubeconfig`",
				"pressroom:registry.kind: digitalocean needs cluster.mode digitalocean (existing mode creates no cloud resources)",
			},
		},
		{
			name: "existing mode with a broken kubeconfig and a bad mode-independent secret",
			values: map[string]string{
				"pressroom:domain":       "example.com",
				"pressroom:cluster":      `{"mode":"existing"}`,
				"pressroom:acme":         `{"email":"ops@example.com"}`,
				"pressroom:app":          `{"googleLoginEnabled":false}`,
				"pressroom:kubeconfig":   "apiVersion: v1\nkind: Config\nclusters: []\n",
				"pressroom:resendApiKey": "not-a-key",
				"pressroom:registry":     `{"kind":"external","server":"registry.example.com","username":"ci"}`,
			},
			want: []string{
				"pressroom:kubeconfig: must be a kubeconfig file (YAML with clusters, users and contexts): at least one cluster with a server URL, one user, and a current-context naming one of its contexts",
				"pressroom:resendApiKey: must be a Resend API key (it starts with re_)",
				"pressroom:app.emailFrom: is required when resendApiKey is set",
				"pressroom:registryPassword: is required for an external registry",
			},
		},
		{
			name: "backups smaller than the media they copy",
			values: map[string]string{
				"pressroom:domain":  "example.com",
				"pressroom:cluster": `{"mode":"render"}`,
				"pressroom:storage": `{"media":"1Ti","backups":"800Gi"}`,
			},
			want: []string{`pressroom:storage.backups: must be at least storage.media (1Ti): every backup holds all media files beside the database dumps (got "800Gi")`},
		},
		{
			name: "upgrades without pinned versions",
			values: map[string]string{
				"pressroom:domain":   "example.com",
				"pressroom:cluster":  `{"mode":"render","k3sVersion":"stable"}`,
				"pressroom:upgrades": `{"enabled":true,"controllerVersion":"latest","plan":"server"}`,
			},
			want: []string{
				`pressroom:upgrades.controllerVersion: must be a pinned system-upgrade-controller release like v0.16.1 (got "latest")`,
				`pressroom:cluster.k3sVersion: must be a pinned K3s release like v1.36.4+k3s1 while upgrades.enabled is true: the upgrade Plan keeps every server at it (got "stable")`,
				"pressroom:upgrades.plan: unknown setting; known settings of upgrades are enabled, install, controllerVersion",
			},
		},
		{
			name: "unknown mode",
			values: map[string]string{
				"pressroom:domain":  "example.com",
				"pressroom:cluster": `{"mode":"aws"}`,
			},
			want: []string{`pressroom:cluster.mode: must be one of digitalocean, existing, render (got "aws")`},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load("staging", tc.values)
			if cfg != nil {
				t.Fatalf("broken config loaded: %+v", cfg)
			}
			ps := problems(t, err)
			for _, w := range tc.want {
				wantProblem(t, ps, w)
			}
			if !strings.Contains(err.Error(), "configuration problem(s)") {
				t.Errorf("error text: %v", err)
			}
		})
	}
}

func TestExistingModeAcceptsAKubeconfig(t *testing.T) {
	kc := testKubeconfig
	cfg, err := Load("offline", map[string]string{
		"pressroom:domain":           "example.com",
		"pressroom:cluster":          `{"mode":"existing"}`,
		"pressroom:acme":             `{"email":"ops@example.com"}`,
		"pressroom:app":              `{"googleLoginEnabled":false}`,
		"pressroom:kubeconfig":       kc,
		"pressroom:registry":         `{"kind":"external","server":"registry.example.com:5000","username":"ci"}`,
		"pressroom:registryPassword": "pw",
		"pressroom:images":           allImages(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CloudEnabled() || cfg.Registry.Kind != RegistryExternal {
		t.Errorf("cfg %+v", cfg)
	}
	got := make(chan string, 1)
	cfg.Secrets.Kubeconfig.ApplyT(func(s string) string { got <- s; return s })
	if <-got != kc {
		t.Error("kubeconfig secret lost its value")
	}
}

// allImages pins every service by digest.
func allImages() string {
	var parts []string
	for i, s := range Services {
		parts = append(parts, fmt.Sprintf("%q:%q", s, fmt.Sprintf("registry.example.com/pressroom/%s@sha256:%064x", s, i+1)))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func TestNoCloudModesNeedEveryImage(t *testing.T) {
	for _, mode := range []string{ModeExisting, ModeRender} {
		_, err := Load("x", map[string]string{
			"pressroom:domain":  "example.com",
			"pressroom:cluster": `{"mode":"` + mode + `"}`,
			"pressroom:acme":    `{"email":"ops@example.com"}`,
			"pressroom:app":     `{"googleLoginEnabled":false}`,
			"pressroom:images":  `{"web":"registry.example.com/pressroom/web@sha256:` + strings.Repeat("a", 64) + `"}`,
		})
		ps := problems(t, err)
		wantProblem(t, ps, "pressroom:images: "+mode+" mode builds no images: give auth, article, media, notification as image@sha256:<digest>")
	}
}

func TestProdLikeNames(t *testing.T) {
	for name, want := range map[string]bool{"prod": true, "production": true, "eu-prod": true, "eu-production": true, "Prod": true, "staging": false, "dev": false, "prodtest": false} {
		if IsProdLike(name) != want {
			t.Errorf("IsProdLike(%q) = %v", name, !want)
		}
	}
}

func TestReadStackFileRefusesEncryptedValues(t *testing.T) {
	path := filepath.Join(t.TempDir(), "Pulumi.x.yaml")
	body := "config:\n  pressroom:domain: example.com\n  pressroom:resendApiKey:\n    secure: v1:abcd\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadStackFile(path); err == nil || !strings.Contains(err.Error(), "pressroom:resendApiKey holds an encrypted secret") {
		t.Errorf("encrypted value accepted: %v", err)
	}
}

// Every setting the loader reads is in stacks/README.md: a group's field either as
// `group.field` or named on a line that mentions the group (the tables write
// `cluster.region` / `size` / `image`).
func TestReadmeDocumentsEverySetting(t *testing.T) {
	raw, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	mentions := func(line, word string) bool {
		return regexp.MustCompile(`(^|[^A-Za-z0-9])` + regexp.QuoteMeta(word) + `([^A-Za-z0-9]|$)`).MatchString(line)
	}
	settings := KnownSettings()
	if len(settings) < 40 {
		t.Fatalf("only %d settings known: %v", len(settings), settings)
	}
	for _, s := range settings {
		group, name, grouped := strings.Cut(s, ".")
		found := false
		for _, line := range lines {
			if !grouped && strings.Contains(line, "`"+s+"`") {
				found = true
			}
			if grouped && (strings.Contains(line, "`"+s) || (strings.Contains(line, "`"+group+".") && mentions(line, name))) {
				found = true
			}
			if found {
				break
			}
		}
		if !found {
			t.Errorf("setting %s is not documented in the README", s)
		}
	}
}

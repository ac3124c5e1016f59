package stacks

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Known top-level keys (without the namespace). Objects are JSON, as the
// Pulumi engine hands structured config to the program.
var (
	objectKeys = []string{"cluster", "cloudflare", "acme", "certManager", "upgrades", "datastoreImages", "app", "scaling", "images", "registry", "jwt", "storage", "backup"}
	scalarKeys = []string{"domain", "protect"}
	secretKeys = []string{"googleClientSecret", "resendApiKey", "registryPassword", "kubeconfig"}
)

// KnownKeys lists every top-level key of the pressroom namespace.
func KnownKeys() []string {
	out := append(append(append([]string{}, scalarKeys...), objectKeys...), secretKeys...)
	sort.Strings(out)
	return out
}

// SecretKeys lists the keys that must be set with `pulumi config set --secret`.
func SecretKeys() []string { return append([]string{}, secretKeys...) }

// ValidationError lists every problem of a stack configuration.
type ValidationError struct {
	Stack    string
	Problems []string // each "pressroom:key: what is wrong and how to fix it"
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("stack %q has %d configuration problem(s):\n  %s", e.Stack, len(e.Problems), strings.Join(e.Problems, "\n  "))
}

// FromPulumi loads and validates the configuration of the running stack.
func FromPulumi(ctx *pulumi.Context) (*Config, error) {
	values := map[string]string{}
	for _, k := range KnownKeys() {
		if v, ok := ctx.GetConfig(Namespace + ":" + k); ok {
			values[Namespace+":"+k] = v
		}
	}
	// The engine passes the whole config in PULUMI_CONFIG; use it to catch
	// misspelt keys that GetConfig cannot enumerate.
	if raw := os.Getenv("PULUMI_CONFIG"); raw != "" {
		all := map[string]string{}
		if json.Unmarshal([]byte(raw), &all) == nil {
			for k, v := range all {
				if strings.HasPrefix(k, Namespace+":") {
					if _, ok := values[k]; !ok {
						values[k] = v
					}
				}
			}
		}
	}
	var plain []string
	for _, k := range secretKeys {
		full := Namespace + ":" + k
		if _, ok := values[full]; ok && !ctx.IsConfigSecret(full) {
			plain = append(plain, k)
		}
	}
	// One run reports plain-text secrets beside every other problem.
	return load(ctx.Stack(), values, plain)
}

// Load builds the Config of stack from raw config values keyed
// "pressroom:<key>" (other namespaces are ignored), applies defaults and
// validates. All problems are reported together in a *ValidationError.
func Load(stack string, values map[string]string) (*Config, error) {
	return load(stack, values, nil)
}

// load is Load that also reports the secret keys stored in plain text.
func load(stack string, values map[string]string, plain []string) (*Config, error) {
	l := &loader{stack: stack, values: map[string]string{}, failed: map[string]bool{}}
	for _, k := range plain {
		l.problemf(k, "is stored in plain text; run `pulumi config set --secret %s <value>`", k)
	}
	known := map[string]bool{}
	for _, k := range KnownKeys() {
		known[k] = true
	}
	var unknown []string
	for k, v := range values {
		name, ok := strings.CutPrefix(k, Namespace+":")
		if !ok {
			continue
		}
		if !known[name] {
			unknown = append(unknown, name)
			continue
		}
		l.values[name] = v
	}
	sort.Strings(unknown)
	for _, name := range unknown {
		l.problemf(name, "unknown setting; known settings are %s", strings.Join(KnownKeys(), ", "))
	}
	cfg := l.build()
	if len(l.problems) > 0 {
		return nil, &ValidationError{Stack: stack, Problems: l.problems}
	}
	return cfg, nil
}

type loader struct {
	stack    string
	values   map[string]string
	problems []string
	settings []string        // every group.field the loader reads
	dst      map[string]any  // each group.field's destination, for its default
	failed   map[string]bool // keys already reported unreadable: no second problem
}

// KnownSettings lists every setting: the top-level keys (secrets included)
// and each group's fields as group.field.
func KnownSettings() []string {
	l := &loader{stack: "settings", values: map[string]string{}, failed: map[string]bool{}}
	l.build()
	out := append([]string{}, l.settings...)
	for _, k := range KnownKeys() {
		if !slices.ContainsFunc(l.settings, func(s string) bool { return strings.HasPrefix(s, k+".") }) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func (l *loader) problemf(key, format string, args ...any) {
	if l.failed[key] {
		return
	}
	l.problems = append(l.problems, Namespace+":"+key+": "+fmt.Sprintf(format, args...))
}

// fail reports key and keeps later checks of its (default) value quiet.
func (l *loader) fail(key, format string, args ...any) {
	l.problemf(key, format, args...)
	l.failed[key] = true
}

// field is one setting inside a config object.
type field struct {
	name string
	dst  any // *string, *int, *bool, *[]string, *map[string]string, text
	set  *bool
}

func f(name string, dst any) field { return field{name: name, dst: dst} }

// fs is like f but records whether the setting was present.
func fs(name string, dst any, set *bool) field { return field{name: name, dst: dst, set: set} }

// object decodes the JSON object stored at key into fields, reporting unknown
// settings and wrong types with the full dotted path.
func (l *loader) object(key string, fields ...field) {
	if l.dst == nil {
		l.dst = map[string]any{}
	}
	for _, fl := range fields {
		l.settings = append(l.settings, key+"."+fl.name)
		l.dst[key+"."+fl.name] = fl.dst
	}
	raw, ok := l.values[key]
	if !ok || strings.TrimSpace(raw) == "" {
		return
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		l.problemf(key, "must be an object of settings (in the stack file: `%s:%s:` followed by indented `name: value` lines)", Namespace, key)
		return
	}
	byName := map[string]field{}
	var names []string
	for _, fl := range fields {
		byName[fl.name] = fl
		names = append(names, fl.name)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fl, ok := byName[k]
		if !ok {
			l.problemf(key+"."+k, "unknown setting; known settings of %s are %s", key, strings.Join(names, ", "))
			continue
		}
		if string(m[k]) == "null" {
			continue
		}
		if err := decodeValue(m[k], fl.dst); err != nil {
			l.fail(key+"."+k, "%v", err)
			continue
		}
		if fl.set != nil {
			*fl.set = true
		}
	}
}

// decodeValue accepts JSON values and, for numbers and booleans, also their
// string forms (`pulumi config set --path` stores strings).
func decodeValue(raw json.RawMessage, dst any) error {
	switch d := dst.(type) {
	case *string:
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return fmt.Errorf("must be a string (got %s)", raw)
		}
		if err := spaces(s); err != nil {
			return err
		}
		*d = s
	case *int:
		if json.Unmarshal(raw, d) == nil {
			return nil
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
				*d = n
				return nil
			}
		}
		return fmt.Errorf("must be a whole number (got %s)", raw)
	case *bool:
		if json.Unmarshal(raw, d) == nil {
			return nil
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			if b, err := strconv.ParseBool(strings.TrimSpace(s)); err == nil {
				*d = b
				return nil
			}
		}
		return fmt.Errorf("must be true or false (got %s)", raw)
	case *[]string:
		var list []string
		if json.Unmarshal(raw, &list) != nil {
			return fmt.Errorf("must be a list of strings (got %s)", raw)
		}
		for i, s := range list {
			if err := spaces(s); err != nil {
				return fmt.Errorf("entry %d %v", i+1, err)
			}
		}
		*d = list
	case *map[string]string:
		if json.Unmarshal(raw, d) != nil {
			return fmt.Errorf("must be an object of name: string (got %s)", raw)
		}
	case text:
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return fmt.Errorf("must be a string (got %s)", raw)
		}
		t := strings.TrimSpace(s)
		if s != "" && t == "" {
			return fmt.Errorf("is only spaces and line breaks; remove the setting or give the text")
		}
		if t != "" {
			t += "\n"
		}
		*d.s = t
	default:
		panic(fmt.Sprintf("stacks: unsupported field type %T", dst))
	}
	return nil
}

// text is a multi-line setting such as a PEM bundle: the line breaks and
// spaces around it are dropped, not refused (a YAML block scalar `|` and
// `pulumi config set ... < file` both end it with a line break), and a
// non-empty value is stored with one final line break.
type text struct{ s *string }

// spaces refuses blank and padded strings: they pass "is it set" checks and
// reach the services with the spaces (an OAuth client id, a user name).
func spaces(s string) error {
	switch t := strings.TrimSpace(s); {
	case s != "" && t == "":
		return fmt.Errorf("is only spaces; remove the spaces and set a value")
	case t != s:
		return fmt.Errorf("has spaces at the start or end; remove the spaces (got %q)", s)
	}
	return nil
}

// secret wraps a secret config value so it never travels as a plain string.
func secret(v string) pulumi.StringOutput {
	return pulumi.ToSecret(pulumi.String(v)).(pulumi.StringOutput)
}

// IsProdLike reports whether a stack name denotes production.
func IsProdLike(stack string) bool {
	s := strings.ToLower(stack)
	return s == "prod" || s == "production" || strings.HasSuffix(s, "-prod") || strings.HasSuffix(s, "-production")
}

// Defaults is the configuration of a stack that sets nothing but its
// domain: the one home of every default. infra's components fill what a
// caller left empty from it too.
func Defaults(stack string) Config {
	return Config{
		Stack: stack,
		Cluster: ClusterConfig{
			Mode:         ModeDigitalOcean,
			Region:       "fra1",
			Size:         "s-2vcpu-4gb",
			Image:        "ubuntu-24-04-x64",
			Nodes:        1,
			K3sVersion:   DefaultK3sVersion,
			VolumeSizeGB: 20,
			VPCCIDR:      "10.110.0.0/20",
			ReadyTimeout: 600,
			RenderDir:    "rendered",
		},
		ACME:            ACMEConfig{Issuer: "staging"},
		CertManager:     CertManagerConfig{Install: true, Version: DefaultCertManagerVersion, Chart: DefaultCertManagerChart, Images: map[string]string{}},
		Upgrades:        UpgradesConfig{Install: true, ControllerVersion: DefaultUpgradeControllerVersion},
		DatastoreImages: DefaultDatastoreImages,
		App:             AppConfig{GoogleLoginEnabled: true, OIDCIssuerURL: "https://accounts.google.com"},
		Scaling: ScalingConfig{
			Article:   Bounds{Min: 2, Max: 5},
			Web:       Bounds{Min: 2, Max: 6},
			CPUTarget: 70,
		},
		Images:   map[string]string{},
		Registry: RegistryConfig{Name: "pressroom"},
		JWT:      JWTConfig{KeyGeneration: 1},
		Storage: StorageConfig{
			Postgres: "10Gi", Redis: "1Gi", NATS: "5Gi", Media: "10Gi", Backups: "20Gi",
		},
		Backup:  BackupConfig{Schedule: "0 3 * * *", RetentionDays: 14},
		Protect: IsProdLike(stack),
	}
}

func (l *loader) build() *Config {
	c := Defaults(l.stack)
	c.Domain = l.values["domain"]
	if err := spaces(c.Domain); err != nil {
		l.fail("domain", "%v", err)
	}
	cl := &c.Cluster
	l.object("cluster",
		f("mode", &cl.Mode), f("region", &cl.Region), f("size", &cl.Size), f("image", &cl.Image),
		f("nodes", &cl.Nodes), f("k3sVersion", &cl.K3sVersion), f("adminCidrs", &cl.AdminCIDRs),
		f("sshPublicKeys", &cl.SSHPublicKeys), f("volumeSizeGb", &cl.VolumeSizeGB), f("vpcCidr", &cl.VPCCIDR),
		f("apiHost", &cl.APIHost), f("readyTimeoutSeconds", &cl.ReadyTimeout), f("renderDir", &cl.RenderDir))
	l.object("cloudflare", f("zoneId", &c.Cloudflare.ZoneID))
	l.object("acme", f("email", &c.ACME.Email), f("issuer", &c.ACME.Issuer),
		f("server", &c.ACME.Server), f("caBundle", text{&c.ACME.CABundle}))
	l.object("certManager", f("install", &c.CertManager.Install), f("version", &c.CertManager.Version),
		f("chart", &c.CertManager.Chart), f("images", &c.CertManager.Images))
	di := &c.DatastoreImages
	l.object("datastoreImages", f("postgres", &di.Postgres), f("redis", &di.Redis), f("nats", &di.NATS), f("jaeger", &di.Jaeger))
	var upgradesSet bool
	l.object("upgrades", fs("enabled", &c.Upgrades.Enabled, &upgradesSet), f("install", &c.Upgrades.Install),
		f("controllerVersion", &c.Upgrades.ControllerVersion))
	if !upgradesSet {
		c.Upgrades.Enabled = cl.Mode == ModeDigitalOcean
	}
	a := &c.App
	l.object("app",
		f("googleClientId", &a.GoogleClientID), f("googleLoginEnabled", &a.GoogleLoginEnabled),
		f("oidcIssuerUrl", &a.OIDCIssuerURL), f("emailFrom", &a.EmailFrom),
		f("adminEmails", &a.AdminEmails), f("notifyEmail", &a.NotifyEmail),
		f("trustedCaBundle", text{&a.TrustedCABundle}))
	var art, web struct{ min, max int }
	art.min, art.max, web.min, web.max = c.Scaling.Article.Min, c.Scaling.Article.Max, c.Scaling.Web.Min, c.Scaling.Web.Max
	l.object("scaling",
		f("articleMin", &art.min), f("articleMax", &art.max),
		f("webMin", &web.min), f("webMax", &web.max), f("cpuTarget", &c.Scaling.CPUTarget))
	c.Scaling.Article = Bounds{Min: art.min, Max: art.max}
	c.Scaling.Web = Bounds{Min: web.min, Max: web.max}
	if raw, ok := l.values["images"]; ok && strings.TrimSpace(raw) != "" {
		if err := json.Unmarshal([]byte(raw), &c.Images); err != nil {
			l.problemf("images", "must be an object of service: image@sha256:<digest> (services: %s)", strings.Join(Services, ", "))
			c.Images = map[string]string{}
		}
	}
	var kindSet bool
	l.object("registry", fs("kind", &c.Registry.Kind, &kindSet), f("server", &c.Registry.Server),
		f("username", &c.Registry.Username), f("name", &c.Registry.Name))
	l.object("jwt", f("keyGeneration", &c.JWT.KeyGeneration))
	s := &c.Storage
	l.object("storage", f("postgres", &s.Postgres), f("redis", &s.Redis), f("nats", &s.NATS),
		f("media", &s.Media), f("backups", &s.Backups))
	l.object("backup", f("schedule", &c.Backup.Schedule), f("retentionDays", &c.Backup.RetentionDays))
	if raw, ok := l.values["protect"]; ok {
		b, err := strconv.ParseBool(strings.TrimSpace(raw))
		if err != nil {
			l.problemf("protect", "must be true or false (got %q)", raw)
		}
		c.Protect = b
	}
	if cl.APIHost == "" && c.Domain != "" {
		cl.APIHost = "k8s." + c.Domain
	}
	if !kindSet {
		switch {
		case len(c.NeedsBuild()) == 0:
			c.Registry.Kind = RegistryNone
		case cl.Mode == ModeDigitalOcean:
			c.Registry.Kind = RegistryDigitalOcean
		default:
			c.Registry.Kind = RegistryNone // validate() explains what to set
		}
	}

	raw := map[string]string{}
	for _, k := range secretKeys {
		raw[k] = l.values[k]
		if k == "kubeconfig" {
			continue // a YAML document: its line breaks and indentation belong to it
		}
		// Never quote a secret's value in a problem.
		switch v := raw[k]; {
		case v != "" && strings.TrimSpace(v) == "":
			l.fail(k, "is only spaces; run `pulumi config set --secret %s <value>` with the real value", k)
		case strings.TrimSpace(v) != v:
			l.fail(k, "has spaces or line breaks at the start or end (the value is not shown); remove the spaces: `pulumi config set --secret %s <value>`", k)
		}
	}
	c.App.ResendConfigured = raw["resendApiKey"] != ""
	c.Secrets = Secrets{
		GoogleClientSecret: secret(raw["googleClientSecret"]),
		ResendAPIKey:       secret(raw["resendApiKey"]),
		RegistryPassword:   secret(raw["registryPassword"]),
		Kubeconfig:         secret(raw["kubeconfig"]),
	}
	l.validate(&c, raw)
	return &c
}

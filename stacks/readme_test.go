package stacks

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite README.md's generated settings from the code")

// settingDoc is what README.md says of a setting that the code cannot: what
// it is for, and the default in words when it depends on the stack. The
// type, the computed default and the refusals come from the code.
type settingDoc struct {
	what    string
	deflt   string // "" = the loader's default for a stack named staging
	grouped string // top-level keys only: the README section they belong to
}

var settingDocs = map[string]settingDoc{
	"domain":  {what: "apex domain of the site; `www.<domain>` redirects to it", grouped: "site"},
	"protect": {what: "`protect` the stateful and unregenerable resources (volume, droplets, reserved IP, CAs, join token, passwords, StatefulSets, the `media-data` and `backups` claims); see [infra/README.md](../infra/README.md#protected-resources)", deflt: "`true` for stacks named `prod`, `production`, `*-prod`, `*-production` (any case), else `false`", grouped: "site"},
	"images":  {what: "`<service>: image@sha256:<digest>`: a prebuilt image per service (auth, article, media, notification, web); services without one are built and pushed. Used for pinning and rolling back one service; `make rollback` sets every service to the image the update it goes back to ran", deflt: "none: every service is built", grouped: "images"},

	"googleClientSecret": {what: "the OIDC client secret (auth); stored in Secret `app-secrets`", grouped: "secrets"},
	"resendApiKey":       {what: "Resend API key: notification sends e-mail; unset, it logs the e-mail instead", grouped: "secrets"},
	"registryPassword":   {what: "password or token of an `external` registry; goes to the pull secret `registry-credentials`", grouped: "secrets"},
	"kubeconfig":         {what: "admin kubeconfig of the cluster in `existing` mode: clusters, users, contexts and a `current-context`", grouped: "secrets"},

	"cluster.mode":                {what: "`digitalocean` (droplets, firewall, volume, DNS, K3s and the platform), `existing` (the `kubeconfig` secret's cluster, no cloud resources) or `render` (manifests to `cluster.renderDir`)"},
	"cluster.region":              {what: "DigitalOcean region of the droplets and volume"},
	"cluster.size":                {what: "droplet size slug"},
	"cluster.image":               {what: "Ubuntu LTS image slug; read at a droplet's creation only"},
	"cluster.nodes":               {what: "K3s servers: `1`, or `3` for HA with embedded etcd (at least 1 in every mode; more than 1 adds topology spread to every service)"},
	"cluster.k3sVersion":          {what: "pinned K3s release; raising it upgrades the servers in place, one minor at a time ([infra/OPERATIONS.md](../infra/OPERATIONS.md#upgrade-k3s))"},
	"cluster.adminCidrs":          {what: "networks that may reach SSH (22) and the Kubernetes API (6443)"},
	"cluster.sshPublicKeys":       {what: "authorized SSH keys of the droplets; empty: one is generated and exported as the secret output `sshPrivateKey`"},
	"cluster.volumeSizeGb":        {what: "size of the block-storage volume that holds every persistent volume and the etcd snapshots"},
	"cluster.vpcCidr":             {what: "the nodes' private network (private RFC 1918 IPv4, /16 to /28, no host bits)"},
	"cluster.apiHost":             {what: "extra name in the API server's certificate", deflt: "`k8s.<domain>`"},
	"cluster.readyTimeoutSeconds": {what: "how long `up` waits for the API server, a Ready node and the CRDs the platform uses before it declares any Kubernetes object"},
	"cluster.renderDir":           {what: "where `render` mode writes the manifests (relative to `infra/`)"},

	"cloudflare.zoneId": {what: "Cloudflare zone of `domain` (dashboard → Overview → Zone ID); required in digitalocean mode. The API token is the provider's secret `cloudflare:apiToken`"},

	"acme.email":    {what: "Let's Encrypt account; expiry notices go there"},
	"acme.server":   {what: "ACME directory URL (https) that replaces Let's Encrypt's for the issuer `acme.issuer` selects: a private or test ACME CA (the local stack points it at Pebble)", deflt: "Let's Encrypt's directory for `acme.issuer`"},
	"acme.caBundle": {what: "PEM CA certificates the `acme.server`'s TLS certificate chains to, when it is not publicly trusted (cert-manager's `spec.acme.caBundle`); only with `acme.server`"},
	"acme.issuer":   {what: "`staging` or `prod`: the ClusterIssuer of Certificate `pressroom-tls`. Changing it changes only the issuer reference; cert-manager re-issues"},

	"certManager.install": {what: "install cert-manager's Helm chart; `false` when the cluster already runs cert-manager (the ClusterIssuers are still created and `up` waits for its CRDs)"},
	"certManager.version": {what: "pinned chart version. From v1.15 the CRDs are installed with `crds.enabled` and `crds.keep`; older charts get `installCRDs`, whose CRDs go when the release is uninstalled"},
	"certManager.chart":   {what: "a Helm repository URL (chart name `cert-manager`) or a local chart directory (absolute, or relative to `infra/`) whose `Chart.yaml` is `cert-manager` at `certManager.version`"},
	"certManager.images":  {what: "image overrides by component (`controller`, `webhook`, `cainjector`, `acmesolver`, `startupapicheck`), each `repository[:tag]@sha256:<64 hex>`; the chart pulls by digest, so a tag is dropped", deflt: "the chart's images"},

	"upgrades.enabled":           {what: "keep every K3s server at `cluster.k3sVersion` with system-upgrade-controller and the Plan `k3s-server`", deflt: "`true` in digitalocean mode, else `false`"},
	"upgrades.install":           {what: "install the controller from its pinned release; `false` when the cluster already runs it"},
	"upgrades.controllerVersion": {what: "pinned system-upgrade-controller release"},

	"datastoreImages.postgres": {what: "Postgres image; it also runs the backup CronJob, so it needs `sh`, `initdb`, `postgres`, `pg_ctl` and `psql` on `PATH`, and its major version must be the data directory's"},
	"datastoreImages.redis":    {what: "Redis image; like every image here, `name[:tag]@sha256:<64 hex>` (`:latest` is refused)"},
	"datastoreImages.nats":     {what: "NATS (JetStream) image"},
	"datastoreImages.jaeger":   {what: "Jaeger v2 image (OTLP traces), run with the config file of the jaeger-config ConfigMap"},

	"app.googleClientId":     {what: "OIDC client id (auth); register the redirect URL `https://<domain>/auth/callback`"},
	"app.googleLoginEnabled": {what: "sign-in on or off"},
	"app.oidcIssuerUrl":      {what: "the OIDC issuer exactly as its discovery document says: lowercase `https://host[/path]`, no trailing slash, query, fragment or user info"},
	"app.emailFrom":          {what: "notification's sender, an address at a domain verified at Resend"},
	"app.adminEmails":        {what: "addresses that become admin when they sign in (never demoted by removal)"},
	"app.notifyEmail":        {what: "who notification tells about new articles"},
	"app.trustedCaBundle":    {what: "PEM certificates auth and notification trust for outbound HTTPS besides the public roots (an OIDC provider or mail relay behind a private CA): ConfigMap `trusted-ca`, mounted with `SSL_CERT_DIR`. It fixes trust, not reachability: their egress allows public addresses only"},

	"scaling.articleMin": {what: "article's HPA minimum (article and web also get a PDB with `minAvailable: 1`)"},
	"scaling.articleMax": {what: "article's HPA maximum"},
	"scaling.webMin":     {what: "web's HPA minimum"},
	"scaling.webMax":     {what: "web's HPA maximum"},
	"scaling.cpuTarget":  {what: "average CPU utilisation (percent) the HPAs aim at"},

	"registry.kind":     {what: "where built images go: `digitalocean` (the account's one registry `registry.name`, looked up, never created or deleted by a stack), `external` (`registry.server`, `registry.username`, secret `registryPassword`) or `none` (every service has `images.<service>`)", deflt: "`digitalocean` when a service is built in digitalocean mode, else `none`"},
	"registry.server":   {what: "host of an `external` registry"},
	"registry.username": {what: "user of an `external` registry"},
	"registry.name":     {what: "name of the account's DigitalOcean registry (create it once: [infra/OPERATIONS.md](../infra/OPERATIONS.md#create-the-shared-container-registry))"},

	"jwt.keyGeneration": {what: "raise it by one to rotate the signing key: auth signs with the new key, which every verifier already trusted (the set holds the previous, current and next generation's keys), so sessions survive the roll; a raise drops the generation before the previous one. A rollback never lowers it"},

	"storage.postgres": {what: "Postgres volume size"},
	"storage.redis":    {what: "Redis volume size"},
	"storage.nats":     {what: "NATS volume size"},
	"storage.media":    {what: "media files volume size"},
	"storage.backups":  {what: "backups volume size; every backup holds all media files"},

	"backup.schedule":      {what: "when the nightly backup runs, a Kubernetes CronJob schedule (controller time zone, UTC on the nodes; `@daily`, `0 3 * * MON`; no `TZ=`)"},
	"backup.retentionDays": {what: "backup directories older than this are deleted"},
}

// knownValues are the identifiers the settingRefusal messages print, so the
// README shows their values instead of a placeholder.
var knownValues = map[string]string{
	"DefaultK3sVersion":               DefaultK3sVersion,
	"DefaultCertManagerVersion":       DefaultCertManagerVersion,
	"DefaultUpgradeControllerVersion": DefaultUpgradeControllerVersion,
	"DefaultCertManagerChart":         DefaultCertManagerChart,
	"Namespace":                       Namespace,
	"minAdminPrefix4":                 strconv.Itoa(minAdminPrefix4),
	"minAdminPrefix6":                 strconv.Itoa(minAdminPrefix6),
	"Services":                        strings.Join(Services, ", "),
	"CertManagerImageKeys":            strings.Join(CertManagerImageKeys, ", "),
}

// settingRefusal is one problem the loader reports for the settings key matches.
type settingRefusal struct {
	key *regexp.Regexp
	msg string
}

// refusals reads every l.problemf/l.fail call of the loader and its
// validation: the key it names and its message, with the values it prints.
func refusals(t *testing.T) []settingRefusal {
	t.Helper()
	var out []settingRefusal
	fset := token.NewFileSet()
	for _, name := range []string{"load.go", "validate.go"} {
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) < 2 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "problemf" && sel.Sel.Name != "fail") {
				return true
			}
			key, ok := keyPattern(call.Args[0])
			if !ok {
				return true // a key held in a variable: the generic checks of every setting
			}
			lit, ok := call.Args[1].(*ast.BasicLit)
			if !ok {
				return true
			}
			format, _ := strconv.Unquote(lit.Value)
			if msg := render(format, call.Args[2:]); msg != "" {
				out = append(out, settingRefusal{key: regexp.MustCompile("^" + key + "$"), msg: msg})
			}
			return true
		})
	}
	return out
}

// keyPattern turns a problem's key expression into a regular expression:
// string literals as written, anything computed as one name.
func keyPattern(e ast.Expr) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		s, err := strconv.Unquote(e.Value)
		return regexp.QuoteMeta(s), err == nil
	case *ast.BinaryExpr:
		if _, lit := e.X.(*ast.BasicLit); !lit {
			if _, bin := e.X.(*ast.BinaryExpr); !bin {
				return "", false
			}
		}
		x, ok := keyPattern(e.X)
		if !ok {
			return "", false
		}
		if y, ok := keyPattern(e.Y); ok {
			return x + y, true
		}
		return x + "[A-Za-z]+", true
	}
	return "", false
}

var (
	verbRe = regexp.MustCompile(`%[-+# 0-9.]*[a-zA-Z%]`)
	gotRe  = regexp.MustCompile(`\s*\(got …\)`)
)

// render fills a problem's format with the values it names, "…" for the
// ones only a stack knows, and drops the "(got …)" echo of the value.
func render(format string, args []ast.Expr) string {
	i := 0
	msg := verbRe.ReplaceAllStringFunc(format, func(verb string) string {
		if verb == "%%" {
			return "%"
		}
		v := "…"
		if i < len(args) {
			v = valueOf(args[i])
		}
		i++
		return v
	})
	msg = strings.TrimSpace(gotRe.ReplaceAllString(msg, ""))
	if strings.Trim(msg, "…, ") == "" {
		return ""
	}
	return msg
}

func valueOf(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		if v, ok := knownValues[e.Name]; ok {
			return v
		}
	case *ast.CallExpr: // strings.Join(Services, ", ")
		if len(e.Args) == 2 {
			if id, ok := e.Args[0].(*ast.Ident); ok {
				if v, ok := knownValues[id.Name]; ok {
					return v
				}
			}
		}
	}
	return "…"
}

// typeOf names what a setting holds, as decodeValue reads it.
func typeOf(dst any) string {
	switch dst.(type) {
	case *string:
		return "string"
	case *int:
		return "whole number"
	case *bool:
		return "true/false"
	case *[]string:
		return "list of strings"
	case *map[string]string:
		return "map of strings"
	case text:
		return "text (PEM)"
	}
	return fmt.Sprintf("%T", dst)
}

func defaultOf(dst any) string {
	code := func(s string) string { return "`" + s + "`" }
	switch d := dst.(type) {
	case *string:
		if *d != "" {
			return code(*d)
		}
	case *int:
		return code(strconv.Itoa(*d))
	case *bool:
		return code(strconv.FormatBool(*d))
	case *[]string:
		if len(*d) > 0 {
			return code(strings.Join(*d, ", "))
		}
	case *map[string]string:
		if len(*d) > 0 {
			var kv []string
			for k, v := range *d {
				kv = append(kv, k+": "+v)
			}
			sort.Strings(kv)
			return code(strings.Join(kv, ", "))
		}
	case text:
		if *d.s != "" {
			return "set"
		}
	}
	return "—"
}

// settingsTable renders every setting the loader knows: type and default
// from the loader, refusals from its problem messages, meaning from
// settingDocs. It fails on a setting nobody described.
func settingsTable(t *testing.T) string {
	t.Helper()
	l := &loader{stack: "staging", values: map[string]string{}, failed: map[string]bool{}}
	l.build()
	refused := refusals(t)
	secret := map[string]bool{}
	for _, k := range SecretKeys() {
		secret[k] = true
	}
	sections := map[string][]string{}
	var order []string
	for _, s := range KnownSettings() {
		doc, ok := settingDocs[s]
		if !ok {
			t.Errorf("setting %s has no entry in settingDocs (stacks/readme_test.go): say what it does", s)
			continue
		}
		group, _, grouped := strings.Cut(s, ".")
		if !grouped {
			group = doc.grouped
		}
		typ, deflt := "string", "—"
		switch {
		case secret[s]:
			typ = "secret"
		case s == "protect":
			typ = "true/false"
		case s == "images":
			typ = "map of strings"
		}
		if dst, ok := l.dst[s]; ok {
			typ, deflt = typeOf(dst), defaultOf(dst)
		}
		if doc.deflt != "" {
			deflt = doc.deflt
		}
		var why []string
		for _, r := range refused {
			if (r.key.MatchString(s) || r.key.MatchString(s+".x")) && !slices.Contains(why, r.msg) {
				why = append(why, r.msg)
			}
		}
		cell := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
		if _, seen := sections[group]; !seen {
			order = append(order, group)
		}
		sections[group] = append(sections[group], fmt.Sprintf("| `%s` | %s | %s | %s | %s |",
			s, typ, cell(deflt), cell(doc.what), cell(strings.Join(why, "; "))))
	}
	for s := range settingDocs {
		if !slices.Contains(KnownSettings(), s) {
			t.Errorf("settingDocs describes %s, which the loader does not read", s)
		}
	}
	first := []string{"site", "cluster", "cloudflare", "acme", "certManager", "upgrades", "datastoreImages", "app", "scaling", "images", "registry", "jwt", "storage", "backup", "secrets"}
	sort.SliceStable(order, func(i, j int) bool {
		a, b := slices.Index(first, order[i]), slices.Index(first, order[j])
		if a < 0 {
			a = len(first)
		}
		if b < 0 {
			b = len(first)
		}
		return a < b
	})
	var b strings.Builder
	for _, g := range order {
		title := "`" + g + "`"
		switch g {
		case "site":
			title = "The site"
		case "secrets":
			title = "Secrets (`pulumi config set --secret`)"
		}
		fmt.Fprintf(&b, "### %s\n\n| setting | type | default | what it does | refused with |\n|---|---|---|---|---|\n", title)
		b.WriteString(strings.Join(sections[g], "\n"))
		b.WriteString("\n\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

const (
	beginSettings = "<!-- settings: generated from stacks/ by `go test ./stacks -run TestReadmeIsTheSettings -update`; edit the code, not this table -->"
	endSettings   = "<!-- end of generated settings -->"
)

// README.md's settings are the loader's: a setting added, a default changed
// or a settingRefusal reworded fails here until the page is regenerated.
func TestReadmeIsTheSettings(t *testing.T) {
	raw, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	i, j := strings.Index(doc, beginSettings), strings.Index(doc, endSettings)
	if i < 0 || j < i {
		t.Fatalf("README.md: the generated settings' markers are missing:\n%s\n%s", beginSettings, endSettings)
	}
	want := settingsTable(t)
	if t.Failed() {
		return
	}
	if doc[i+len(beginSettings):j] == "\n"+want+"\n" {
		return
	}
	if *update {
		if err := os.WriteFile("README.md", []byte(doc[:i+len(beginSettings)]+"\n"+want+"\n"+doc[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md's settings differ from the code; run go test ./stacks -run TestReadmeIsTheSettings -update")
}

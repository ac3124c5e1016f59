package platform

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"pressroom.dev/infra/app"
	"pressroom.dev/infra/datastores"
	"pressroom.dev/infra/secrets"

	"pressroom.dev/stacks"
)

// The 31 objects of the hand-run system this program replaces: the
// platform must have at least these.
var seedCounts = map[string]int{
	"Deployment": 6, "StatefulSet": 3, "Service": 9, "Ingress": 1, "Middleware": 1,
	"HorizontalPodAutoscaler": 2, "PodDisruptionBudget": 2, "NetworkPolicy": 5,
	"PersistentVolumeClaim": 1, "ConfigMap": 1, "Secret": 2,
}

func kindCounts(g *graph) map[string]int {
	c := map[string]int{}
	for _, r := range g.recs {
		if k := r.kind(); k != "" {
			c[k]++
		} else if r.Type != "pulumi:providers:kubernetes" {
			c[r.Type]++
		}
	}
	return c
}

func TestObjectCountsPerStack(t *testing.T) {
	common := map[string]int{
		"Namespace": 2, "Release": 1, "ClusterIssuer": 2, "Certificate": 1, "Middleware": 4,
		"Deployment": 6, "StatefulSet": 3, "Service": 9, "ServiceAccount": 10, "Ingress": 3,
		"HorizontalPodAutoscaler": 2, "PodDisruptionBudget": 2, "NetworkPolicy": 13,
		"PersistentVolumeClaim": 2, "ConfigMap": 3, "Secret": 7, "CronJob": 1, // ConfigMaps: postgres-init, jaeger-config, backup scripts
		"random:index/randomPassword:RandomPassword": 7, "tls:index/privateKey:PrivateKey": 2, // + secret-checksums; signing and next JWT key
		"random:index/randomId:RandomId": 1, // the test's readiness gate
	}
	prod := map[string]int{}
	for k, v := range common {
		prod[k] = v
	}
	prod["Secret"] = 8 // + registry-credentials
	prod["docker:index/image:Image"] = 5
	prod["digitalocean:index/containerRegistry:ContainerRegistry"] = 0 // the account's, looked up
	prod["digitalocean:index/containerRegistryDockerCredentials:ContainerRegistryDockerCredentials"] = 2

	// A trusted CA bundle adds one ConfigMap (trusted-ca) and nothing else.
	withCA := map[string]int{}
	for k, v := range common {
		withCA[k] = v
	}
	withCA["ConfigMap"] = 4
	caArgs := stagingArgs()
	caArgs.App.TrustedCABundle = testCABundle(t)

	for _, tc := range []struct {
		stack string
		args  *PlatformArgs
		want  map[string]int
	}{{"staging", stagingArgs(), common}, {"prod", prodArgs(), prod}, {"staging", caArgs, withCA}} {
		name := tc.stack
		if tc.args.App.TrustedCABundle != "" {
			name += " with a trusted CA bundle"
		}
		t.Run(name, func(t *testing.T) {
			got := kindCounts(run(t, tc.stack, tc.args))
			for k, n := range seedCounts {
				if got[k] < n {
					t.Errorf("%s: %d, fewer than the hand-run system's %d", k, got[k], n)
				}
			}
			keys := map[string]bool{}
			for k := range got {
				keys[k] = true
			}
			for k := range tc.want {
				keys[k] = true
			}
			for k := range keys {
				if got[k] != tc.want[k] {
					t.Errorf("%s: got %d, want %d", k, got[k], tc.want[k])
				}
			}
			total := 0
			for k, n := range got {
				if !strings.Contains(k, ":") {
					total += n
				}
			}
			t.Logf("%s: %d Kubernetes objects: %v", tc.stack, total, got)
		})
	}
}

func TestOfflineStackRegistersOnlyKubernetesTLSRandom(t *testing.T) {
	a := stagingArgs()
	a.InstallCertManager = false
	g := run(t, "ci", a)
	for _, r := range g.recs {
		pkg := strings.SplitN(r.Type, ":", 2)[0]
		if pkg == "pulumi" {
			pkg = r.Type
		}
		switch pkg {
		case "kubernetes", "tls", "random", "pulumi:providers:kubernetes":
		default:
			t.Errorf("%s %s needs a provider the offline engine does not have", r.Type, r.Name)
		}
		if r.kind() == "Release" || (r.kind() == "Namespace" && r.metaName() == "cert-manager") {
			t.Errorf("cert-manager install is off but %s %s is registered", r.kind(), r.metaName())
		}
	}
	if n := len(g.all("ClusterIssuer")); n != 2 {
		t.Errorf("ClusterIssuers: %d, want 2 even when cert-manager is preinstalled", n)
	}
}

// podSpecs returns every pod template of the graph by owner.
func podSpecs(g *graph) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, r := range g.recs {
		spec, _ := r.In["spec"].(map[string]any)
		var tmpl map[string]any
		switch r.kind() {
		case "Deployment", "StatefulSet":
			tmpl, _ = spec["template"].(map[string]any)
		case "CronJob":
			jt, _ := spec["jobTemplate"].(map[string]any)
			js, _ := jt["spec"].(map[string]any)
			tmpl, _ = js["template"].(map[string]any)
		default:
			continue
		}
		ps, _ := tmpl["spec"].(map[string]any)
		out[r.kind()+"/"+r.metaName()] = ps
	}
	return out
}

func list(v any) []map[string]any {
	a, _ := v.([]any)
	out := make([]map[string]any, 0, len(a))
	for _, e := range a {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func get(m map[string]any, path ...string) any {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[p]
	}
	return cur
}

var digestRE = regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)

func TestInvariantsOverEveryPod(t *testing.T) {
	for _, stack := range []string{"staging", "prod"} {
		args := stagingArgs()
		if stack == "prod" {
			args = prodArgs()
		}
		g := run(t, stack, args)
		pods := podSpecs(g)
		if len(pods) != 10 {
			t.Fatalf("%s: %d pod templates, want 10 (6 Deployments, 3 StatefulSets, 1 CronJob)", stack, len(pods))
		}
		for owner, ps := range pods {
			where := stack + " " + owner
			if ps["automountServiceAccountToken"] != false {
				t.Errorf("%s: service-account token is mounted", where)
			}
			if get(ps, "securityContext", "runAsNonRoot") != true {
				t.Errorf("%s: pod runAsNonRoot is not true", where)
			}
			if get(ps, "securityContext", "seccompProfile", "type") != "RuntimeDefault" {
				t.Errorf("%s: seccomp is not RuntimeDefault", where)
			}
			if uid, _ := get(ps, "securityContext", "runAsUser").(float64); uid == 0 {
				t.Errorf("%s: runAsUser is root or unset", where)
			}
			tmpMounted := false
			for _, v := range list(ps["volumes"]) {
				if v["name"] == "tmp" && get(v, "emptyDir", "sizeLimit") != nil {
					tmpMounted = true
				}
			}
			if !tmpMounted {
				t.Errorf("%s: no size-limited tmp emptyDir", where)
			}
			isJob := strings.HasPrefix(owner, "CronJob/")
			containers := append(list(ps["containers"]), list(ps["initContainers"])...)
			for _, c := range containers {
				cw := fmt.Sprintf("%s container %v", where, c["name"])
				img, _ := c["image"].(string)
				if !digestRE.MatchString(img) {
					t.Errorf("%s: image %q is not pinned by digest", cw, img)
				}
				if strings.Contains(img, ":latest") {
					t.Errorf("%s: image %q uses :latest", cw, img)
				}
				for _, kind := range []string{"requests", "limits"} {
					for _, res := range []string{"cpu", "memory"} {
						if get(c, "resources", kind, res) == nil {
							t.Errorf("%s: no %s.%s", cw, kind, res)
						}
					}
				}
				// Job containers run to completion: probes do not apply to them.
				if !isJob {
					for _, p := range []string{"startupProbe", "readinessProbe", "livenessProbe"} {
						if c[p] == nil {
							t.Errorf("%s: no %s", cw, p)
						}
					}
				}
				sc, _ := c["securityContext"].(map[string]any)
				if sc["allowPrivilegeEscalation"] != false || sc["readOnlyRootFilesystem"] != true {
					t.Errorf("%s: securityContext %v must forbid escalation and make the root filesystem read-only", cw, sc)
				}
				if drop, _ := get(sc, "capabilities", "drop").([]any); len(drop) != 1 || drop[0] != "ALL" {
					t.Errorf("%s: capabilities.drop is %v, want [ALL]", cw, drop)
				}
				mountsTmp := false
				for _, m := range list(c["volumeMounts"]) {
					if m["mountPath"] == "/tmp" {
						mountsTmp = true
					}
				}
				if !mountsTmp {
					t.Errorf("%s: /tmp is not mounted", cw)
				}
				for _, e := range list(c["env"]) {
					name, _ := e["name"].(string)
					if looksSecret(name) && e["value"] != nil {
						t.Errorf("%s: %s is a plain env value; secrets must come from secretKeyRef", cw, name)
					}
				}
			}
		}
		for _, d := range g.all("Deployment") {
			ru := get(d.In, "spec", "strategy", "rollingUpdate")
			if get(d.In, "spec", "strategy", "type") != "RollingUpdate" || get(ru.(map[string]any), "maxUnavailable") != float64(0) || get(ru.(map[string]any), "maxSurge") != float64(1) {
				t.Errorf("%s deployment %s: strategy %v, want RollingUpdate 0/1", stack, d.metaName(), get(d.In, "spec", "strategy"))
			}
		}
		for _, sa := range g.all("ServiceAccount") {
			if sa.In["automountServiceAccountToken"] != false {
				t.Errorf("%s: ServiceAccount %s automounts its token", stack, sa.metaName())
			}
		}
	}
}

func looksSecret(env string) bool {
	for _, s := range []string{"PASSWORD", "SECRET", "API_KEY", "DATABASE_URL", "TOKEN"} {
		if strings.Contains(env, s) {
			return true
		}
	}
	return false
}

func TestServicesContract(t *testing.T) {
	g := run(t, "staging", stagingArgs())
	pods := podSpecs(g)
	envOf := func(svc string) map[string]map[string]any {
		out := map[string]map[string]any{}
		for _, e := range list(list(pods["Deployment/"+svc]["containers"])[0]["env"]) {
			out[e["name"].(string)] = e
		}
		return out
	}
	secretRef := func(env map[string]map[string]any, name, secret, key string) {
		t.Helper()
		e, ok := env[name]
		if !ok {
			t.Errorf("%s missing", name)
			return
		}
		if get(e, "valueFrom", "secretKeyRef", "name") != secret || get(e, "valueFrom", "secretKeyRef", "key") != key {
			t.Errorf("%s = %v, want secretKeyRef %s/%s", name, e, secret, key)
		}
	}
	value := func(env map[string]map[string]any, name, want string) {
		t.Helper()
		if got := env[name]["value"]; got != want {
			t.Errorf("%s = %v, want %q", name, got, want)
		}
	}
	for _, svc := range stacks.Services {
		env := envOf(svc)
		value(env, "HTTP_ADDR", fmt.Sprintf(":%d", Ports[svc]))
		value(env, "OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4317")
		value(env, "GOMEMLIMIT", "241591910") // 90% of the 256Mi limit
		if svc != "web" {
			secretRef(env, "DATABASE_URL", svc+"-database", "DATABASE_URL")
		} else if _, ok := env["DATABASE_URL"]; ok {
			t.Errorf("web has no database but got DATABASE_URL")
		}
		c := list(pods["Deployment/"+svc]["containers"])[0]
		for _, p := range []struct{ probe, path string }{{"startupProbe", "/healthz"}, {"readinessProbe", "/readyz"}, {"livenessProbe", "/healthz"}} {
			if get(c, p.probe, "httpGet", "path") != p.path || get(c, p.probe, "httpGet", "port") != float64(Ports[svc]) {
				t.Errorf("%s %s: %v, want %s on %d", svc, p.probe, c[p.probe], p.path, Ports[svc])
			}
		}
		// /keys: auth may read the private key; the others only the public set.
		var items []string
		for _, v := range list(pods["Deployment/"+svc]["volumes"]) {
			if v["name"] == "keys" {
				for _, it := range list(get(v, "secret", "items")) {
					items = append(items, it["key"].(string))
				}
			}
		}
		sort.Strings(items)
		want := map[string]string{"auth": "jwt_private.pem,jwt_public.pem", "notification": ""}[svc]
		if svc != "auth" && svc != "notification" {
			want = "jwt_public.pem"
		}
		if strings.Join(items, ",") != want {
			t.Errorf("%s mounts keys %v, want %q", svc, items, want)
		}
	}
	auth := envOf("auth")
	value(auth, "REDIS_ADDR", "redis:6379")
	secretRef(auth, "REDIS_PASSWORD", "datastore-credentials", "redis-password")
	secretRef(auth, "GOOGLE_CLIENT_SECRET", "app-secrets", "GOOGLE_CLIENT_SECRET")
	value(auth, "ADMIN_EMAILS", "admin@example.com")
	value(auth, "OIDC_REDIRECT_URL", "https://example.com/auth/callback")
	value(envOf("article"), "NATS_URL", "nats://nats:4222")
	value(envOf("notification"), "NATS_URL", "nats://nats:4222")
	secretRef(envOf("notification"), "RESEND_API_KEY", "app-secrets", "RESEND_API_KEY")
	value(envOf("media"), "MEDIA_DIR", "/data")
	value(envOf("web"), "AUTH_URL", "http://auth:8081")
	value(envOf("web"), "ARTICLE_URL", "http://article:8082")
	value(envOf("web"), "MEDIA_URL", "http://media:8083")

	media := pods["Deployment/media"]
	found := false
	for _, v := range list(media["volumes"]) {
		if get(v, "persistentVolumeClaim", "claimName") == "media-data" {
			found = true
		}
	}
	if !found {
		t.Errorf("media does not mount the media-data claim")
	}
	if g := get(pods["Deployment/web"], "terminationGracePeriodSeconds"); g.(float64) < 25 {
		t.Errorf("termination grace %v leaves no room for the kit's 20 s drain", g)
	}
}

func TestDatabaseURLsLiveOnlyInSecrets(t *testing.T) {
	g := run(t, "staging", stagingArgs())
	pw := map[string]string{}
	creds := g.one(t, "Secret", "datastore-credentials")
	for k, v := range creds.In["data"].(map[string]any) {
		b, _ := base64.StdEncoding.DecodeString(v.(string))
		pw[k] = string(b)
	}
	for _, svc := range stacks.Databases {
		s := g.one(t, "Secret", svc+"-database")
		raw, _ := base64.StdEncoding.DecodeString(get(s.In, "data", "DATABASE_URL").(string))
		want := fmt.Sprintf("postgres://%s:%s@postgres:5432/%s_db?sslmode=disable", svc, pw[svc+"-db-password"], svc)
		if string(raw) != want {
			t.Errorf("%s DATABASE_URL = %q, want %q", svc, raw, want)
		}
		if len(pw[svc+"-db-password"]) < 16 {
			t.Errorf("%s password is too short or missing", svc)
		}
	}
}

func TestNoSecretValueOutsideSecrets(t *testing.T) {
	for _, stack := range []string{"staging", "prod"} {
		args := stagingArgs()
		if stack == "prod" {
			args = prodArgs()
		}
		g := run(t, stack, args)
		// six generated passwords and the JWT private key at least
		if len(g.secrets) < 7 {
			t.Fatalf("only %d secret values seen; the check would prove nothing", len(g.secrets))
		}
		needles := map[string]string{
			"google-secret-value-1234":    "googleClientSecret",
			"re_resend-secret-value-5678": "resendApiKey",
		}
		for s, from := range g.secrets {
			if len(s) < 8 {
				continue
			}
			needles[s] = from
			needles[base64.StdEncoding.EncodeToString([]byte(s))] = from + " (base64)"
			// a secret is also leaked by any distinctive line of it (PEM bodies)
			for _, line := range strings.Split(s, "\n") {
				if len(line) > 40 {
					needles[line] = from + " (line)"
				}
			}
		}
		for _, r := range g.recs {
			if r.kind() == "Secret" || !strings.HasPrefix(r.Type, "kubernetes:") {
				continue
			}
			b, _ := json.Marshal(r.In)
			text := string(b)
			for n, from := range needles {
				if strings.Contains(text, n) {
					t.Errorf("%s: %s %s holds the secret value of %s", stack, r.kind(), r.metaName(), from)
				}
			}
		}
	}
}

func TestNamespaceEnforcesRestricted(t *testing.T) {
	g := run(t, "staging", stagingArgs())
	ns := g.one(t, "Namespace", "pressroom")
	labels := get(ns.In, "metadata", "labels").(map[string]any)
	for _, k := range []string{"enforce", "audit", "warn"} {
		if labels["pod-security.kubernetes.io/"+k] != "restricted" {
			t.Errorf("namespace label %s = %v, want restricted", k, labels["pod-security.kubernetes.io/"+k])
		}
	}
	for _, r := range g.recs {
		if ns := get(r.In, "metadata", "namespace"); r.kind() != "" && ns != nil && ns != "pressroom" && ns != "cert-manager" {
			t.Errorf("%s %s is in namespace %v", r.kind(), r.metaName(), ns)
		}
	}
}

type route struct {
	host, path, svc string
	port            float64
}

func routes(ing rec) []route {
	var out []route
	for _, rule := range list(get(ing.In, "spec", "rules")) {
		for _, p := range list(get(rule, "http", "paths")) {
			out = append(out, route{rule["host"].(string), p["path"].(string),
				get(p, "backend", "service", "name").(string), get(p, "backend", "service", "port", "number").(float64)})
		}
	}
	return out
}

func TestIngressRoutesTLSAndRedirects(t *testing.T) {
	g := run(t, "staging", stagingArgs())
	https := g.one(t, "Ingress", "pressroom")
	wantRoutes := []route{{"example.com", "/media", "media", 8083}, {"example.com", "/", "web", 8080}, {"www.example.com", "/", "web", 8080}}
	if got := routes(https); fmt.Sprint(got) != fmt.Sprint(wantRoutes) {
		t.Errorf("https routes %v, want %v", got, wantRoutes)
	}
	tls := list(get(https.In, "spec", "tls"))
	if len(tls) != 1 || tls[0]["secretName"] != "pressroom-tls" || fmt.Sprint(tls[0]["hosts"]) != "[example.com www.example.com]" {
		t.Errorf("tls %v, want pressroom-tls for apex and www", tls)
	}
	ann := get(https.In, "metadata", "annotations").(map[string]any)
	if ann["traefik.ingress.kubernetes.io/router.entrypoints"] != "websecure" ||
		ann["traefik.ingress.kubernetes.io/router.middlewares"] != "pressroom-security-headers@kubernetescrd,pressroom-www-to-apex@kubernetescrd" {
		t.Errorf("https ingress annotations %v", ann)
	}
	if get(https.In, "spec", "ingressClassName") != "traefik" {
		t.Errorf("https ingress class %v", get(https.In, "spec", "ingressClassName"))
	}

	http := g.one(t, "Ingress", "pressroom-http-redirect")
	hann := get(http.In, "metadata", "annotations").(map[string]any)
	if hann["traefik.ingress.kubernetes.io/router.entrypoints"] != "web" || hann["traefik.ingress.kubernetes.io/router.middlewares"] != "pressroom-redirect-https@kubernetescrd" {
		t.Errorf("http ingress annotations %v", hann)
	}
	if get(http.In, "spec", "tls") != nil {
		t.Errorf("the HTTP ingress must not claim TLS")
	}
	// HTTP-01 stays reachable: the solver's own Ingress path is longer than
	// every path of the redirecting Ingress, so Traefik ranks it first.
	for _, r := range routes(http) {
		if strings.HasPrefix("/.well-known/acme-challenge/token", r.path) && len(r.path) >= len("/.well-known/acme-challenge/token") {
			t.Errorf("http route %v would shadow the ACME solver", r)
		}
	}

	redirect := g.one(t, "Middleware", "redirect-https")
	if get(redirect.In, "spec", "redirectScheme", "scheme") != "https" || get(redirect.In, "spec", "redirectScheme", "permanent") != true {
		t.Errorf("redirect-https %v", redirect.In["spec"])
	}
	www := g.one(t, "Middleware", "www-to-apex")
	re := regexp.MustCompile(get(www.In, "spec", "redirectRegex", "regex").(string))
	repl := strings.ReplaceAll(get(www.In, "spec", "redirectRegex", "replacement").(string), "${1}", "$1")
	if got := re.ReplaceAllString("https://www.example.com/articles/hello?x=1", repl); got != "https://example.com/articles/hello?x=1" {
		t.Errorf("www redirect gives %q", got)
	}
	if re.MatchString("https://example.com/") || re.MatchString("https://wwwXexample.com/") {
		t.Errorf("www redirect regex %q matches the apex", re)
	}
	if get(www.In, "spec", "redirectRegex", "permanent") != true {
		t.Errorf("www redirect is not permanent (301)")
	}
	// Probes and metrics answer in the cluster only: an exact-path Ingress for
	// each (longer than "/", so Traefik ranks it first) whose middleware lets
	// no client through.
	internal := g.one(t, "Ingress", "pressroom-internal")
	var wantInternal []route
	for _, host := range []string{"example.com", "www.example.com"} {
		for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
			wantInternal = append(wantInternal, route{host, p, "web", 8080})
		}
	}
	if got := routes(internal); fmt.Sprint(got) != fmt.Sprint(wantInternal) {
		t.Errorf("internal routes %v, want %v", got, wantInternal)
	}
	for _, rule := range list(get(internal.In, "spec", "rules")) {
		for _, p := range list(get(rule, "http", "paths")) {
			if p["pathType"] != "Exact" {
				t.Errorf("internal path %v is not Exact", p)
			}
		}
	}
	iann := get(internal.In, "metadata", "annotations").(map[string]any)
	if iann["traefik.ingress.kubernetes.io/router.entrypoints"] != "websecure" || iann["traefik.ingress.kubernetes.io/router.middlewares"] != "pressroom-internal-only@kubernetescrd" {
		t.Errorf("internal ingress annotations %v", iann)
	}
	// Traefik ranks routers by their rule's length unless told otherwise;
	// Path(`/readyz`) ties PathPrefix(`/`), and on the live node web then
	// answered /readyz. The internal routers must outrank every other one.
	prio, err := strconv.Atoi(fmt.Sprint(iann["traefik.ingress.kubernetes.io/router.priority"]))
	if err != nil {
		t.Fatalf("internal ingress has no numeric router.priority: %v", iann)
	}
	for _, ing := range g.all("Ingress") {
		if ing.metaName() == internal.metaName() {
			continue
		}
		for _, rule := range list(get(ing.In, "spec", "rules")) {
			for _, p := range list(get(rule, "http", "paths")) {
				matcher := "PathPrefix"
				if p["pathType"] == "Exact" {
					matcher = "Path"
				}
				r := fmt.Sprintf("Host(`%s`) && %s(`%s`)", rule["host"], matcher, p["path"])
				if len(r) >= prio {
					t.Errorf("router %s (default priority %d) outranks the internal paths (priority %d)", r, len(r), prio)
				}
			}
		}
	}
	deny := g.one(t, "Middleware", "internal-only")
	if fmt.Sprint(get(deny.In, "spec", "ipAllowList", "sourceRange")) != "[127.0.0.1/32]" {
		t.Errorf("internal-only middleware %v must allow no outside client", deny.In["spec"])
	}
	hdr := g.one(t, "Middleware", "security-headers")
	if get(hdr.In, "spec", "headers", "stsSeconds") == nil || get(hdr.In, "spec", "headers", "contentTypeNosniff") != true {
		t.Errorf("security headers %v", hdr.In["spec"])
	}
}

func TestAutoscalingAndDisruptionBudgets(t *testing.T) {
	g := run(t, "staging", stagingArgs())
	want := map[string][2]float64{"article": {2, 5}, "web": {2, 6}}
	for _, h := range g.all("HorizontalPodAutoscaler") {
		w, ok := want[h.metaName()]
		if !ok {
			t.Errorf("unexpected HPA %s", h.metaName())
			continue
		}
		spec := h.In["spec"].(map[string]any)
		metric := list(spec["metrics"])[0]
		if spec["minReplicas"] != w[0] || spec["maxReplicas"] != w[1] ||
			get(metric, "resource", "name") != "cpu" || get(metric, "resource", "target", "averageUtilization") != float64(70) ||
			get(spec, "scaleTargetRef", "name") != h.metaName() {
			t.Errorf("HPA %s: %v", h.metaName(), spec)
		}
		// The HPA owns the replica count: a fixed one would fight it on every update.
		if r := get(g.one(t, "Deployment", h.metaName()).In, "spec", "replicas"); r != nil {
			t.Errorf("deployment %s sets replicas %v under an HPA", h.metaName(), r)
		}
	}
	pdbs := map[string]bool{}
	for _, p := range g.all("PodDisruptionBudget") {
		pdbs[p.metaName()] = true
		if get(p.In, "spec", "minAvailable") != float64(1) {
			t.Errorf("PDB %s: %v", p.metaName(), p.In["spec"])
		}
	}
	if !pdbs["article"] || !pdbs["web"] || len(pdbs) != 2 {
		t.Errorf("PDBs %v, want article and web", pdbs)
	}
}

func TestTopologySpreadOnlyWithSeveralNodes(t *testing.T) {
	for _, nodes := range []int{1, 3} {
		a := stagingArgs()
		a.Nodes = nodes
		g := run(t, "staging", a)
		for _, svc := range stacks.Services {
			ps := podSpecs(g)["Deployment/"+svc]
			has := ps["topologySpreadConstraints"] != nil
			if has != (nodes > 1) {
				t.Errorf("nodes=%d: %s topology spread = %v", nodes, svc, has)
			}
		}
	}
}

// With several nodes only the first holds the Block Storage volume, so every
// pod with persistent data must be pinned to it; on one node nothing is.
func TestPersistentPodsPinnedToTheDataNode(t *testing.T) {
	for _, nodes := range []int{1, 3} {
		a := stagingArgs()
		a.Nodes = nodes
		pinned := 0
		for name, ps := range podSpecs(run(t, "staging", a)) {
			sel, _ := ps["nodeSelector"].(map[string]any)
			wantPinned := strings.HasPrefix(name, "StatefulSet/") || strings.HasPrefix(name, "CronJob/") || name == "Deployment/media"
			switch {
			case wantPinned && nodes > 1 && sel[DataNodeLabel] != "true":
				t.Errorf("nodes=%d: %s nodeSelector %v, want %s=true", nodes, name, sel, DataNodeLabel)
			case (!wantPinned || nodes == 1) && sel != nil:
				t.Errorf("nodes=%d: %s has nodeSelector %v, want none", nodes, name, sel)
			}
			if sel != nil {
				pinned++
			}
		}
		if nodes > 1 && pinned != 5 { // postgres, redis, nats, media, backup
			t.Errorf("nodes=%d: %d pods pinned to the data node, want 5", nodes, pinned)
		}
	}
}

// The backup's media step reads files only their owner may read and writes
// where the other steps must read and delete: it must run as the media
// Deployment's user, in the backup pod's group, with the media claim
// mounted read-only and no database password.
func TestBackupSnapshotsMediaAsItsOwner(t *testing.T) {
	pods := podSpecs(run(t, "staging", stagingArgs()))
	bk, md := pods["CronJob/backup"], pods["Deployment/media"]
	mediaUser := get(md, "securityContext", "runAsUser")
	group := get(bk, "securityContext", "fsGroup")
	claimOf := func(ps map[string]any, volume string) (string, any) {
		for _, v := range list(ps["volumes"]) {
			if v["name"] == volume {
				c, _ := get(v, "persistentVolumeClaim", "claimName").(string)
				return c, get(v, "persistentVolumeClaim", "readOnly")
			}
		}
		return "", nil
	}
	var step map[string]any
	for _, c := range list(bk["initContainers"]) {
		if c["name"] == "media" {
			step = c
		}
	}
	if step == nil {
		t.Fatalf("backup pod has no media step: %v", bk["initContainers"])
	}
	if u := get(step, "securityContext", "runAsUser"); mediaUser == nil || u != mediaUser {
		t.Errorf("media step runs as %v, the media files' owner is %v", u, mediaUser)
	}
	if g := get(step, "securityContext", "runAsGroup"); group == nil || g != group {
		t.Errorf("media step's group %v, the backup pod's fsGroup is %v", g, group)
	}
	if len(list(step["env"])) != 0 {
		t.Errorf("media step has env %v: it needs no database credentials", step["env"])
	}
	for _, c := range list(bk["containers"]) {
		if c["name"] == "verify" && len(list(c["env"])) != 0 {
			t.Errorf("verify step has env %v: it reads files only and needs no database credentials", c["env"])
		}
	}
	mounted := ""
	for _, m := range list(step["volumeMounts"]) {
		if m["mountPath"] == "/media" && m["readOnly"] == true {
			mounted, _ = m["name"].(string)
		}
	}
	claim, ro := claimOf(bk, mounted)
	var mediaClaim string
	for _, v := range list(md["volumes"]) {
		if c, _ := get(v, "persistentVolumeClaim", "claimName").(string); c != "" {
			mediaClaim = c
		}
	}
	if mounted == "" || claim != mediaClaim || ro != true {
		t.Errorf("media step mounts %q (claim %q, readOnly %v) at /media; want the media Deployment's claim %q read-only", mounted, claim, ro, mediaClaim)
	}
}

func TestClusterIssuersWaitForCertManager(t *testing.T) {
	g := run(t, "staging", stagingArgs())
	rel := g.byType("kubernetes:helm.sh/v3:Release")
	if len(rel) != 1 {
		t.Fatalf("%d cert-manager releases", len(rel))
	}
	if get(rel[0].In, "values", "crds", "enabled") != true || rel[0].In["skipAwait"] != false || rel[0].In["version"] != "v1.21.2" {
		t.Errorf("release %v: CRDs on, await on, pinned version required", rel[0].In)
	}
	for _, ci := range g.all("ClusterIssuer") {
		dependsOnRelease := false
		for _, d := range ci.Deps {
			if d == rel[0].URN {
				dependsOnRelease = true
			}
		}
		if !dependsOnRelease {
			t.Errorf("ClusterIssuer %s does not depend on the cert-manager release (deps %v)", ci.metaName(), ci.Deps)
		}
		solver := list(get(ci.In, "spec", "acme", "solvers"))
		if get(ci.In, "spec", "acme", "email") != "ops@example.com" || get(solver[0], "http01", "ingress", "ingressClassName") != "traefik" {
			t.Errorf("ClusterIssuer %s: %v", ci.metaName(), ci.In["spec"])
		}
	}
	// The readiness gate comes first: the namespaces wait for it.
	gate := g.byType("random:index/randomId:RandomId")[0]
	for _, ns := range g.all("Namespace") {
		ok := false
		for _, d := range ns.Deps {
			ok = ok || d == gate.URN
		}
		if !ok {
			t.Errorf("namespace %s does not wait for the cluster readiness gate", ns.metaName())
		}
	}
	// Every Kubernetes object goes through the provider handed over.
	for _, r := range g.recs {
		if strings.HasPrefix(r.Type, "kubernetes:") && !strings.Contains(r.Provider, "pulumi:providers:kubernetes::k8s::") {
			t.Errorf("%s %s uses provider %q, not the one passed in", r.kind(), r.metaName(), r.Provider)
		}
	}
}

func TestSwitchingIssuerChangesOnlyTheIssuerReference(t *testing.T) {
	a := stagingArgs()
	staging := run(t, "staging", a)
	a.Issuer = "prod"
	prod := run(t, "staging", a)
	index := func(g *graph) map[string]string {
		out := map[string]string{}
		for _, r := range g.recs {
			if !strings.HasPrefix(r.Type, "kubernetes:") || r.kind() == "Secret" {
				continue // Secrets hold fresh mock passwords each run
			}
			b, _ := json.Marshal(r.In)
			out[r.URN] = string(b)
		}
		return out
	}
	si, pi := index(staging), index(prod)
	if len(si) != len(pi) {
		t.Fatalf("switching issuer changed the object count: %d → %d", len(si), len(pi))
	}
	var changed []string
	for urn, s := range si {
		if pi[urn] != s {
			changed = append(changed, urn)
		}
	}
	if len(changed) != 1 || !strings.HasSuffix(changed[0], "::certificate") {
		t.Fatalf("changed %v, want only the Certificate", changed)
	}
	cs, _ := staging.byURN(changed[0])
	cp, _ := prod.byURN(changed[0])
	if get(cs.In, "spec", "issuerRef", "name") != "letsencrypt-staging" || get(cp.In, "spec", "issuerRef", "name") != "letsencrypt-prod" {
		t.Errorf("issuerRef %v → %v", get(cs.In, "spec", "issuerRef"), get(cp.In, "spec", "issuerRef"))
	}
	get(cp.In, "spec").(map[string]any)["issuerRef"] = get(cs.In, "spec", "issuerRef")
	bs, _ := json.Marshal(cs.In)
	bp, _ := json.Marshal(cp.In)
	if string(bs) != string(bp) {
		t.Errorf("the Certificate changed beyond its issuerRef:\n%s\n%s", bs, bp)
	}
}

func TestImagesBuiltAndPushedByDigest(t *testing.T) {
	g := run(t, "prod", prodArgs())
	for _, img := range g.byType("docker:index/image:Image") {
		svc := strings.TrimPrefix(img.Name, "image-")
		if get(img.In, "build", "platform") != "linux/amd64" || get(img.In, "build", "context") != ".." ||
			get(img.In, "build", "dockerfile") != "../services/"+svc+"/Dockerfile" {
			t.Errorf("image %s build %v", svc, img.In["build"])
		}
		if want := "registry.digitalocean.com/pressroom/" + svc + ":prod"; img.In["imageName"] != want {
			t.Errorf("image %s name %v, want %s", svc, img.In["imageName"], want)
		}
		c := list(podSpecs(g)["Deployment/"+svc]["containers"])[0]
		if !strings.HasPrefix(c["image"].(string), "registry.digitalocean.com/pressroom/"+svc+"@sha256:") {
			t.Errorf("%s deploys %v, not the pushed digest", svc, c["image"])
		}
		if ps := list(podSpecs(g)["Deployment/"+svc]["imagePullSecrets"]); len(ps) != 1 || ps[0]["name"] != "registry-credentials" {
			t.Errorf("%s pull secrets %v", svc, ps)
		}
	}
	pull := g.one(t, "Secret", "registry-credentials")
	raw, _ := base64.StdEncoding.DecodeString(get(pull.In, "data", ".dockerconfigjson").(string))
	if pull.In["type"] != "kubernetes.io/dockerconfigjson" || !strings.Contains(string(raw), "registry.digitalocean.com") {
		t.Errorf("pull secret %v %s", pull.In["type"], raw)
	}
}

func TestPrebuiltImageChangeTouchesOneDeployment(t *testing.T) {
	a := stagingArgs()
	before := run(t, "ci", a)
	a.Images = map[string]string{}
	for k, v := range stagingArgs().Images {
		a.Images[k] = v
	}
	a.Images["article"] = "registry.example.com/pressroom/article:v2@sha256:" + strings.Repeat("ab", 32)
	after := run(t, "ci", a)
	var changed []string
	for _, r := range before.recs {
		if !strings.HasPrefix(r.Type, "kubernetes:") || r.kind() == "Secret" {
			continue
		}
		o, ok := after.byURN(r.URN)
		b1, _ := json.Marshal(r.In)
		b2, _ := json.Marshal(o.In)
		if !ok || string(b1) != string(b2) {
			changed = append(changed, r.kind()+"/"+r.metaName())
		}
	}
	if fmt.Sprint(changed) != "[Deployment/article]" {
		t.Errorf("changing article's image changed %v", changed)
	}
}

func TestJWTKeyRotationKeepsPreviousAndPublishesNextKey(t *testing.T) {
	keyNames := func(g *graph) string {
		var names []string
		for _, k := range g.byType("tls:index/privateKey:PrivateKey") {
			names = append(names, k.Name)
		}
		sort.Strings(names)
		return fmt.Sprint(names)
	}
	jwtData := func(g *graph, key string) string {
		raw, _ := base64.StdEncoding.DecodeString(get(g.one(t, "Secret", secrets.JWTKeys).In, "data", key).(string))
		return string(raw)
	}
	// kids of a PEM set, or of the public half of a private key.
	kids := func(pemText string) []string {
		var out []string
		for rest := []byte(pemText); ; {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				return out
			}
			der := b.Bytes
			if b.Type == "RSA PRIVATE KEY" {
				k, err := x509.ParsePKCS1PrivateKey(b.Bytes)
				if err != nil {
					t.Fatal(err)
				}
				der, _ = x509.MarshalPKIXPublicKey(&k.PublicKey)
			}
			id, err := secrets.KeyID(string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, id)
		}
	}

	a := stagingArgs()
	g1 := run(t, "staging", a)
	if got := keyNames(g1); got != "[jwt-key-g1 jwt-key-g2]" {
		t.Fatalf("generation 1 keys %v, want g1 (signs) and g2 (published ahead)", got)
	}
	a.JWTKeyGeneration = 2
	g2 := run(t, "staging", a)
	if got := keyNames(g2); got != "[jwt-key-g1 jwt-key-g2 jwt-key-g3]" {
		t.Fatalf("generation 2 keys %v, want g1 (previous), g2 (signs), g3 (next)", got)
	}
	set2 := kids(jwtData(g2, secrets.JWTPublicKey))
	if len(set2) != 3 {
		t.Errorf("generation 2 verification set has %d keys, want 3", len(set2))
	}
	if ids, _ := g2.outputs["jwtKeyIds"].([]string); fmt.Sprint(ids) != fmt.Sprint(set2) {
		t.Errorf("jwtKeyIds %v, want the verification set %v", ids, set2)
	}
	// Whatever rolls first after a bump, the key auth signs with is already
	// trusted by the verifiers of the generation before, and the key the
	// pods not yet rolled sign with is trusted by the new set.
	signer1 := kids(jwtData(g1, secrets.JWTPrivateKey))
	signer2 := kids(jwtData(g2, secrets.JWTPrivateKey))
	if !slices.Contains(kids(jwtData(g1, secrets.JWTPublicKey)), signer2[0]) {
		t.Errorf("generation 2's signing key %s is not in generation 1's verification set", signer2[0])
	}
	if !slices.Contains(set2, signer1[0]) || signer1[0] == signer2[0] {
		t.Errorf("generation 1's signing key %s is not kept in generation 2's set %v (or did not change)", signer1[0], set2)
	}
	a.JWTKeyGeneration = 3
	g3 := run(t, "staging", a)
	if got := keyNames(g3); got != "[jwt-key-g2 jwt-key-g3 jwt-key-g4]" {
		t.Errorf("generation 3 keys %v, want g2, g3 and g4", got)
	}
	if slices.Contains(kids(jwtData(g3, secrets.JWTPublicKey)), signer1[0]) {
		t.Errorf("generation 1's key is still trusted at generation 3")
	}
}

// podAnnotations are the secrets digests on every workload's pod template.
func podAnnotations(t *testing.T, g *graph) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, kind := range []string{"Deployment", "StatefulSet"} {
		for _, r := range g.all(kind) {
			v, _ := get(r.In, "spec", "template", "metadata", "annotations", app.SecretsAnnotation).(string)
			out[kind+"/"+r.metaName()] = v
		}
	}
	return out
}

func TestSecretChangeRollsExactlyItsReaders(t *testing.T) {
	g := run(t, "staging", stagingArgs())
	base := podAnnotations(t, g)
	// The digest ties a workload to the Secrets it reads: updated after them,
	// its new pods start with the new values.
	for w, secs := range map[string][]string{
		"Deployment/notification": {secrets.AppSecrets, secrets.DatabaseSecret("notification")},
		"Deployment/web":          {secrets.JWTKeys},
		"Deployment/auth":         {secrets.JWTKeys, secrets.Datastores, secrets.AppSecrets, secrets.DatabaseSecret("auth")},
		"StatefulSet/postgres":    {secrets.Datastores},
	} {
		kind, name, _ := strings.Cut(w, "/")
		deps := strings.Join(g.one(t, kind, name).Deps, " ")
		for _, sec := range secs {
			if !strings.Contains(deps+" ", "kubernetes:core/v1:Secret::secret-"+sec+" ") {
				t.Errorf("%s does not wait for the Secret %s it reads (depends on %s)", w, sec, deps)
			}
		}
	}
	for w, v := range base {
		reads := !strings.HasSuffix(w, "/jaeger") && !strings.HasSuffix(w, "/nats")
		if reads != (len(v) == 64) {
			t.Errorf("%s: secrets digest %q (it reads Secrets: %v)", w, v, reads)
		}
	}
	rolled := func(name string, change func(a *PlatformArgs)) {
		t.Helper()
		a := stagingArgs()
		change(a)
		after := podAnnotations(t, run(t, "staging", a))
		var got []string
		for w, v := range base {
			if after[w] != v {
				got = append(got, w)
			}
		}
		sort.Strings(got)
		if fmt.Sprint(got) != name {
			t.Errorf("rolled %v, want %s", got, name)
		}
	}
	rolled("[]", func(*PlatformArgs) {})
	rolled("[Deployment/notification]", func(a *PlatformArgs) {
		a.ResendAPIKey = pulumi.ToSecret(pulumi.String("re_another-key")).(pulumi.StringOutput)
	})
	rolled("[Deployment/auth]", func(a *PlatformArgs) {
		a.GoogleClientSecret = pulumi.ToSecret(pulumi.String("another-google-secret")).(pulumi.StringOutput)
	})
	rolled("[Deployment/article Deployment/auth Deployment/media Deployment/web]", func(a *PlatformArgs) {
		a.JWTKeyGeneration = 2
	})
	// A regenerated password (pulumi up --replace of its RandomPassword).
	for pw, want := range map[string]string{
		"db-article": "[Deployment/article StatefulSet/postgres]",
		"redis":      "[Deployment/auth StatefulSet/redis]",
		// the superuser's: Postgres and the backup Job read it; no service does
		"postgres-superuser": "[StatefulSet/postgres]",
	} {
		mockPasswordRound.Store(pw, 1)
		rolled(want, func(*PlatformArgs) {})
		mockPasswordRound.Delete(pw)
	}
}

func TestEveryServiceDrainsBeforeItStops(t *testing.T) {
	g := run(t, "staging", stagingArgs())
	n := 0
	for _, d := range g.all("Deployment") {
		if get(d.In, "metadata", "labels", "app.kubernetes.io/component") != "service" {
			continue // Jaeger: no client keeps connections to it through Traefik
		}
		n++
		name := d.metaName()
		spec, _ := get(d.In, "spec", "template", "spec").(map[string]any)
		c := list(spec["containers"])[0]
		if s := get(c, "lifecycle", "preStop", "sleep", "seconds"); s != float64(app.PreStopSeconds) {
			t.Errorf("%s: preStop sleep %v, want %d s", name, get(c, "lifecycle"), app.PreStopSeconds)
		}
		if get(c, "readinessProbe", "httpGet", "path") != "/readyz" {
			t.Errorf("%s: readiness probe %v", name, c["readinessProbe"])
		}
		// preStop, then the kit's drain (SHUTDOWN_TIMEOUT 20 s) must fit.
		if g, _ := spec["terminationGracePeriodSeconds"].(float64); int(g) < app.PreStopSeconds+20 {
			t.Errorf("%s: termination grace %v s is shorter than preStop + drain", name, g)
		}
		if u := get(d.In, "spec", "strategy", "rollingUpdate", "maxUnavailable"); u != float64(0) {
			t.Errorf("%s: maxUnavailable %v: a roll would stop a pod before its replacement is Ready", name, u)
		}
	}
	if n != len(stacks.Services) {
		t.Errorf("checked %d service Deployments, want %d", n, len(stacks.Services))
	}
}

func TestInvalidArgsFailWithEveryProblem(t *testing.T) {
	a := stagingArgs()
	a.Domain = "Example.COM"
	a.Issuer = "production"
	a.WebScaling = Bounds{4, 2}
	a.Images = map[string]string{"auth": "auth:latest", "blog": "x@sha256:" + strings.Repeat("0", 64)}
	_, err := tryRun("staging", a)
	if err == nil {
		t.Fatal("invalid args accepted")
	}
	for _, want := range []string{`domain "Example.COM"`, `acme issuer "production": use staging or prod`, "web autoscaling 4..2", "images.blog: no such service", `image for auth "auth:latest" must be pinned by digest`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	b := stagingArgs()
	b.Images = map[string]string{"auth": b.Images["auth"]}
	if _, err := tryRun("staging", b); err == nil || !strings.Contains(err.Error(), "have no prebuilt image and the registry is \"none\"") {
		t.Errorf("missing images without a registry: %v", err)
	}
}

// The platform takes every domain the stack config takes (one rule, in
// stacks): an IDN top-level domain in punycode included.
func TestDomainRuleIsTheStackConfigs(t *testing.T) {
	a := stagingArgs()
	a.Domain = "example.xn--p1ai"
	if _, err := tryRun("staging", a); err != nil {
		t.Errorf("a domain the stack config accepts is refused: %v", err)
	}
	a.Domain = "example.xn--p1ai."
	if _, err := tryRun("staging", a); err == nil || !strings.Contains(err.Error(), `domain "example.xn--p1ai."`) {
		t.Errorf("a domain with a trailing dot: %v", err)
	}
}

func TestProtectOnlyStatefulResourcesInProd(t *testing.T) {
	g := run(t, "prod", prodArgs())
	protected := []string{}
	for _, r := range g.recs {
		if r.Protect && r.Type == "random:index/randomPassword:RandomPassword" {
			protected = append(protected, "RandomPassword/"+r.Name)
		} else if r.Protect {
			protected = append(protected, r.kind()+"/"+r.metaName())
		}
	}
	sort.Strings(protected)
	// the generated passwords the datastores were initialised with, too
	want := "[PersistentVolumeClaim/backups PersistentVolumeClaim/media-data RandomPassword/db-article RandomPassword/db-auth RandomPassword/db-media RandomPassword/db-notification RandomPassword/postgres-superuser RandomPassword/redis StatefulSet/nats StatefulSet/postgres StatefulSet/redis]"
	if fmt.Sprint(protected) != want {
		t.Errorf("protected %v, want %s", protected, want)
	}
	for _, r := range run(t, "staging", stagingArgs()).recs {
		if r.Protect {
			t.Errorf("staging protects %s %s", r.kind(), r.metaName())
		}
	}
}

// testCABundle is one fresh private CA certificate in PEM.
func testCABundle(t *testing.T) string {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Example Private Root CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// trust is what a pod template says about the trusted CA bundle.
type trust struct {
	env, mount, configMap, items, annotation string
	readOnly                                 bool
}

func trustOf(g *graph, svc string) trust {
	var tr trust
	for _, d := range g.all("Deployment") {
		if d.metaName() != svc {
			continue
		}
		tmpl, _ := get(d.In, "spec", "template").(map[string]any)
		tr.annotation, _ = get(tmpl, "metadata", "annotations", app.CABundleAnnotation).(string)
		ps, _ := tmpl["spec"].(map[string]any)
		c := list(ps["containers"])[0]
		for _, e := range list(c["env"]) {
			if e["name"] == "SSL_CERT_DIR" {
				tr.env, _ = e["value"].(string)
			}
		}
		for _, m := range list(c["volumeMounts"]) {
			if m["name"] == "trusted-ca" {
				tr.mount, _ = m["mountPath"].(string)
				tr.readOnly = m["readOnly"] == true
			}
		}
		for _, v := range list(ps["volumes"]) {
			if v["name"] == "trusted-ca" {
				tr.configMap, _ = get(v, "configMap", "name").(string)
				for _, it := range list(get(v, "configMap", "items")) {
					tr.items += fmt.Sprintf("%v=%v", it["key"], it["path"])
				}
			}
		}
	}
	return tr
}

// With app.trustedCaBundle, auth and notification (the services that call
// the internet) mount it read-only at /etc/pressroom/ca with SSL_CERT_DIR
// there; the others see nothing of it. Without it nothing changes.
func TestTrustedCABundleOnlyWhereServicesCallOut(t *testing.T) {
	a := stagingArgs()
	a.App.TrustedCABundle = testCABundle(t)
	g := run(t, "staging", a)
	cm := g.one(t, "ConfigMap", TrustedCAConfigMap)
	if got := get(cm.In, "data", TrustedCAKey); got != a.App.TrustedCABundle || get(cm.In, "metadata", "namespace") != "pressroom" {
		t.Errorf("trusted-ca ConfigMap data %v in %v", cm.In["data"], get(cm.In, "metadata", "namespace"))
	}
	sum := sha256.Sum256([]byte(a.App.TrustedCABundle))
	want := trust{env: "/etc/pressroom/ca", mount: "/etc/pressroom/ca", configMap: "trusted-ca", items: "ca.crt=ca.crt",
		annotation: hex.EncodeToString(sum[:]), readOnly: true}
	for _, svc := range stacks.Services {
		got := trustOf(g, svc)
		switch svc {
		case "auth", "notification":
			if got != want {
				t.Errorf("%s: %+v, want %+v", svc, got, want)
			}
		default:
			if got != (trust{}) {
				t.Errorf("%s does not call the internet but gets the bundle: %+v", svc, got)
			}
		}
	}
	plain := run(t, "staging", stagingArgs())
	for _, c := range plain.all("ConfigMap") {
		if c.metaName() == TrustedCAConfigMap {
			t.Errorf("no bundle, but a %s ConfigMap", TrustedCAConfigMap)
		}
	}
	for _, svc := range stacks.Services {
		if got := trustOf(plain, svc); got != (trust{}) {
			t.Errorf("no bundle, but %s has %+v", svc, got)
		}
	}
	a.App.TrustedCABundle = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"
	if _, err := tryRun("staging", a); err == nil || !strings.Contains(err.Error(), "trusted CA bundle: block 1 is a RSA PRIVATE KEY") {
		t.Errorf("a private key as the bundle: %v", err)
	}
}

// Postgres runs the platform's start script from the postgres-init
// ConfigMap (read-only), not the image's entrypoint, as uid 70 with a
// read-only root filesystem: PGDATA, the socket directory and /tmp are
// volumes. A changed script rolls the pod (checksum annotation).
func TestPostgresRunsThePlatformsStartScript(t *testing.T) {
	g := run(t, "staging", stagingArgs())
	cm := g.one(t, "ConfigMap", "postgres-init")
	data, _ := cm.In["data"].(map[string]any)
	if len(data) != 2 || data["start.sh"] != datastores.StartScript() || data["setup.sh"] != datastores.SetupScript() {
		t.Errorf("postgres-init holds %v, want start.sh and setup.sh", data)
	}
	if !strings.Contains(datastores.StartScript(), `exec postgres -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql "$@"`) {
		t.Errorf("start.sh does not end by serving on all addresses")
	}
	sts := g.one(t, "StatefulSet", "postgres")
	tmpl, _ := get(sts.In, "spec", "template").(map[string]any)
	if sum, _ := get(tmpl, "metadata", "annotations", datastores.ScriptsChecksumAnnotation).(string); len(sum) != 64 {
		t.Errorf("no scripts checksum on the pod template: %v", get(tmpl, "metadata"))
	}
	ps, _ := tmpl["spec"].(map[string]any)
	c := list(ps["containers"])[0]
	if cmd, _ := json.Marshal(c["command"]); string(cmd) != `["sh","/scripts/start.sh"]` || c["args"] != nil {
		t.Errorf("postgres command %s args %v, want sh /scripts/start.sh", cmd, c["args"])
	}
	if get(ps, "securityContext", "runAsUser") != float64(70) || get(c, "securityContext", "readOnlyRootFilesystem") != true {
		t.Errorf("postgres security: pod %v container %v", ps["securityContext"], c["securityContext"])
	}
	mounts := map[string]string{}
	for _, m := range list(c["volumeMounts"]) {
		mounts[m["mountPath"].(string)] = fmt.Sprintf("%v ro=%v", m["name"], m["readOnly"] == true)
	}
	for path, want := range map[string]string{"/scripts": "scripts ro=true", "/var/lib/postgresql/data": "data ro=false",
		"/var/run/postgresql": "run ro=false", "/tmp": "tmp ro=false"} {
		if mounts[path] != want {
			t.Errorf("mount %s: %q, want %q (all: %v)", path, mounts[path], want, mounts)
		}
	}
	for _, v := range list(ps["volumes"]) {
		if v["name"] == "scripts" && (get(v, "configMap", "name") != "postgres-init" || get(v, "configMap", "defaultMode") != float64(0o555)) {
			t.Errorf("scripts volume %v", v)
		}
		if v["name"] == "init" {
			t.Errorf("the docker-entrypoint-initdb.d volume is still there: %v", v)
		}
	}
}

// A custom ACME server (the local stack's Pebble, a company's ACME CA)
// replaces the directory of the selected issuer only, with its CA bundle;
// the other issuer stays Let's Encrypt's.
func TestCustomACMEServerReplacesTheSelectedIssuer(t *testing.T) {
	const bundle = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	a := stagingArgs()
	a.Issuer = "prod"
	a.ACMEServer = "https://acme.example.org:14000/dir"
	a.ACMECABundle = bundle
	g := run(t, "staging", a)
	servers := map[string]any{}
	for _, ci := range g.all("ClusterIssuer") {
		servers[ci.metaName()] = get(ci.In, "spec", "acme", "server")
		ca := get(ci.In, "spec", "acme", "caBundle")
		switch ci.metaName() {
		case "letsencrypt-prod":
			if ca != base64.StdEncoding.EncodeToString([]byte(bundle)) {
				t.Errorf("prod issuer caBundle %v, want the bundle base64-encoded", ca)
			}
		default:
			if ca != nil {
				t.Errorf("%s has caBundle %v, want none", ci.metaName(), ca)
			}
		}
	}
	want := map[string]any{
		"letsencrypt-prod":    "https://acme.example.org:14000/dir",
		"letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
	}
	if !reflect.DeepEqual(servers, want) {
		t.Errorf("servers %v, want %v", servers, want)
	}
	if cert := g.one(t, "Certificate", "pressroom-tls"); get(cert.In, "spec", "issuerRef", "name") != "letsencrypt-prod" {
		t.Errorf("certificate issuer %v", get(cert.In, "spec", "issuerRef", "name"))
	}
}

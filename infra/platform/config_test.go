package platform

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pressroom.dev/stacks"
)

// The example stacks, loaded and validated by stacks/ and mapped by
// ArgsFromConfig, build their complete platform under mocks.
func TestExampleStacksBuildTheWholePlatform(t *testing.T) {
	for _, stack := range []string{"staging", "prod"} {
		t.Run(stack, func(t *testing.T) {
			values, err := stacks.ReadStackFile(filepath.Join("..", "..", "Pulumi."+stack+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			// what `pulumi config set --secret` adds to the stack file
			values["pressroom:googleClientSecret"] = "placeholder-client-secret"
			values["pressroom:resendApiKey"] = "re_placeholder"
			cfg, err := stacks.Load(stack, values)
			if err != nil {
				t.Fatalf("example stack does not validate: %v", err)
			}
			g := run(t, stack, ArgsFromConfig(cfg))
			got := kindCounts(g)
			for k, n := range seedCounts {
				if got[k] < n {
					t.Errorf("%s: %d, fewer than the hand-run system's %d", k, got[k], n)
				}
			}
			if want := len(cfg.NeedsBuild()); got["docker:index/image:Image"] != want {
				t.Errorf("%d images built, want %d (services without a prebuilt image)", got["docker:index/image:Image"], want)
			}
			cert := g.one(t, "Certificate", "pressroom-tls")
			if want := map[string]string{"staging": "letsencrypt-staging", "prod": "letsencrypt-prod"}[cfg.ACME.Issuer]; get(cert.In, "spec", "issuerRef", "name") != want {
				t.Errorf("issuer %v, config says %s", get(cert.In, "spec", "issuerRef", "name"), cfg.ACME.Issuer)
			}
			https := g.one(t, "Ingress", "pressroom")
			if rules := list(get(https.In, "spec", "rules")); len(rules) != 2 || rules[0]["host"] != cfg.Domain || rules[1]["host"] != "www."+cfg.Domain {
				t.Errorf("ingress hosts %v, want %s and www", rules, cfg.Domain)
			}
			for _, h := range g.all("HorizontalPodAutoscaler") {
				b := map[string]stacks.Bounds{"article": cfg.Scaling.Article, "web": cfg.Scaling.Web}[h.metaName()]
				if get(h.In, "spec", "minReplicas") != float64(b.Min) || get(h.In, "spec", "maxReplicas") != float64(b.Max) {
					t.Errorf("HPA %s %v..%v, config %d..%d", h.metaName(), get(h.In, "spec", "minReplicas"), get(h.In, "spec", "maxReplicas"), b.Min, b.Max)
				}
			}
			protected := 0
			for _, r := range g.recs {
				if r.Protect {
					protected++
				}
			}
			if (protected > 0) != cfg.Protect {
				t.Errorf("%d protected resources with protect=%v", protected, cfg.Protect)
			}
		})
	}
}

// What an operator behind an air gap sets reaches the objects: every
// datastore image (and the backup job's, Postgres'), cert-manager's chart
// from a local directory with its images by digest, and a CA bundle.
func TestAirGapSettingsReachThePlatform(t *testing.T) {
	values, err := stacks.ReadStackFile(filepath.Join("..", "..", "Pulumi.staging.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	values["pressroom:googleClientSecret"] = "placeholder-client-secret"
	values["pressroom:resendApiKey"] = "re_placeholder"
	digest := func(c string) string { return "@sha256:" + strings.Repeat(c, 64) }
	images := map[string]string{
		"postgres": "pressroom.local/postgres:15-debian" + digest("1"), "redis": "pressroom.local/redis:7.0" + digest("2"),
		"nats": "pressroom.local/nats:2.10" + digest("3"), "jaeger": "pressroom.local/jaeger:1.75.0" + digest("4"),
	}
	chart := filepath.Join(t.TempDir(), "cert-manager")
	if err := os.Mkdir(chart, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(chart, "Chart.yaml"), []byte("apiVersion: v1\nname: cert-manager\nversion: v1.11.5\nappVersion: v1.11.5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cm := map[string]any{"install": true, "version": "v1.11.5", "chart": chart, "images": map[string]string{
		"controller": "pressroom.local/cert-manager-controller:v1.11.5" + digest("5"), "acmesolver": "pressroom.local/cert-manager-acmesolver" + digest("6"),
	}}
	appSettings := map[string]any{}
	if err := json.Unmarshal([]byte(values["pressroom:app"]), &appSettings); err != nil {
		t.Fatal(err)
	}
	bundle := testCABundle(t)
	appSettings["trustedCaBundle"] = bundle
	for key, v := range map[string]any{"pressroom:datastoreImages": images, "pressroom:certManager": cm, "pressroom:app": appSettings} {
		b, _ := json.Marshal(v)
		values[key] = string(b)
	}
	cfg, err := stacks.Load("staging", values)
	if err != nil {
		t.Fatal(err)
	}
	g := run(t, "staging", ArgsFromConfig(cfg))

	pods := podSpecs(g)
	for owner, want := range map[string]string{
		"StatefulSet/postgres": images["postgres"], "StatefulSet/redis": images["redis"], "StatefulSet/nats": images["nats"],
		"Deployment/jaeger": images["jaeger"], "CronJob/backup": images["postgres"],
	} {
		cs := append(list(pods[owner]["initContainers"]), list(pods[owner]["containers"])...)
		if len(cs) == 0 {
			t.Errorf("%s: no containers", owner)
		}
		for _, c := range cs {
			if c["image"] != want {
				t.Errorf("%s container %v runs %v, want %s", owner, c["name"], c["image"], want)
			}
		}
	}
	rel := g.byType("kubernetes:helm.sh/v3:Release")
	if len(rel) != 1 {
		t.Fatalf("%d cert-manager releases", len(rel))
	}
	if in := rel[0].In; in["chart"] != chart || in["repositoryOpts"] != nil || in["version"] != nil ||
		get(in, "values", "installCRDs") != true || get(in, "values", "crds") != nil ||
		get(in, "values", "image", "repository") != "pressroom.local/cert-manager-controller" ||
		get(in, "values", "acmesolver", "image", "digest") != "sha256:"+strings.Repeat("6", 64) {
		t.Errorf("cert-manager release from the local v1.11.5 chart: %v", in)
	}
	if get(g.one(t, "ConfigMap", TrustedCAConfigMap).In, "data", TrustedCAKey) != bundle {
		t.Errorf("the trusted CA bundle did not reach its ConfigMap")
	}
}

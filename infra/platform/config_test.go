package platform

import (
	"path/filepath"
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
					t.Errorf("%s: %d, fewer than the seed's %d", k, got[k], n)
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

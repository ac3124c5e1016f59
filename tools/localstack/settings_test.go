package localstack

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"pressroom.dev/stacks"
	"pressroom.dev/tools/nodeimages"
)

// The local stack's settings are what the program reads: stacks.Load (the
// program's own loader and validation) accepts them, and they land where
// the node needs them.
func TestSettingsPassTheStackValidation(t *testing.T) {
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: n, cluster: {server: "https://10.254.0.2:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: n, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadOrMakeCA(dir); err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	ca := string(caPEM)
	cf := ClusterFile{Kubeconfig: kc, OIDCIssuer: "https://" + OIDCHost, OIDCClientID: ClientID, OIDCClientSecret: "s", InternetCA: ca, ACMEServer: ACMEDirectory}
	img := func(name string, n int) nodeimages.Image {
		return nodeimages.Image{Name: nodeimages.Registry + "/" + name, Digest: fmt.Sprintf("sha256:%064d", n)}
	}
	imgs := &Images{Services: map[string]nodeimages.Image{}, Datastores: map[string]nodeimages.Image{}, CertManager: map[string]nodeimages.Image{}}
	for i, s := range sortedKeys(Services) {
		imgs.Services[s] = img(s, i)
	}
	for i, s := range []string{"postgres", "redis", "nats", "jaeger"} {
		imgs.Datastores[s] = img(s, 10+i)
	}
	for i, s := range stacks.CertManagerImageKeys {
		imgs.CertManager[s] = img("cert-manager-"+s, 20+i)
	}
	plain, secret, err := Settings(cf, imgs, "/nowhere/cert-manager-chart")
	if err != nil {
		t.Fatal(err)
	}
	values := nest(t, plain)
	for k, v := range secret {
		values[k] = v
	}
	cfg, err := stacks.Load(StackName, values)
	if err != nil {
		t.Fatalf("the program refuses the local stack's settings: %v", err)
	}
	if cfg.Cluster.Mode != stacks.ModeExisting || cfg.Domain != Domain || cfg.Images["web"] != imgs.Services["web"].Ref() ||
		cfg.CertManager.Chart != "/nowhere/cert-manager-chart" || cfg.App.OIDCIssuerURL != "https://"+OIDCHost ||
		cfg.ACME.Server != ACMEDirectory || cfg.ACME.CABundle != ca || cfg.ACME.Issuer != "prod" {
		t.Fatalf("settings did not land: %+v", cfg)
	}
}

// nest turns `config set --path` keys (pressroom:a.b, pressroom:a.c[0])
// into the raw values the engine hands the program: JSON per top-level key.
func nest(t *testing.T, path map[string]string) map[string]string {
	t.Helper()
	tree := map[string]any{}
	for k, v := range path {
		name := strings.TrimPrefix(k, stacks.Namespace+":")
		parts := strings.Split(name, ".")
		node := tree
		for i, p := range parts {
			last := i == len(parts)-1
			idx := -1
			if j := strings.Index(p, "["); j >= 0 {
				idx, _ = strconv.Atoi(strings.TrimSuffix(p[j+1:], "]"))
				p = p[:j]
			}
			switch {
			case idx >= 0 && last:
				list, _ := node[p].([]any)
				for len(list) <= idx {
					list = append(list, nil)
				}
				list[idx] = v
				node[p] = list
			case last:
				if b, err := strconv.ParseBool(v); err == nil && (v == "true" || v == "false") {
					node[p] = b
				} else if n, err := strconv.Atoi(v); err == nil && name != "domain" {
					node[p] = n
				} else {
					node[p] = v
				}
			default:
				child, ok := node[p].(map[string]any)
				if !ok {
					child = map[string]any{}
					node[p] = child
				}
				node = child
			}
		}
	}
	out := map[string]string{}
	for k, v := range tree {
		if s, ok := v.(string); ok {
			out[stacks.Namespace+":"+k] = s
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out[stacks.Namespace+":"+k] = string(b)
	}
	return out
}

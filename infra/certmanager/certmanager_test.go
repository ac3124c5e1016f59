package certmanager

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"text/template"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"gopkg.in/yaml.v3"
)

func get(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	return v
}

var digest = "sha256:" + strings.Repeat("e", 64)

// Every component overridden, as an air-gapped stack does with images built
// here (one with a tag, which the chart drops: it pulls repository@digest).
var localImages = map[string]string{
	"controller":      "pressroom.local/cert-manager-controller:v1.11.5@" + digest,
	"webhook":         "pressroom.local/cert-manager-webhook@" + digest,
	"cainjector":      "pressroom.local/cert-manager-cainjector@" + digest,
	"acmesolver":      "pressroom.local/cert-manager-acmesolver@" + digest,
	"startupapicheck": "pressroom.local/cert-manager-ctl@" + digest,
}

// The CRD values follow the chart version: installCRDs before v1.15,
// crds.enabled and crds.keep from it.
func TestValuesFollowTheChartVersion(t *testing.T) {
	for version, crdsEnabled := range map[string]bool{"v1.11.5": false, "v1.14.7": false, "v1.15.0": true, "v1.16.2": true, "v1.21.2": true, "v2.0.0": true} {
		v, err := Values(version, nil)
		if err != nil {
			t.Fatal(err)
		}
		if crdsEnabled {
			if get(v, "crds", "enabled") != true || get(v, "crds", "keep") != true || v["installCRDs"] != nil {
				t.Errorf("%s: %v; want crds.enabled and crds.keep, no installCRDs", version, v)
			}
		} else if v["installCRDs"] != true || v["crds"] != nil {
			t.Errorf("%s: %v; want installCRDs and no crds", version, v)
		}
		if get(v, "startupapicheck", "enabled") != true || get(v, "prometheus", "enabled") != false || get(v, "webhook", "resources", "requests", "cpu") != "20m" {
			t.Errorf("%s: the common values changed: %v", version, v)
		}
		if v["image"] != nil || get(v, "webhook", "image") != nil {
			t.Errorf("%s: image values without overrides: %v", version, v)
		}
	}
	if _, err := Values("1.16", nil); err == nil {
		t.Error("an unpinned version was accepted")
	}
}

func TestValuesOverrideEveryImageByDigest(t *testing.T) {
	for _, version := range []string{"v1.11.5", "v1.16.2"} {
		v, err := Values(version, localImages)
		if err != nil {
			t.Fatal(err)
		}
		for component, path := range map[string][]string{
			"controller": {"image"}, "webhook": {"webhook", "image"}, "cainjector": {"cainjector", "image"},
			"acmesolver": {"acmesolver", "image"}, "startupapicheck": {"startupapicheck", "image"},
		} {
			img, _ := get(v, path...).(map[string]any)
			repo := "pressroom.local/cert-manager-" + map[string]string{"startupapicheck": "ctl"}[component]
			if repo == "pressroom.local/cert-manager-" {
				repo += component
			}
			if len(img) != 2 || img["repository"] != repo || img["digest"] != digest {
				t.Errorf("%s %s: %s = %v, want repository %s and digest %s", version, component, strings.Join(path, "."), img, repo, digest)
			}
		}
		// the overrides sit beside the component's other values
		if get(v, "webhook", "resources", "requests", "memory") != "64Mi" || get(v, "startupapicheck", "enabled") != true {
			t.Errorf("%s: image overrides replaced other values: %v", version, v)
		}
	}
	for images, want := range map[string]map[string]string{
		"no such component": {"ctl": "x@" + digest},
		"must be pinned":    {"webhook": "quay.io/jetstack/cert-manager-webhook:v1.16.2"},
		"tag latest":        {"cainjector": "x:latest@" + digest},
	} {
		if _, err := Values("v1.16.2", want); err == nil || !strings.Contains(err.Error(), images) {
			t.Errorf("%v: %v, want an error with %q", want, err, images)
		}
	}
}

// chart1115 is cert-manager v1.11.5's chart source in the Go module cache
// (tools/toolchain/node-toolchain.sh builds the local stand-in chart from it).
func chart1115(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	dir := filepath.Join(strings.TrimSpace(string(out)), "github.com", "cert-manager", "cert-manager@v1.11.5", "deploy", "charts", "cert-manager")
	if _, statErr := os.Stat(filepath.Join(dir, "values.yaml")); err != nil || statErr != nil {
		t.Skipf("cert-manager v1.11.5 is not in the Go module cache (%v %v): tools/toolchain/node-toolchain.sh fetches it", err, statErr)
	}
	return dir
}

// The v1.11.5 chart's own values.yaml has each image map we set, and its
// templates' own image expressions, executed with our values, render
// repository@digest: digest is supported there and wins over the tag.
func TestValuesRenderInTheV1115Chart(t *testing.T) {
	dir := chart1115(t)
	raw, err := os.ReadFile(filepath.Join(dir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var defaults map[string]any
	if err := yaml.Unmarshal(raw, &defaults); err != nil {
		t.Fatal(err)
	}
	if defaults["installCRDs"] != false || defaults["crds"] != nil {
		t.Errorf("v1.11.5 values.yaml: installCRDs %v, crds %v; Values relies on installCRDs there", defaults["installCRDs"], defaults["crds"])
	}
	values, err := Values("v1.11.5", localImages)
	if err != nil {
		t.Fatal(err)
	}
	expr := regexp.MustCompile(`(?:image: "|--acme-http01-solver-image=)(\{\{.*\}\})"?`)
	for file, component := range map[string]string{
		"deployment.yaml": "controller", "webhook-deployment.yaml": "webhook", "cainjector-deployment.yaml": "cainjector",
		"startupapicheck-job.yaml": "startupapicheck",
	} {
		path := []string{component, "image"}
		if component == "controller" {
			path = []string{"image"}
		}
		if repo, _ := get(defaults, append(path, "repository")...).(string); !strings.HasPrefix(repo, "quay.io/jetstack/cert-manager-") {
			t.Errorf("v1.11.5 values.yaml has no %s.repository (got %v)", strings.Join(path, "."), repo)
		}
		tpl, err := os.ReadFile(filepath.Join(dir, "templates", file))
		if err != nil {
			t.Fatal(err)
		}
		found := expr.FindAllStringSubmatch(string(tpl), -1)
		if component == "controller" && len(found) != 2 {
			t.Fatalf("%s: %d image expressions, want the controller's and acmesolver's", file, len(found))
		}
		for i, m := range found {
			c, p := component, path
			if i == 1 {
				c, p = "acmesolver", []string{"acmesolver", "image"}
			}
			tmpl, err := template.New(file).Funcs(template.FuncMap{"default": func(d, v any) any {
				if v == nil || v == "" {
					return d
				}
				return v
			}}).Parse("{{ with .image }}" + m[1] + "{{ end }}")
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			var b strings.Builder
			data := map[string]any{"image": get(values, p...), "Chart": map[string]any{"AppVersion": "v1.11.5"}}
			if err := tmpl.Execute(&b, data); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			repo, _ := get(values, append(p, "repository")...).(string)
			if want := repo + "@" + digest; b.String() != want {
				t.Errorf("%s renders the %s image as %q, want %q", file, c, b.String(), want)
			}
		}
	}
}

func TestLocalChartMustMatchTheVersion(t *testing.T) {
	dir := t.TempDir()
	if err := checkLocalChart(dir, "v1.11.5"); err == nil || !strings.Contains(err.Error(), "is not a chart directory (no Chart.yaml") {
		t.Errorf("no Chart.yaml: %v", err)
	}
	write := func(doc string) {
		if err := os.WriteFile(filepath.Join(dir, "Chart.yaml"), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("apiVersion: v1\nname: cert-manager\nversion: v1.11.5\nappVersion: v1.11.5\n")
	if err := checkLocalChart(dir, "v1.11.5"); err != nil {
		t.Error(err)
	}
	if err := checkLocalChart(dir, "v1.16.2"); err == nil || !strings.Contains(err.Error(), "is version v1.11.5 but certManager.version is v1.16.2: set certManager.version to v1.11.5") {
		t.Errorf("version mismatch: %v", err)
	}
	write("apiVersion: v2\nname: traefik\nversion: 1.11.5\n")
	if err := checkLocalChart(dir, "v1.11.5"); err == nil || !strings.Contains(err.Error(), `is "traefik", not cert-manager`) {
		t.Errorf("another chart: %v", err)
	}
}

type recorder struct {
	mu   sync.Mutex
	recs map[string]resource.PropertyMap // type → inputs (one of each here)
}

func (r *recorder) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs[args.TypeToken] = args.Inputs
	return args.Name + "-id", args.Inputs, nil
}

func (r *recorder) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	return args.Args, nil
}

func release(t *testing.T, args *CertManagerArgs) (resource.PropertyMap, error) {
	t.Helper()
	r := &recorder{recs: map[string]resource.PropertyMap{}}
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		_, err := NewCertManager(ctx, "cert-manager", args)
		return err
	}, pulumi.WithMocks("pressroom", "test", r))
	return r.recs["kubernetes:helm.sh/v3:Release"], err
}

// A local chart directory is the Release's chart, with no repository; the
// default is the jetstack repository at the pinned version.
func TestReleaseChartFromRepositoryOrDirectory(t *testing.T) {
	rel, err := release(t, &CertManagerArgs{Install: true, Email: "ops@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if rel["chart"].StringValue() != "cert-manager" || rel["version"].StringValue() != DefaultVersion ||
		rel["repositoryOpts"].ObjectValue()["repo"].StringValue() != "https://charts.jetstack.io" {
		t.Errorf("default release: chart %v version %v repositoryOpts %v", rel["chart"], rel["version"], rel["repositoryOpts"])
	}
	if !rel["values"].ObjectValue()["crds"].ObjectValue()["enabled"].BoolValue() {
		t.Errorf("v1.16.2 values: %v", rel["values"])
	}

	dir := filepath.Join(t.TempDir(), "cert-manager")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Chart.yaml"), []byte("apiVersion: v1\nname: cert-manager\nversion: v1.11.5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rel, err = release(t, &CertManagerArgs{Install: true, Email: "ops@example.com", Version: "v1.11.5", Chart: dir, Images: localImages})
	if err != nil {
		t.Fatal(err)
	}
	values := rel["values"].ObjectValue()
	if rel["chart"].StringValue() != dir || rel.HasValue("repositoryOpts") || rel.HasValue("version") {
		t.Errorf("local chart: chart %v repositoryOpts %v version %v; want the directory alone", rel["chart"], rel["repositoryOpts"], rel["version"])
	}
	if !values["installCRDs"].BoolValue() || values.HasValue("crds") ||
		values["webhook"].ObjectValue()["image"].ObjectValue()["repository"].StringValue() != "pressroom.local/cert-manager-webhook" {
		t.Errorf("v1.11.5 values with images: %v", values)
	}
	if _, err := release(t, &CertManagerArgs{Install: true, Email: "ops@example.com", Version: "v1.16.2", Chart: dir}); err == nil || !strings.Contains(err.Error(), "set certManager.version to v1.11.5") {
		t.Errorf("chart v1.11.5 with version v1.16.2: %v", err)
	}
	// Not installed: neither the chart nor the images are looked at.
	rel, err = release(t, &CertManagerArgs{Install: false, Email: "ops@example.com", Chart: filepath.Join(dir, "missing"), Images: map[string]string{"x": "y"}})
	if err != nil || rel != nil {
		t.Errorf("install off: release %v, err %v", rel, err)
	}
}

// cert-manager v1.11's CRD has no ingressClassName (the API server rejects
// it: "field not declared in schema", as the live node showed); from v1.12
// it is the field to use.
func TestSolverIngressFollowsTheVersion(t *testing.T) {
	for version, want := range map[string]string{"v1.11.5": "class", "v1.12.0": "ingressClassName", "v1.16.2": "ingressClassName", "v1.21.2": "ingressClassName", "v2.0.0": "ingressClassName"} {
		got := SolverIngress(version, "traefik")
		if len(got) != 1 || got[want] == nil {
			t.Errorf("SolverIngress(%s) = %v, want only %s", version, got, want)
		}
	}
}

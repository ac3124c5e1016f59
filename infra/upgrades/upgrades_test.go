package upgrades

import (
	"strings"
	"sync"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

type registered struct {
	typ, name, parent string
	deps              []string
	in                resource.PropertyMap
}

// recorder is a mock resource monitor that keeps every registration.
type recorder struct {
	mu   sync.Mutex
	recs []registered
}

func (r *recorder) NewResource(a pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	deps := make([]string, len(a.RegisterRPC.GetDependencies()))
	copy(deps, a.RegisterRPC.GetDependencies())
	r.recs = append(r.recs, registered{typ: a.TypeToken, name: a.Name, parent: a.RegisterRPC.GetParent(), deps: deps, in: a.Inputs})
	return a.Name + "-id", a.Inputs, nil
}

func (r *recorder) Call(pulumi.MockCallArgs) (resource.PropertyMap, error) {
	return resource.PropertyMap{}, nil
}

func (r *recorder) byType(typ string) []registered {
	var out []registered
	for _, x := range r.recs {
		if x.typ == typ {
			out = append(out, x)
		}
	}
	return out
}

func run(t *testing.T, args *K3sUpgradesArgs) (*recorder, *K3sUpgrades) {
	t.Helper()
	rec := &recorder{}
	var c *K3sUpgrades
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		var err error
		c, err = NewK3sUpgrades(ctx, "k3s-upgrades", args)
		return err
	}, pulumi.WithMocks("pressroom", "staging", rec))
	if err != nil {
		t.Fatal(err)
	}
	return rec, c
}

func TestPlanKeepsServersAtTheVersionOneAtATime(t *testing.T) {
	rec, _ := run(t, &K3sUpgradesArgs{K3sVersion: "v1.32.1+k3s1", Install: true, ControllerVersion: "v0.16.1"})

	groups := rec.byType("kubernetes:yaml/v2:ConfigGroup")
	if len(groups) != 1 {
		t.Fatalf("want the controller's release applied once, got %d ConfigGroups", len(groups))
	}
	var files []string
	for _, f := range groups[0].in["files"].ArrayValue() {
		files = append(files, f.StringValue())
	}
	want := "https://github.com/rancher/system-upgrade-controller/releases/download/v0.16.1/crd.yaml " +
		"https://github.com/rancher/system-upgrade-controller/releases/download/v0.16.1/system-upgrade-controller.yaml"
	if strings.Join(files, " ") != want {
		t.Errorf("release files:\n got  %v\n want %s", files, want)
	}

	plans := rec.byType("kubernetes:upgrade.cattle.io/v1:Plan")
	if len(plans) != 1 {
		t.Fatalf("want one Plan, got %d", len(plans))
	}
	plan := plans[0]
	meta := plan.in["metadata"].ObjectValue()
	if meta["name"].StringValue() != "k3s-server" || meta["namespace"].StringValue() != "system-upgrade" {
		t.Errorf("plan metadata %v", meta)
	}
	spec := plan.in["spec"].ObjectValue()
	checks := map[string]bool{
		"version is the stack's":       spec["version"].StringValue() == "v1.32.1+k3s1",
		"one server at a time":         spec["concurrency"].NumberValue() == 1,
		"cordoned while K3s restarts":  spec["cordon"].BoolValue(),
		"no drain (single server)":     !spec.HasValue("drain"),
		"K3s' upgrade image":           spec["upgrade"].ObjectValue()["image"].StringValue() == "rancher/k3s-upgrade",
		"controller's service account": spec["serviceAccountName"].StringValue() == "system-upgrade",
	}
	for what, ok := range checks {
		if !ok {
			t.Errorf("plan: %s: spec %v", what, spec)
		}
	}
	exprs := spec["nodeSelector"].ObjectValue()["matchExpressions"].ArrayValue()
	if len(exprs) != 1 {
		t.Fatalf("node selector %v", exprs)
	}
	e := exprs[0].ObjectValue()
	if e["key"].StringValue() != ControlPlaneLabel || e["operator"].StringValue() != "In" ||
		len(e["values"].ArrayValue()) != 1 || e["values"].ArrayValue()[0].StringValue() != "true" {
		t.Errorf("plan selects %v, want every K3s server", e)
	}
	// The Plan waits for the controller's CRD, or its create fails on a new cluster.
	dependsOnController := false
	for _, d := range plan.deps {
		if strings.HasSuffix(d, "::system-upgrade-controller") {
			dependsOnController = true
		}
	}
	if !dependsOnController {
		t.Errorf("plan dependencies %v lack the controller's release", plan.deps)
	}
	for _, r := range append(groups, plan) {
		if !strings.HasSuffix(r.parent, "pressroom:upgrades:K3sUpgrades::k3s-upgrades") {
			t.Errorf("%s %s has parent %q, want the component", r.typ, r.name, r.parent)
		}
	}
}

func TestExistingControllerGetsOnlyThePlan(t *testing.T) {
	rec, _ := run(t, &K3sUpgradesArgs{K3sVersion: "v1.31.4+k3s1", Install: false})
	if n := len(rec.byType("kubernetes:yaml/v2:ConfigGroup")); n != 0 {
		t.Errorf("install off still applied the release (%d ConfigGroups)", n)
	}
	if n := len(rec.byType("kubernetes:upgrade.cattle.io/v1:Plan")); n != 1 {
		t.Errorf("want the Plan, got %d", n)
	}
}

func TestUnpinnedVersionsAreRefused(t *testing.T) {
	for _, tc := range []struct {
		args K3sUpgradesArgs
		want string
	}{
		{K3sUpgradesArgs{K3sVersion: "stable", Install: true, ControllerVersion: "v0.16.1"}, `K3s version "stable" must be a pinned release`},
		{K3sUpgradesArgs{K3sVersion: "v1.31.4+k3s1", Install: true, ControllerVersion: "latest"}, `system-upgrade-controller version "latest" must be pinned`},
	} {
		err := pulumi.RunErr(func(ctx *pulumi.Context) error {
			_, err := NewK3sUpgrades(ctx, "k3s-upgrades", &tc.args)
			return err
		}, pulumi.WithMocks("pressroom", "staging", &recorder{}))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestCheckVersion(t *testing.T) {
	for _, tc := range []struct {
		running []string
		target  string
		want    string // "" = allowed
	}{
		{nil, "v1.31.4+k3s1", ""},
		{[]string{"v1.31.4+k3s1"}, "v1.31.4+k3s1", ""},
		{[]string{"v1.31.4+k3s1"}, "v1.31.4+k3s2", ""},
		{[]string{"v1.31.4+k3s1", "v1.31.4+k3s1"}, "v1.32.0+k3s1", ""},
		{[]string{"v1.31.4+k3s1", "v1.32.1+k3s1"}, "v1.32.1+k3s1", ""}, // an upgrade half done
		{[]string{"v1.33.13"}, "v1.33.13+k3s1", ""},                    // not a K3s build: build numbers do not count
		{[]string{"unknown"}, "v1.31.4+k3s1", ""},
		{[]string{"v1.31.4+k3s2"}, "v1.31.4+k3s1", "older than v1.31.4+k3s2"},
		{[]string{"v1.31.4+k3s1"}, "v1.31.3+k3s9", "older than v1.31.4+k3s1"},
		{[]string{"v1.32.0+k3s1", "v1.31.4+k3s1"}, "v1.31.9+k3s1", "older than v1.32.0+k3s1"},
		{[]string{"v1.31.4+k3s1"}, "v2.0.0+k3s1", ""},
		{[]string{"v1.31.4+k3s1"}, "v1.33.0+k3s1", "skips a minor version: the oldest node runs v1.31.4; upgrade to a v1.32 release first"},
		{[]string{"v1.32.4+k3s1", "v1.31.4+k3s1"}, "v1.33.1+k3s1", "the oldest node runs v1.31.4"},
		{[]string{"v1.31.4+k3s1"}, "latest", "must be a pinned release"},
	} {
		err := CheckVersion(tc.running, tc.target)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v -> %s: refused: %v", tc.running, tc.target, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v -> %s: got %v, want %q", tc.running, tc.target, err, tc.want)
		}
	}
}

func TestPlanWaitsForTheVersionCheck(t *testing.T) {
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		_, err := NewK3sUpgrades(ctx, "k3s-upgrades", &K3sUpgradesArgs{K3sVersion: "v1.31.4+k3s1", Install: false,
			RunningVersions: pulumi.ToStringArray([]string{"v1.32.0+k3s1"})})
		return err
	}, pulumi.WithMocks("pressroom", "staging", &recorder{}))
	if err == nil || !strings.Contains(err.Error(), "K3s does not support downgrades") {
		t.Errorf("a downgrade reached the Plan: %v", err)
	}
}

// Package upgrades keeps the K3s servers at the stack's pinned K3s version
// with K3s' own tool for it, Rancher's system-upgrade-controller: the
// controller (installed from its pinned release manifests unless the cluster
// already runs it) watches a Plan, and when the Plan's version changes it
// cordons one server at a time, runs the k3s-upgrade image on it (which swaps
// the binary and restarts K3s) and uncordons it. Raising cluster.k3sVersion
// and running `pulumi up` is the whole upgrade.
package upgrades

import (
	"fmt"
	"regexp"
	"strconv"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apiextensions"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	yamlv2 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/yaml/v2"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"pressroom.dev/infra/kube"
)

const (
	// Namespace is where the controller's release manifest puts it, its
	// ServiceAccount and its Plans.
	Namespace = "system-upgrade"
	// ServiceAccount is the controller's account from the release manifest;
	// upgrade Jobs run under it.
	ServiceAccount = "system-upgrade"
	// PlanName is the Plan for the K3s servers (every pressroom node is one).
	PlanName = "k3s-server"
	// UpgradeImage is K3s' upgrade image; the controller tags it with the
	// Plan's version ("+" becomes "-").
	UpgradeImage = "rancher/k3s-upgrade"
	// ControlPlaneLabel is set to "true" by K3s on every server node.
	ControlPlaneLabel = "node-role.kubernetes.io/control-plane"
)

var (
	controllerVersionRE = regexp.MustCompile(`^v\d+\.\d+\.\d+$`)
	k3sVersionRE        = regexp.MustCompile(`^v1\.\d+\.\d+\+k3s\d+$`)
)

// ReleaseManifests are the controller's release files, applied in this
// order: the Plan CRD, then the namespace, RBAC, config and Deployment.
func ReleaseManifests(version string) []string {
	base := "https://github.com/rancher/system-upgrade-controller/releases/download/" + version + "/"
	return []string{base + "crd.yaml", base + "system-upgrade-controller.yaml"}
}

// K3sUpgradesArgs configures the upgrades.
type K3sUpgradesArgs struct {
	K3sVersion        string // the version every server is kept at, e.g. v1.36.4+k3s1
	Install           bool   // false: the cluster already runs system-upgrade-controller
	ControllerVersion string // pinned controller release, e.g. v0.16.1
	// RunningVersions, when set, are the nodes' kubelet versions now: the
	// Plan is not changed if K3sVersion would downgrade a node or skip a
	// minor version (CheckVersion).
	RunningVersions pulumi.StringArrayInput
	DependsOn       []pulumi.Resource
}

// K3sUpgrades is the component.
type K3sUpgrades struct {
	pulumi.ResourceState

	Plan       pulumi.StringOutput `pulumi:"plan"`       // namespace/name of the Plan
	K3sVersion pulumi.StringOutput `pulumi:"k3sVersion"` // the version the servers are kept at
}

// New installs the controller (when asked) and the servers' Plan.
func NewK3sUpgrades(ctx *pulumi.Context, name string, args *K3sUpgradesArgs, opts ...pulumi.ResourceOption) (*K3sUpgrades, error) {
	if args == nil {
		return nil, fmt.Errorf("upgrades: args are required")
	}
	a := *args
	if !k3sVersionRE.MatchString(a.K3sVersion) {
		return nil, fmt.Errorf("upgrades: K3s version %q must be a pinned release like v1.36.4+k3s1", a.K3sVersion)
	}
	if a.Install && !controllerVersionRE.MatchString(a.ControllerVersion) {
		return nil, fmt.Errorf("upgrades: system-upgrade-controller version %q must be pinned as vX.Y.Z", a.ControllerVersion)
	}
	c := &K3sUpgrades{}
	if err := ctx.RegisterComponentResource("pressroom:upgrades:K3sUpgrades", name, c, opts...); err != nil {
		return nil, err
	}
	ready := a.DependsOn
	if a.Install {
		controller, err := yamlv2.NewConfigGroup(ctx, "system-upgrade-controller", &yamlv2.ConfigGroupArgs{
			Files: pulumi.ToStringArray(ReleaseManifests(a.ControllerVersion)),
		}, kube.Child(c, pulumi.DependsOn(a.DependsOn))...)
		if err != nil {
			return nil, fmt.Errorf("system-upgrade-controller: %w", err)
		}
		ready = []pulumi.Resource{controller}
	}
	if _, err := apiextensions.NewCustomResource(ctx, PlanName, &apiextensions.CustomResourceArgs{
		ApiVersion: pulumi.String("upgrade.cattle.io/v1"),
		Kind:       pulumi.String("Plan"),
		Metadata: &metav1.ObjectMetaArgs{
			Name:      pulumi.String(PlanName),
			Namespace: pulumi.String(Namespace),
			Labels:    kube.Labels(PlanName, "upgrades"),
		},
		OtherFields: kubernetes.UntypedArgs{"spec": PlanSpec(checked(a))},
	}, kube.Child(c, pulumi.DependsOn(ready))...); err != nil {
		return nil, fmt.Errorf("upgrade plan: %w", err)
	}
	c.Plan = pulumi.String(Namespace + "/" + PlanName).ToStringOutput()
	c.K3sVersion = pulumi.String(a.K3sVersion).ToStringOutput()
	if err := ctx.RegisterResourceOutputs(c, pulumi.Map{"plan": c.Plan, "k3sVersion": c.K3sVersion}); err != nil {
		return nil, err
	}
	return c, nil
}

// checked is the Plan's version, resolved only once it passes CheckVersion
// against the running nodes (when they are known).
func checked(a K3sUpgradesArgs) pulumi.StringInput {
	if a.RunningVersions == nil {
		return pulumi.String(a.K3sVersion)
	}
	return a.RunningVersions.ToStringArrayOutput().ApplyT(func(running []string) (string, error) {
		return a.K3sVersion, CheckVersion(running, a.K3sVersion)
	}).(pulumi.StringOutput)
}

type version struct{ major, minor, patch, k3s int } // k3s -1: not a K3s build

var versionRE = regexp.MustCompile(`^v(\d+)\.(\d+)\.(\d+)(?:\+k3s(\d+))?`)

func parseVersion(s string) (version, bool) {
	m := versionRE.FindStringSubmatch(s)
	if m == nil {
		return version{}, false
	}
	n := func(x string) int { v, _ := strconv.Atoi(x); return v }
	v := version{n(m[1]), n(m[2]), n(m[3]), -1}
	if m[4] != "" {
		v.k3s = n(m[4])
	}
	return v, true
}

// older reports whether a is an earlier release than b (K3s build numbers
// count only when both have one).
func (a version) older(b version) bool {
	for _, d := range [][2]int{{a.major, b.major}, {a.minor, b.minor}, {a.patch, b.patch}} {
		if d[0] != d[1] {
			return d[0] < d[1]
		}
	}
	return a.k3s >= 0 && b.k3s >= 0 && a.k3s < b.k3s
}

// CheckVersion refuses a target K3s version that would downgrade any node
// (K3s does not support downgrades) or that is more than one minor version
// ahead of the oldest node (Kubernetes' version skew policy, which the
// controller does not enforce). Node versions it cannot read are skipped.
func CheckVersion(running []string, target string) error {
	t, ok := parseVersion(target)
	if !ok {
		return fmt.Errorf("upgrades: K3s version %q must be a pinned release like v1.36.4+k3s1", target)
	}
	var oldest *version
	for _, r := range running {
		v, ok := parseVersion(r)
		if !ok {
			continue
		}
		if t.older(v) {
			return fmt.Errorf("upgrades: cluster.k3sVersion %s is older than %s, which a node runs: K3s does not support downgrades; "+
				"set cluster.k3sVersion to %s or newer (a rollback keeps the K3s version it has)", target, r, r)
		}
		if oldest == nil || v.older(*oldest) {
			oldest = &v
		}
	}
	if oldest != nil && t.major == oldest.major && t.minor > oldest.minor+1 {
		return fmt.Errorf("upgrades: cluster.k3sVersion %s skips a minor version: the oldest node runs v%d.%d.%d; "+
			"upgrade to a v%d.%d release first (Kubernetes' version skew policy)",
			target, oldest.major, oldest.minor, oldest.patch, oldest.major, oldest.minor+1)
	}
	return nil
}

// PlanSpec upgrades the servers one at a time (concurrency 1 keeps two of
// three etcd members up), cordoned while K3s restarts so nothing new is
// scheduled there. Pods are not drained: on a single server there is nowhere
// to move them, and K3s restarts without stopping running containers.
func PlanSpec(k3sVersion pulumi.StringInput) pulumi.Map {
	return pulumi.Map{
		"concurrency": pulumi.Int(1),
		"cordon":      pulumi.Bool(true),
		"nodeSelector": pulumi.Map{"matchExpressions": pulumi.Array{pulumi.Map{
			"key": pulumi.String(ControlPlaneLabel), "operator": pulumi.String("In"),
			"values": pulumi.StringArray{pulumi.String("true")},
		}}},
		"serviceAccountName": pulumi.String(ServiceAccount),
		"upgrade":            pulumi.Map{"image": pulumi.String(UpgradeImage)},
		"version":            k3sVersion,
	}
}

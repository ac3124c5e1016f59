// Package kube holds the small building blocks every platform component
// shares: the namespace name, labels, the restricted-PSS security contexts,
// resource sizes and probe shapes. One place, so every pod is hardened the
// same way and the invariant tests have one definition to check against.
package kube

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Namespace is where every pressroom object lives.
const Namespace = "pressroom"

// NameLabel selects a workload's pods; NetworkPolicies key on it.
const NameLabel = "app.kubernetes.io/name"

// SkipAwaitAnnotation turns off pulumi-kubernetes' readiness wait for one object.
const SkipAwaitAnnotation = "pulumi.com/skipAwait"

// Labels are the standard labels of a workload's objects.
func Labels(name, component string) pulumi.StringMap {
	return pulumi.StringMap{
		NameLabel:                      pulumi.String(name),
		"app.kubernetes.io/component":  pulumi.String(component),
		"app.kubernetes.io/part-of":    pulumi.String("pressroom"),
		"app.kubernetes.io/managed-by": pulumi.String("pulumi"),
	}
}

// Selector is the immutable pod selector of a workload (only the name label,
// so label additions never force a replacement).
func Selector(name string) pulumi.StringMap {
	return pulumi.StringMap{NameLabel: pulumi.String(name)}
}

// Meta builds metadata in namespace ns; pass the Namespace resource's name
// output so every object waits for the namespace. Annotations may be nil.
func Meta(ns pulumi.StringInput, name, component string, annotations map[string]string) *metav1.ObjectMetaArgs {
	m := &metav1.ObjectMetaArgs{
		Name:      pulumi.String(name),
		Namespace: ns,
		Labels:    Labels(name, component),
	}
	if len(annotations) > 0 {
		m.Annotations = pulumi.ToStringMap(annotations)
	}
	return m
}

// PodSecurity is the pod-level context the restricted Pod Security Standard
// requires: non-root with a fixed uid/gid and the runtime's default seccomp.
func PodSecurity(uid int) *corev1.PodSecurityContextArgs {
	return &corev1.PodSecurityContextArgs{
		RunAsNonRoot:   pulumi.Bool(true),
		RunAsUser:      pulumi.Int(uid),
		RunAsGroup:     pulumi.Int(uid),
		FsGroup:        pulumi.Int(uid),
		SeccompProfile: &corev1.SeccompProfileArgs{Type: pulumi.String("RuntimeDefault")},
	}
}

// ContainerSecurity is the container-level context: no privilege escalation,
// read-only root filesystem, every capability dropped.
func ContainerSecurity() *corev1.SecurityContextArgs {
	return &corev1.SecurityContextArgs{
		AllowPrivilegeEscalation: pulumi.Bool(false),
		ReadOnlyRootFilesystem:   pulumi.Bool(true),
		RunAsNonRoot:             pulumi.Bool(true),
		Capabilities:             &corev1.CapabilitiesArgs{Drop: pulumi.StringArray{pulumi.String("ALL")}},
		SeccompProfile:           &corev1.SeccompProfileArgs{Type: pulumi.String("RuntimeDefault")},
	}
}

// Size is a container's requests and limits.
type Size struct {
	CPURequest, MemRequest, CPULimit, MemLimit string
}

// Resources turns a Size into Kubernetes resource requirements.
func (s Size) Resources() *corev1.ResourceRequirementsArgs {
	return &corev1.ResourceRequirementsArgs{
		Requests: pulumi.StringMap{"cpu": pulumi.String(s.CPURequest), "memory": pulumi.String(s.MemRequest)},
		Limits:   pulumi.StringMap{"cpu": pulumi.String(s.CPULimit), "memory": pulumi.String(s.MemLimit)},
	}
}

// GoMemLimit is the GOMEMLIMIT for a Go process in a container of this
// size: 90% of the memory limit, in bytes. Near the limit the runtime then
// collects harder instead of letting the kernel kill the pod; the tenth left
// over is for what the Go heap does not count (stacks, runtime, page cache).
func (s Size) GoMemLimit() (string, error) {
	n, err := parseBytes(s.MemLimit)
	if err != nil {
		return "", fmt.Errorf("memory limit: %w", err)
	}
	return strconv.FormatInt(n/10*9+n%10*9/10, 10), nil // 0.9n without overflow
}

// parseBytes reads a Kubernetes memory quantity in the forms used for
// limits: a plain byte count, or an integer with a binary (Ki, Mi, Gi, Ti)
// or decimal (k, M, G, T) suffix.
func parseBytes(q string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}}
	num, mult := q, int64(1)
	for _, u := range units {
		if strings.HasSuffix(q, u.suffix) {
			num, mult = strings.TrimSuffix(q, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is not a memory size such as 256Mi, 1Gi or 500M", q)
	}
	return n * mult, nil
}

// TmpVolume is the size-limited writable /tmp every read-only container gets.
func TmpVolume(limit string) *corev1.VolumeArgs {
	return &corev1.VolumeArgs{
		Name:     pulumi.String("tmp"),
		EmptyDir: &corev1.EmptyDirVolumeSourceArgs{SizeLimit: pulumi.String(limit)},
	}
}

// TmpMount mounts TmpVolume at /tmp.
func TmpMount() *corev1.VolumeMountArgs {
	return &corev1.VolumeMountArgs{Name: pulumi.String("tmp"), MountPath: pulumi.String("/tmp")}
}

// HTTPProbe probes path on port.
func HTTPProbe(path string, port, period, failures int) *corev1.ProbeArgs {
	return &corev1.ProbeArgs{
		HttpGet:          &corev1.HTTPGetActionArgs{Path: pulumi.String(path), Port: pulumi.Int(port)},
		PeriodSeconds:    pulumi.Int(period),
		TimeoutSeconds:   pulumi.Int(3),
		FailureThreshold: pulumi.Int(failures),
	}
}

// ExecProbe runs a command in the container.
func ExecProbe(period, failures int, cmd ...string) *corev1.ProbeArgs {
	return &corev1.ProbeArgs{
		Exec:             &corev1.ExecActionArgs{Command: pulumi.ToStringArray(cmd)},
		PeriodSeconds:    pulumi.Int(period),
		TimeoutSeconds:   pulumi.Int(5),
		FailureThreshold: pulumi.Int(failures),
	}
}

// SecretEnv is an environment variable read from one key of a Secret.
func SecretEnv(name, secret, key string) *corev1.EnvVarArgs {
	return &corev1.EnvVarArgs{
		Name: pulumi.String(name),
		ValueFrom: &corev1.EnvVarSourceArgs{SecretKeyRef: &corev1.SecretKeySelectorArgs{
			Name: pulumi.String(secret), Key: pulumi.String(key),
		}},
	}
}

// Env is a plain (non-secret) environment variable.
func Env(name, value string) *corev1.EnvVarArgs {
	return &corev1.EnvVarArgs{Name: pulumi.String(name), Value: pulumi.String(value)}
}

// Child is the option list for a component's children.
func Child(parent pulumi.Resource, extra ...pulumi.ResourceOption) []pulumi.ResourceOption {
	return append([]pulumi.ResourceOption{pulumi.Parent(parent)}, extra...)
}

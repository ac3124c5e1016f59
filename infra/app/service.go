// Package app is the one reusable component every pressroom service is
// deployed with: ServiceAccount, Deployment, Service, optional HPA and PDB,
// and the service's NetworkPolicy — all hardened the same way.
package app

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"

	appsv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apps/v1"
	autoscalingv2 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/autoscaling/v2"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	policyv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/policy/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"pressroom.dev/infra/kube"
	"pressroom.dev/infra/netpol"
	"pressroom.dev/infra/secrets"
)

// UID is the distroless "nonroot" user the service images run as.
const UID = 65532

// SecretRef is an environment variable read from a key of a Secret.
type SecretRef struct {
	Secret, Key string
}

// Autoscaling bounds a HorizontalPodAutoscaler on average CPU.
type Autoscaling struct {
	Min, Max, CPUPercent int
}

// CABundleDir is where a service finds its extra trusted CA certificates
// (SSL_CERT_DIR): Go reads every file there besides the image's bundle.
const CABundleDir = "/etc/pressroom/ca"

// CABundleAnnotation on the pod template carries the bundle's SHA-256: Go
// reads its roots once per process, so a changed bundle rolls the pods.
const CABundleAnnotation = "pressroom.dev/trusted-ca-sha256"

// CABundle is a ConfigMap of PEM certificates a service trusts for outbound
// TLS in addition to the image's public roots.
type CABundle struct {
	ConfigMap pulumi.StringInput // the ConfigMap's name output, so pods wait for it
	Key       string             // its PEM file
	SHA256    string             // of the PEM
}

// Volume is a PersistentVolumeClaim mounted read-write.
type Volume struct {
	Claim     string
	MountPath string
}

// ServiceArgs describes one service.
type ServiceArgs struct {
	Namespace pulumi.StringInput // the Namespace resource's name output
	Port      int                // HTTP port: app traffic, /healthz, /readyz, /metrics
	Image     pulumi.StringInput // must be pinned by digest (…@sha256:…)
	Replicas  int                // ignored when Autoscaling is set (the HPA owns it)

	Env        map[string]pulumi.StringInput // plain settings; never secrets
	SecretEnv  map[string]SecretRef          // secrets, via secretKeyRef
	KeysSecret string                        // Secret with the JWT keys, mounted at /keys
	KeyItems   []string                      // which keys of it this service may see
	Data       *Volume                       // optional persistent volume
	// TrustedCA, when set, is mounted read-only at CABundleDir with
	// SSL_CERT_DIR pointing there: Go's crypto/x509 then trusts it in
	// addition to /etc/ssl/certs/ca-certificates.crt (see CABundleDir).
	TrustedCA *CABundle

	Size            kube.Size
	Autoscaling     *Autoscaling
	PDBMinAvailable int               // 0 = no PodDisruptionBudget
	SpreadNodes     bool              // topology spread over nodes (clusters with > 1 node)
	NodeSelector    map[string]string // e.g. the data node for a service with a local volume
	PullSecret      string
	SkipAwait       bool // do not wait for rollout (API servers without nodes)

	// SecretChecksums are the secrets component's keyed digests of every
	// Secret key (secrets.Secrets.Checksums, by secrets.ChecksumKey). When
	// set, the digests of the keys this pod reads go on its template, so a
	// changed value rolls exactly the pods that read it.
	SecretChecksums map[string]pulumi.StringOutput
}

// Service is a deployed service.
type Service struct {
	pulumi.ResourceState

	Name       pulumi.StringOutput `pulumi:"name"`  // Service (DNS) name
	URL        pulumi.StringOutput `pulumi:"url"`   // in-cluster base URL
	Image      pulumi.StringOutput `pulumi:"image"` // the image reference deployed
	Deployment *appsv1.Deployment
}

// PreStopSeconds is how long a terminating pod keeps serving before it gets
// SIGTERM: the endpoint controller, kube-proxy and Traefik stop sending it
// new requests meanwhile (they learn of the deletion asynchronously, within
// a few seconds on a loaded node). The native sleep action needs no sleep
// binary in the image (distroless has none; Kubernetes 1.30+).
const PreStopSeconds = 10

// TerminationGrace leaves room for the preStop pause plus the kit's drain
// (SHUTDOWN_TIMEOUT 20 s) and the OnShutdown closers after it.
const TerminationGrace = PreStopSeconds + 40

// SecretsAnnotation on the pod template carries a digest of the Secret keys
// the pod reads (environment and mounted files): the kubelet never restarts a
// container for a changed Secret, so the template must change instead.
const SecretsAnnotation = "pressroom.dev/secrets-sha256"

// NewService creates one service. The component's name is the service name.
func NewService(ctx *pulumi.Context, name string, args *ServiceArgs, opts ...pulumi.ResourceOption) (*Service, error) {
	if err := args.validate(name); err != nil {
		return nil, err
	}
	s := &Service{}
	if err := ctx.RegisterComponentResource("pressroom:app:Service", name, s, opts...); err != nil {
		return nil, err
	}
	child := kube.Child(s)
	ns := args.Namespace
	ann := map[string]string(nil)
	if args.SkipAwait {
		ann = map[string]string{kube.SkipAwaitAnnotation: "true"}
	}

	sa, err := corev1.NewServiceAccount(ctx, name, &corev1.ServiceAccountArgs{
		Metadata:                     kube.Meta(ns, name, "service", nil),
		AutomountServiceAccountToken: pulumi.Bool(false),
	}, child...)
	if err != nil {
		return nil, fmt.Errorf("%s service account: %w", name, err)
	}

	memLimit, _ := args.Size.GoMemLimit() // validated above
	env := corev1.EnvVarArray{
		kube.Env("SERVICE_NAME", name),
		kube.Env("HTTP_ADDR", fmt.Sprintf(":%d", args.Port)),
		kube.Env("GOMEMLIMIT", memLimit),
	}
	if args.TrustedCA != nil {
		env = append(env, kube.Env("SSL_CERT_DIR", CABundleDir))
	}
	for _, k := range sortedKeys(args.Env) {
		env = append(env, corev1.EnvVarArgs{Name: pulumi.String(k), Value: args.Env[k]})
	}
	for _, k := range sortedKeys(args.SecretEnv) {
		r := args.SecretEnv[k]
		env = append(env, kube.SecretEnv(k, r.Secret, r.Key))
	}

	volumes := corev1.VolumeArray{kube.TmpVolume("64Mi")}
	mounts := corev1.VolumeMountArray{kube.TmpMount()}
	if args.KeysSecret != "" {
		items := corev1.KeyToPathArray{}
		for _, k := range args.KeyItems {
			items = append(items, corev1.KeyToPathArgs{Key: pulumi.String(k), Path: pulumi.String(k)})
		}
		volumes = append(volumes, corev1.VolumeArgs{Name: pulumi.String("keys"), Secret: &corev1.SecretVolumeSourceArgs{
			SecretName: pulumi.String(args.KeysSecret), Items: items, DefaultMode: pulumi.Int(0o440),
		}})
		mounts = append(mounts, corev1.VolumeMountArgs{Name: pulumi.String("keys"), MountPath: pulumi.String("/keys"), ReadOnly: pulumi.Bool(true)})
	}
	podMeta := &metav1.ObjectMetaArgs{Labels: kube.Labels(name, "service")}
	podAnn := pulumi.StringMap{}
	if args.SecretChecksums != nil {
		podAnn[SecretsAnnotation] = SecretsDigest(args.SecretChecksums, args.readSecrets())
	}
	if ca := args.TrustedCA; ca != nil {
		volumes = append(volumes, corev1.VolumeArgs{Name: pulumi.String("trusted-ca"), ConfigMap: &corev1.ConfigMapVolumeSourceArgs{
			Name:        ca.ConfigMap,
			Items:       corev1.KeyToPathArray{corev1.KeyToPathArgs{Key: pulumi.String(ca.Key), Path: pulumi.String(ca.Key)}},
			DefaultMode: pulumi.Int(0o444),
		}})
		mounts = append(mounts, corev1.VolumeMountArgs{Name: pulumi.String("trusted-ca"), MountPath: pulumi.String(CABundleDir), ReadOnly: pulumi.Bool(true)})
		podAnn[CABundleAnnotation] = pulumi.String(ca.SHA256)
	}
	if len(podAnn) > 0 {
		podMeta.Annotations = podAnn
	}
	if args.Data != nil {
		volumes = append(volumes, corev1.VolumeArgs{Name: pulumi.String("data"), PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSourceArgs{
			ClaimName: pulumi.String(args.Data.Claim),
		}})
		mounts = append(mounts, corev1.VolumeMountArgs{Name: pulumi.String("data"), MountPath: pulumi.String(args.Data.MountPath)})
	}

	pod := &corev1.PodSpecArgs{
		ServiceAccountName:            sa.Metadata.Name().Elem(),
		AutomountServiceAccountToken:  pulumi.Bool(false),
		SecurityContext:               kube.PodSecurity(UID),
		TerminationGracePeriodSeconds: pulumi.Int(TerminationGrace),
		Containers: corev1.ContainerArray{corev1.ContainerArgs{
			Name:            pulumi.String(name),
			Image:           args.Image,
			ImagePullPolicy: pulumi.String("IfNotPresent"),
			Ports: corev1.ContainerPortArray{corev1.ContainerPortArgs{
				Name: pulumi.String("http"), ContainerPort: pulumi.Int(args.Port), Protocol: pulumi.String("TCP"),
			}},
			Env:          env,
			VolumeMounts: mounts,
			Lifecycle: &corev1.LifecycleArgs{PreStop: &corev1.LifecycleHandlerArgs{
				Sleep: &corev1.SleepActionArgs{Seconds: pulumi.Int(PreStopSeconds)},
			}},
			Resources:       args.Size.Resources(),
			SecurityContext: kube.ContainerSecurity(),
			// Startup allows ~2.5 min: first boot waits for Postgres to initialise.
			StartupProbe:   kube.HTTPProbe("/healthz", args.Port, 5, 30),
			ReadinessProbe: kube.HTTPProbe("/readyz", args.Port, 5, 3),
			LivenessProbe:  kube.HTTPProbe("/healthz", args.Port, 10, 3),
		}},
		Volumes: volumes,
	}
	if args.PullSecret != "" {
		pod.ImagePullSecrets = corev1.LocalObjectReferenceArray{corev1.LocalObjectReferenceArgs{Name: pulumi.String(args.PullSecret)}}
	}
	if len(args.NodeSelector) > 0 {
		pod.NodeSelector = pulumi.ToStringMap(args.NodeSelector)
	}
	if args.SpreadNodes {
		pod.TopologySpreadConstraints = corev1.TopologySpreadConstraintArray{corev1.TopologySpreadConstraintArgs{
			MaxSkew:           pulumi.Int(1),
			TopologyKey:       pulumi.String("kubernetes.io/hostname"),
			WhenUnsatisfiable: pulumi.String("ScheduleAnyway"),
			LabelSelector:     &metav1.LabelSelectorArgs{MatchLabels: kube.Selector(name)},
		}}
	}

	spec := &appsv1.DeploymentSpecArgs{
		Selector: &metav1.LabelSelectorArgs{MatchLabels: kube.Selector(name)},
		Strategy: &appsv1.DeploymentStrategyArgs{
			Type: pulumi.String("RollingUpdate"),
			RollingUpdate: &appsv1.RollingUpdateDeploymentArgs{
				MaxUnavailable: pulumi.Int(0), MaxSurge: pulumi.Int(1),
			},
		},
		RevisionHistoryLimit: pulumi.Int(5),
		Template: &corev1.PodTemplateSpecArgs{
			Metadata: podMeta,
			Spec:     pod,
		},
	}
	if args.Autoscaling == nil {
		spec.Replicas = pulumi.Int(args.Replicas)
	}
	dep, err := appsv1.NewDeployment(ctx, name, &appsv1.DeploymentArgs{
		Metadata: kube.Meta(ns, name, "service", ann),
		Spec:     spec,
	}, child...)
	if err != nil {
		return nil, fmt.Errorf("%s deployment: %w", name, err)
	}

	svc, err := corev1.NewService(ctx, name, &corev1.ServiceArgs{
		Metadata: kube.Meta(ns, name, "service", ann),
		Spec: &corev1.ServiceSpecArgs{
			Type:     pulumi.String("ClusterIP"),
			Selector: kube.Selector(name),
			Ports: corev1.ServicePortArray{corev1.ServicePortArgs{
				Name: pulumi.String("http"), Port: pulumi.Int(args.Port), TargetPort: pulumi.String("http"), Protocol: pulumi.String("TCP"),
			}},
		},
	}, child...)
	if err != nil {
		return nil, fmt.Errorf("%s service: %w", name, err)
	}

	if a := args.Autoscaling; a != nil {
		if _, err := autoscalingv2.NewHorizontalPodAutoscaler(ctx, name, &autoscalingv2.HorizontalPodAutoscalerArgs{
			Metadata: kube.Meta(ns, name, "service", nil),
			Spec: &autoscalingv2.HorizontalPodAutoscalerSpecArgs{
				ScaleTargetRef: &autoscalingv2.CrossVersionObjectReferenceArgs{
					ApiVersion: pulumi.String("apps/v1"), Kind: pulumi.String("Deployment"), Name: dep.Metadata.Name().Elem(),
				},
				MinReplicas: pulumi.Int(a.Min),
				MaxReplicas: pulumi.Int(a.Max),
				Metrics: autoscalingv2.MetricSpecArray{autoscalingv2.MetricSpecArgs{
					Type: pulumi.String("Resource"),
					Resource: &autoscalingv2.ResourceMetricSourceArgs{
						Name:   pulumi.String("cpu"),
						Target: &autoscalingv2.MetricTargetArgs{Type: pulumi.String("Utilization"), AverageUtilization: pulumi.Int(a.CPUPercent)},
					},
				}},
			},
		}, child...); err != nil {
			return nil, fmt.Errorf("%s autoscaler: %w", name, err)
		}
	}
	if args.PDBMinAvailable > 0 {
		if _, err := policyv1.NewPodDisruptionBudget(ctx, name, &policyv1.PodDisruptionBudgetArgs{
			Metadata: kube.Meta(ns, name, "service", nil),
			Spec: &policyv1.PodDisruptionBudgetSpecArgs{
				MinAvailable: pulumi.Int(args.PDBMinAvailable),
				Selector:     &metav1.LabelSelectorArgs{MatchLabels: kube.Selector(name)},
			},
		}, child...); err != nil {
			return nil, fmt.Errorf("%s disruption budget: %w", name, err)
		}
	}
	if _, err := netpol.NewPolicy(ctx, ns, name, child...); err != nil {
		return nil, fmt.Errorf("%s network policy: %w", name, err)
	}

	s.Deployment = dep
	s.Name = svc.Metadata.Name().Elem()
	s.URL = pulumi.Sprintf("http://%s:%d", s.Name, args.Port)
	s.Image = args.Image.ToStringOutput()
	if err := ctx.RegisterResourceOutputs(s, pulumi.Map{"name": s.Name, "url": s.URL, "image": s.Image}); err != nil {
		return nil, err
	}
	return s, nil
}

func (a *ServiceArgs) validate(name string) error {
	var problems []string
	if a == nil {
		return fmt.Errorf("app %s: ServiceArgs are required", name)
	}
	if a.Namespace == nil {
		problems = append(problems, "Namespace is required")
	}
	if a.Image == nil {
		problems = append(problems, "Image is required (a reference pinned by @sha256: digest)")
	}
	if a.Port < 1 || a.Port > 65535 {
		problems = append(problems, fmt.Sprintf("Port %d is not a TCP port (1-65535)", a.Port))
	}
	if a.Autoscaling == nil && a.Replicas < 1 {
		problems = append(problems, fmt.Sprintf("Replicas %d must be at least 1", a.Replicas))
	}
	if as := a.Autoscaling; as != nil && (as.Min < 1 || as.Max < as.Min || as.CPUPercent < 1 || as.CPUPercent > 100) {
		problems = append(problems, fmt.Sprintf("Autoscaling %d..%d at %d%% is invalid (need 1 <= min <= max, 1-100%%)", as.Min, as.Max, as.CPUPercent))
	}
	if a.Size.CPULimit == "" || a.Size.MemLimit == "" || a.Size.CPURequest == "" || a.Size.MemRequest == "" {
		problems = append(problems, "Size needs CPU and memory requests and limits")
	} else if _, err := a.Size.GoMemLimit(); err != nil {
		problems = append(problems, "Size: "+err.Error())
	}
	for k := range a.Env {
		if _, dup := a.SecretEnv[k]; dup {
			problems = append(problems, fmt.Sprintf("%s is both a plain and a secret variable", k))
		}
	}
	if ca := a.TrustedCA; ca != nil && (ca.ConfigMap == nil || ca.Key == "" || ca.SHA256 == "") {
		problems = append(problems, "TrustedCA needs its ConfigMap, key and SHA-256")
	}
	if _, set := a.Env["SSL_CERT_DIR"]; set && a.TrustedCA != nil {
		problems = append(problems, "SSL_CERT_DIR is set by TrustedCA")
	}
	if a.KeysSecret != "" && len(a.KeyItems) == 0 {
		problems = append(problems, "KeyItems must list the keys of KeysSecret to mount")
	}
	for _, ref := range MissingChecksums(a.SecretChecksums, a.readSecrets()) {
		problems = append(problems, fmt.Sprintf("SecretChecksums has no digest of %s/%s, which the pod reads", ref.Secret, ref.Key))
	}
	if len(problems) > 0 {
		return fmt.Errorf("app %s: %v", name, problems)
	}
	return nil
}

// readSecrets are the Secret keys the pod reads, sorted and without repeats.
func (a *ServiceArgs) readSecrets() []SecretRef {
	seen := map[SecretRef]bool{}
	for _, r := range a.SecretEnv {
		seen[r] = true
	}
	if a.KeysSecret != "" {
		for _, k := range a.KeyItems {
			seen[SecretRef{Secret: a.KeysSecret, Key: k}] = true
		}
	}
	out := make([]SecretRef, 0, len(seen))
	for r := range seen {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		return secrets.ChecksumKey(out[i].Secret, out[i].Key) < secrets.ChecksumKey(out[j].Secret, out[j].Key)
	})
	return out
}

// MissingChecksums are the refs sums has no digest of (none when sums is
// nil: the digests are not asked for).
func MissingChecksums(sums map[string]pulumi.StringOutput, refs []SecretRef) []SecretRef {
	if sums == nil {
		return nil
	}
	var missing []SecretRef
	for _, r := range refs {
		if _, ok := sums[secrets.ChecksumKey(r.Secret, r.Key)]; !ok {
			missing = append(missing, r)
		}
	}
	return missing
}

// SecretsDigest is the SHA-256 of the named keys' digests, in order: it
// changes when, and only when, one of those keys' values changes. A key
// missing from sums is an error of the caller (validate reports it).
func SecretsDigest(sums map[string]pulumi.StringOutput, refs []SecretRef) pulumi.StringOutput {
	parts := make([]any, 0, len(refs))
	names := make([]string, 0, len(refs))
	for _, r := range refs {
		n := secrets.ChecksumKey(r.Secret, r.Key)
		names = append(names, n)
		parts = append(parts, sums[n])
	}
	return pulumi.All(parts...).ApplyT(func(vs []any) string {
		h := sha256.New()
		for i, v := range vs {
			fmt.Fprintf(h, "%s=%v\n", names[i], v)
		}
		return hex.EncodeToString(h.Sum(nil))
	}).(pulumi.StringOutput)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

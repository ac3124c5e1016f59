// A small Pulumi program that exercises the offline toolchain the way the
// real program (infra/) does: the same config keys (pressroom:cluster.mode
// existing|render, pressroom:kubeconfig, pressroom:images), the Kubernetes
// provider, and the stand-in tls and random providers. Test fixture only.
package main

import (
	"fmt"
	"sort"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	appsv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apps/v1"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi-random/sdk/v4/go/random"
	"github.com/pulumi/pulumi-tls/sdk/v5/go/tls"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"
)

func main() {
	pulumi.Run(func(ctx *pulumi.Context) error {
		cfg := config.New(ctx, "pressroom")
		var cluster struct {
			Mode      string `json:"mode"`
			RenderDir string `json:"renderDir"`
		}
		cfg.RequireObject("cluster", &cluster)
		var images map[string]string
		cfg.RequireObject("images", &images)

		args := &kubernetes.ProviderArgs{EnableServerSideApply: pulumi.Bool(true)}
		switch cluster.Mode {
		case "existing":
			args.Kubeconfig = cfg.RequireSecret("kubeconfig")
		case "render":
			args.RenderYamlToDirectory = pulumi.String(cluster.RenderDir)
		default:
			return fmt.Errorf("pressroom:cluster.mode must be existing or render, got %q", cluster.Mode)
		}
		k8s, err := kubernetes.NewProvider(ctx, "k8s", args)
		if err != nil {
			return err
		}
		opts := pulumi.Provider(k8s)

		ns, err := corev1.NewNamespace(ctx, "fixture", &corev1.NamespaceArgs{
			Metadata: &metav1.ObjectMetaArgs{
				Name:   pulumi.String("fixture"),
				Labels: pulumi.StringMap{"pod-security.kubernetes.io/enforce": pulumi.String("restricted")},
			},
		}, opts)
		if err != nil {
			return err
		}
		pw, err := random.NewRandomPassword(ctx, "db", &random.RandomPasswordArgs{Length: pulumi.Int(24), Special: pulumi.Bool(false)})
		if err != nil {
			return err
		}
		key, err := tls.NewPrivateKey(ctx, "jwt", &tls.PrivateKeyArgs{Algorithm: pulumi.String("ECDSA"), EcdsaCurve: pulumi.String("P256")})
		if err != nil {
			return err
		}
		if _, err := corev1.NewSecret(ctx, "app", &corev1.SecretArgs{
			Metadata:   &metav1.ObjectMetaArgs{Name: pulumi.String("app"), Namespace: ns.Metadata.Name().Elem()},
			StringData: pulumi.StringMap{"password": pw.Result, "jwt.pem": key.PrivateKeyPem},
		}, opts); err != nil {
			return err
		}

		names := make([]string, 0, len(images))
		for n := range images {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, name := range names {
			labels := pulumi.StringMap{"app.kubernetes.io/name": pulumi.String(name)}
			if _, err := appsv1.NewDeployment(ctx, name, &appsv1.DeploymentArgs{
				Metadata: &metav1.ObjectMetaArgs{
					Name:      pulumi.String(name),
					Namespace: ns.Metadata.Name().Elem(),
					// The harness runs it on an API server without a node:
					// nothing would ever become ready.
					Annotations: pulumi.StringMap{"pulumi.com/skipAwait": pulumi.String("true")},
				},
				Spec: &appsv1.DeploymentSpecArgs{
					Replicas: pulumi.Int(1),
					Selector: &metav1.LabelSelectorArgs{MatchLabels: labels},
					Template: &corev1.PodTemplateSpecArgs{
						Metadata: &metav1.ObjectMetaArgs{Labels: labels},
						Spec: &corev1.PodSpecArgs{
							AutomountServiceAccountToken: pulumi.Bool(false),
							SecurityContext: &corev1.PodSecurityContextArgs{
								RunAsNonRoot:   pulumi.Bool(true),
								RunAsUser:      pulumi.Int(65532),
								SeccompProfile: &corev1.SeccompProfileArgs{Type: pulumi.String("RuntimeDefault")},
							},
							Containers: corev1.ContainerArray{&corev1.ContainerArgs{
								Name:  pulumi.String(name),
								Image: pulumi.String(images[name]),
								SecurityContext: &corev1.SecurityContextArgs{
									AllowPrivilegeEscalation: pulumi.Bool(false),
									ReadOnlyRootFilesystem:   pulumi.Bool(true),
									Capabilities:             &corev1.CapabilitiesArgs{Drop: pulumi.StringArray{pulumi.String("ALL")}},
								},
							}},
						},
					},
				},
			}, opts); err != nil {
				return err
			}
		}
		ctx.Export("namespace", ns.Metadata.Name())
		return nil
	})
}

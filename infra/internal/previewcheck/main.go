// Command previewcheck is a test program (tools/offline): the K3s upgrades
// component on a Kubernetes provider whose kubeconfig stays unknown until a
// resource is created, as on a digitalocean stack's first `pulumi preview`
// (the droplets, and so the kubeconfig, do not exist yet). It is never
// deployed: the kubeconfig it computes points nowhere.
package main

import (
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi-random/sdk/v4/go/random"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"pressroom.dev/infra/upgrades"
	"pressroom.dev/stacks"
)

func main() {
	pulumi.Run(func(ctx *pulumi.Context) error {
		notYet, err := random.NewRandomPassword(ctx, "cluster-not-created-yet", &random.RandomPasswordArgs{Length: pulumi.Int(8)})
		if err != nil {
			return err
		}
		kubeconfig := notYet.Result.ApplyT(func(string) string {
			return "apiVersion: v1\nkind: Config\nclusters: []\n"
		}).(pulumi.StringOutput)
		p, err := kubernetes.NewProvider(ctx, "k8s", &kubernetes.ProviderArgs{Kubeconfig: kubeconfig})
		if err != nil {
			return err
		}
		_, err = upgrades.NewK3sUpgrades(ctx, "k3s-upgrades", &upgrades.K3sUpgradesArgs{
			K3sVersion:        stacks.DefaultK3sVersion,
			Install:           true,
			ControllerVersion: stacks.DefaultUpgradeControllerVersion,
			DependsOn:         []pulumi.Resource{notYet},
		}, pulumi.Provider(p))
		return err
	})
}

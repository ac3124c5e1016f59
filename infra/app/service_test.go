package app

import (
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"pressroom.dev/infra/kube"
)

func TestValidateListsEveryProblem(t *testing.T) {
	a := &ServiceArgs{
		Port:        70000,
		Autoscaling: &Autoscaling{Min: 3, Max: 2, CPUPercent: 70},
		Env:         map[string]pulumi.StringInput{"DATABASE_URL": pulumi.String("x")},
		SecretEnv:   map[string]SecretRef{"DATABASE_URL": {Secret: "s", Key: "k"}},
		KeysSecret:  "jwt-keys",
	}
	if err := (&ServiceArgs{Size: kube.Size{CPURequest: "1m", MemRequest: "1Mi", CPULimit: "1m", MemLimit: "256MB"}}).validate("web"); err == nil || !strings.Contains(err.Error(), `"256MB" is not a memory size`) {
		t.Errorf("a memory limit in the wrong unit: %v", err)
	}
	err := a.validate("web")
	if err == nil {
		t.Fatal("invalid args accepted")
	}
	for _, want := range []string{"Namespace is required", "Image is required", "Port 70000", "Autoscaling 3..2", "Size needs", "DATABASE_URL is both", "KeyItems must list"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not mention %q", err, want)
		}
	}
	ok := &ServiceArgs{
		Namespace: pulumi.String("pressroom"), Image: pulumi.String("x@sha256:00"), Port: 8080, Replicas: 1,
		Size: kube.Size{CPURequest: "1m", MemRequest: "1Mi", CPULimit: "1m", MemLimit: "1Mi"},
	}
	if err := ok.validate("web"); err != nil {
		t.Errorf("valid args rejected: %v", err)
	}
}

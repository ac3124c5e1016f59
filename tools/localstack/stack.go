package localstack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"pressroom.dev/tools/nodeimages"
	"pressroom.dev/tools/offline"
	"pressroom.dev/tools/toolchain"
)

// StackName is the stack `make up STACK=local` deploys.
const StackName = "local"

// Settings are the local stack's configuration: cluster mode existing on the
// node's kubeconfig, every image built here, cert-manager from the chart
// built here, sign-in through the internet namespace's OIDC provider, whose
// CA the services trust. Plain values are keyed for `config set --path`.
func Settings(cf ClusterFile, imgs *Images, chart string) (plain, secret map[string]string, err error) {
	kubeconfig, err := os.ReadFile(cf.Kubeconfig)
	if err != nil {
		return nil, nil, fmt.Errorf("localstack: the node's kubeconfig: %w", err)
	}
	plain = map[string]string{
		"pressroom:domain":                      Domain,
		"pressroom:cluster.mode":                "existing",
		"pressroom:cluster.readyTimeoutSeconds": "600",
		"pressroom:acme.email":                  "ops@" + Domain,
		"pressroom:acme.issuer":                 "prod",
		"pressroom:acme.server":                 cf.ACMEServer,
		"pressroom:acme.caBundle":               cf.InternetCA,
		"pressroom:certManager.install":         "true",
		"pressroom:certManager.version":         certManagerVersion,
		"pressroom:certManager.chart":           chart,
		"pressroom:upgrades.enabled":            "false",
		"pressroom:app.googleClientId":          cf.OIDCClientID,
		"pressroom:app.googleLoginEnabled":      "true",
		"pressroom:app.oidcIssuerUrl":           cf.OIDCIssuer,
		"pressroom:app.adminEmails[0]":          AdminEmail,
		"pressroom:app.emailFrom":               "Pressroom <news@" + Domain + ">",
		"pressroom:app.notifyEmail":             "editors@" + Domain,
		"pressroom:app.trustedCaBundle":         cf.InternetCA,
		"pressroom:registry.kind":               "none",
		"pressroom:protect":                     "false",
	}
	for k, img := range imgs.Services {
		plain["pressroom:images."+k] = img.Ref()
	}
	for k, img := range imgs.Datastores {
		plain["pressroom:datastoreImages."+k] = img.Ref()
	}
	for k, img := range imgs.CertManager {
		plain["pressroom:certManager.images."+k] = img.Ref()
	}
	secret = map[string]string{
		"pressroom:kubeconfig":         string(kubeconfig),
		"pressroom:googleClientSecret": cf.OIDCClientSecret,
	}
	return plain, secret, nil
}

// Prepare builds and imports the images, and makes the local stack's
// project (under dir: project/, state/, its own passphrase) with its
// configuration, ready for tools/pulumi.sh. extraEnv goes to every pulumi
// run (tests pass offline.RaceBuild()).
func Prepare(ctx context.Context, repo string, cf ClusterFile, dir string, log io.Writer, extraEnv ...string) (*offline.Project, *Images, error) {
	parts, err := toolchain.EnsureNode(ctx)
	if err != nil {
		return nil, nil, err
	}
	tools, err := toolchain.EnsurePulumi(ctx)
	if err != nil {
		return nil, nil, err
	}
	imgs, err := BuildImages(ctx, repo, parts, filepath.Join(dir, "images"), log)
	if err != nil {
		return nil, nil, err
	}
	if err := nodeimages.Import(ctx, "ctr", cf.ContainerdSocket, "k8s.io", imgs.All()...); err != nil {
		return nil, nil, fmt.Errorf("localstack: import the images into the node: %w", err)
	}
	p, err := Project(dir, repo, tools, extraEnv...)
	if err != nil {
		return nil, nil, err
	}
	if _, err := p.Run(ctx, "", "stack", "select", StackName); err != nil {
		if _, err := p.Run(ctx, "", "stack", "init", StackName); err != nil {
			return nil, nil, err
		}
	}
	plain, secret, err := Settings(cf, imgs, filepath.Join(parts.Share, "cert-manager-chart"))
	if err != nil {
		return nil, nil, err
	}
	args := []string{"config", "set-all", "-s", StackName, "--path"}
	for _, k := range sortedKeys(plain) {
		args = append(args, "--plaintext", k+"="+plain[k])
	}
	if _, err := p.Run(ctx, "", args...); err != nil {
		return nil, nil, err
	}
	keys := make([]string, 0, len(secret))
	for k := range secret {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys { // through stdin: never on a command line
		if err := p.SetSecret(ctx, StackName, k, secret[k]); err != nil {
			return nil, nil, err
		}
	}
	fmt.Fprintf(log, "localstack: stack %q configured in %s (%d images)\n", StackName, p.Dir, len(imgs.All()))
	return p, imgs, nil
}

// Project is the local stack's Pulumi project in dir: its Pulumi.yaml runs
// the repository's infra/, its file backend and passphrase (made once) are
// its own.
func Project(dir, repo string, tools toolchain.Pulumi, extraEnv ...string) (*offline.Project, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("localstack: %w", err)
	}
	pass, err := loadOrMake(filepath.Join(dir, "passphrase"), func() (string, error) {
		b := make([]byte, 24)
		_, err := rand.Read(b)
		return hex.EncodeToString(b), err
	})
	if err != nil {
		return nil, err
	}
	return offline.NewProject(dir, "pressroom", filepath.Join(repo, "infra"), tools,
		append([]string{"PULUMI_CONFIG_PASSPHRASE=" + pass}, extraEnv...)...)
}

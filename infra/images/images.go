// Package images builds and pushes the five service images (pulumi-docker
// v4 docker.Image, from the repo root so the go.work workspace resolves),
// or takes prebuilt references from stack config — per service, which is
// how offline tests and rollbacks skip the build. Deployments get the pushed
// digest (repo@sha256:…), never a tag.
package images

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/pulumi/pulumi-digitalocean/sdk/v4/go/digitalocean"
	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"pressroom.dev/infra/kube"
)

// Registry kinds (the same words as the stack config).
const (
	RegistryNone         = "none"
	RegistryDigitalOcean = "digitalocean"
	RegistryExternal     = "external"
)

// PullSecret is the imagePullSecret created for a registry.
const PullSecret = "registry-credentials"

// ImagesArgs configures the images.
type ImagesArgs struct {
	Namespace pulumi.StringInput
	Services  []string          // every service that needs an image
	Prebuilt  map[string]string // service → reference pinned by digest; skips the build

	RegistryKind     string // none | digitalocean | external
	RegistryServer   string // external: e.g. registry.example.com/team
	RegistryUsername string // external
	RegistryPassword pulumi.StringInput
	RegistryName     string // digitalocean: the account's registry (default pressroom), which must exist
	RegistryRegion   string // digitalocean: named in the message when the registry is missing

	Context string // repo root, the build context (default "..": the program runs in infra/)
	Tag     string // tag pushed next to the digest (default "build")
}

// Images is the component.
type Images struct {
	pulumi.ResourceState

	// Refs maps each service to its image reference (always by digest).
	Refs pulumi.StringMapOutput `pulumi:"refs"`
	// PullSecretName is PullSecret, or "" when no registry is configured.
	PullSecretName string
	refs           map[string]pulumi.StringOutput
}

// Ref is one service's image reference.
func (i *Images) Ref(svc string) pulumi.StringOutput { return i.refs[svc] }

var digestRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}$`)

// ValidateRef checks that a reference is pinned by digest and not :latest.
func ValidateRef(svc, ref string) error {
	if !digestRE.MatchString(ref) {
		return fmt.Errorf("image for %s %q must be pinned by digest: name[:tag]@sha256:<64 hex>", svc, ref)
	}
	if name := strings.SplitN(ref, "@", 2)[0]; strings.HasSuffix(name, ":latest") {
		return fmt.Errorf("image for %s %q uses :latest; use a versioned tag or none", svc, ref)
	}
	return nil
}

// NewImages builds what is not prebuilt and returns every reference.
func NewImages(ctx *pulumi.Context, name string, args *ImagesArgs, opts ...pulumi.ResourceOption) (*Images, error) {
	if args == nil || args.Namespace == nil {
		return nil, fmt.Errorf("images: Namespace is required")
	}
	a := *args
	if a.RegistryKind == "" {
		a.RegistryKind = RegistryNone
	}
	if a.Context == "" {
		a.Context = ".."
	}
	if a.Tag == "" {
		a.Tag = "build"
	}
	if a.RegistryName == "" {
		a.RegistryName = "pressroom"
	}
	var toBuild []string
	for _, svc := range a.Services {
		if ref, ok := a.Prebuilt[svc]; ok && ref != "" {
			if err := ValidateRef(svc, ref); err != nil {
				return nil, fmt.Errorf("images: %w", err)
			}
			continue
		}
		toBuild = append(toBuild, svc)
	}
	switch a.RegistryKind {
	case RegistryNone:
		if len(toBuild) > 0 {
			return nil, fmt.Errorf("images: %v have no prebuilt image and the registry is \"none\": set images.<service> to a reference pinned by digest, or registry.kind to digitalocean or external", toBuild)
		}
	case RegistryDigitalOcean:
	case RegistryExternal:
		if a.RegistryServer == "" || a.RegistryUsername == "" || a.RegistryPassword == nil {
			return nil, fmt.Errorf("images: an external registry needs server, username and the registryPassword secret")
		}
	default:
		return nil, fmt.Errorf("images: registry kind %q: use none, digitalocean or external", a.RegistryKind)
	}

	im := &Images{refs: map[string]pulumi.StringOutput{}}
	if err := ctx.RegisterComponentResource("pressroom:images:Images", name, im, opts...); err != nil {
		return nil, err
	}
	child := kube.Child(im)

	var (
		server, repoPrefix pulumi.StringOutput
		user, pass         pulumi.StringOutput
		pullConfig         pulumi.StringOutput
		haveRegistry       = a.RegistryKind != RegistryNone
	)
	switch a.RegistryKind {
	case RegistryDigitalOcean:
		// A DigitalOcean account holds one registry (basic and starter
		// tiers), shared by every stack: looked up, never created, so no
		// stack's destroy deletes the images of the others.
		reg, err := digitalocean.LookupContainerRegistry(ctx, &digitalocean.LookupContainerRegistryArgs{Name: a.RegistryName}, pulumi.Parent(im))
		if err != nil {
			return nil, fmt.Errorf("images: the DigitalOcean container registry %q: %w; an account has one registry, shared by every stack: create it once with `doctl registry create %s --subscription-tier basic --region %s` (or name the existing one in registry.name)", a.RegistryName, err, a.RegistryName, a.RegistryRegion)
		}
		if reg.Endpoint == "" || reg.ServerUrl == "" {
			return nil, fmt.Errorf("images: the DigitalOcean container registry %q has no endpoint", a.RegistryName)
		}
		push, err := digitalocean.NewContainerRegistryDockerCredentials(ctx, "registry-push", &digitalocean.ContainerRegistryDockerCredentialsArgs{
			RegistryName: pulumi.String(reg.Name), Write: pulumi.Bool(true),
		}, child...)
		if err != nil {
			return nil, fmt.Errorf("registry push credentials: %w", err)
		}
		pull, err := digitalocean.NewContainerRegistryDockerCredentials(ctx, "registry-pull", &digitalocean.ContainerRegistryDockerCredentialsArgs{
			RegistryName: pulumi.String(reg.Name), Write: pulumi.Bool(false),
		}, child...)
		if err != nil {
			return nil, fmt.Errorf("registry pull credentials: %w", err)
		}
		server = pulumi.String(reg.ServerUrl).ToStringOutput()
		repoPrefix = pulumi.String(reg.Endpoint).ToStringOutput()
		creds := push.DockerCredentials.ApplyT(func(c string) ([]string, error) {
			u, p, err := loginFrom(c, reg.ServerUrl)
			return []string{u, p}, err
		}).(pulumi.StringArrayOutput)
		user = creds.Index(pulumi.Int(0))
		pass = pulumi.ToSecret(creds.Index(pulumi.Int(1))).(pulumi.StringOutput)
		pullConfig = pull.DockerCredentials
	case RegistryExternal:
		server = pulumi.String(strings.SplitN(a.RegistryServer, "/", 2)[0]).ToStringOutput()
		repoPrefix = pulumi.String(strings.TrimSuffix(a.RegistryServer, "/")).ToStringOutput()
		user = pulumi.String(a.RegistryUsername).ToStringOutput()
		pass = pulumi.ToSecret(a.RegistryPassword).(pulumi.StringOutput)
		pullConfig = pulumi.All(server, pass).ApplyT(func(v []any) (string, error) {
			return dockerConfig(v[0].(string), a.RegistryUsername, v[1].(string))
		}).(pulumi.StringOutput)
	}

	for _, svc := range a.Services {
		if ref := a.Prebuilt[svc]; ref != "" {
			im.refs[svc] = pulumi.String(ref).ToStringOutput()
			continue
		}
		img, err := docker.NewImage(ctx, "image-"+svc, &docker.ImageArgs{
			ImageName: pulumi.Sprintf("%s/%s:%s", repoPrefix, svc, a.Tag),
			Build: &docker.DockerBuildArgs{
				Context:    pulumi.String(a.Context),
				Dockerfile: pulumi.String(filepath.Join(a.Context, "services", svc, "Dockerfile")),
				Platform:   pulumi.String("linux/amd64"),
			},
			Registry: &docker.RegistryArgs{Server: server, Username: user, Password: pass},
		}, child...)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", svc, err)
		}
		im.refs[svc] = img.RepoDigest
	}

	if haveRegistry {
		if _, err := corev1.NewSecret(ctx, "secret-"+PullSecret, &corev1.SecretArgs{
			Metadata: kube.Meta(a.Namespace, PullSecret, "secret", nil),
			Type:     pulumi.String("kubernetes.io/dockerconfigjson"),
			Data: pulumi.StringMap{".dockerconfigjson": pulumi.ToSecret(pullConfig.ApplyT(func(s string) string {
				return base64.StdEncoding.EncodeToString([]byte(s))
			})).(pulumi.StringOutput)},
		}, append(child, pulumi.AdditionalSecretOutputs([]string{"data"}))...); err != nil {
			return nil, fmt.Errorf("pull secret: %w", err)
		}
		im.PullSecretName = PullSecret
	}

	m := pulumi.StringMap{}
	keys := make([]string, 0, len(im.refs))
	for k := range im.refs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		m[k] = im.refs[k]
	}
	im.Refs = m.ToStringMapOutput()
	if err := ctx.RegisterResourceOutputs(im, pulumi.Map{"refs": im.Refs}); err != nil {
		return nil, err
	}
	return im, nil
}

// loginFrom extracts user and password for server from a docker config JSON.
func loginFrom(config, server string) (string, string, error) {
	var c struct {
		Auths map[string]struct {
			Auth string `json:"auth"`
		} `json:"auths"`
	}
	if err := json.Unmarshal([]byte(config), &c); err != nil {
		return "", "", fmt.Errorf("registry credentials are not a docker config: %w", err)
	}
	entry, ok := c.Auths[server]
	if !ok {
		return "", "", fmt.Errorf("registry credentials have no entry for %s", server)
	}
	raw, err := base64.StdEncoding.DecodeString(entry.Auth)
	if err != nil {
		return "", "", fmt.Errorf("registry credentials: %w", err)
	}
	u, p, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", "", fmt.Errorf("registry credentials: auth is not user:password")
	}
	return u, p, nil
}

// dockerConfig is the .dockerconfigjson for one registry login.
func dockerConfig(server, user, pass string) (string, error) {
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	b, err := json.Marshal(map[string]any{"auths": map[string]any{server: map[string]string{
		"username": user, "password": pass, "auth": auth,
	}}})
	return string(b), err
}

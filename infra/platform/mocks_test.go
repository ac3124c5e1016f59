package platform

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi-random/sdk/v4/go/random"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"pressroom.dev/stacks"
)

// rec is one registered resource as the engine would see it.
type rec struct {
	Type, Name, URN, Parent, Provider string
	Custom, Protect                   bool
	Deps                              []string
	In                                map[string]any // inputs with secrets unwrapped
}

// obj is a Kubernetes object's inputs.
func (r rec) kind() string {
	if !strings.HasPrefix(r.Type, "kubernetes:") {
		return ""
	}
	parts := strings.Split(r.Type, ":")
	return parts[len(parts)-1]
}

func (r rec) metaName() string {
	m, _ := r.In["metadata"].(map[string]any)
	s, _ := m["name"].(string)
	return s
}

type graph struct {
	recs    []rec
	secrets map[string]string // secret value → where it came from
	outputs map[string]any
}

func (g *graph) all(kind string) []rec {
	var out []rec
	for _, r := range g.recs {
		if r.kind() == kind {
			out = append(out, r)
		}
	}
	return out
}

func (g *graph) one(t *testing.T, kind, name string) rec {
	t.Helper()
	for _, r := range g.all(kind) {
		if r.metaName() == name {
			return r
		}
	}
	t.Fatalf("no %s named %q in the graph", kind, name)
	return rec{}
}

func (g *graph) byType(typ string) []rec {
	var out []rec
	for _, r := range g.recs {
		if r.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

func (g *graph) byURN(urn string) (rec, bool) {
	for _, r := range g.recs {
		if r.URN == urn {
			return r, true
		}
	}
	return rec{}, false
}

// mocks fill in what providers compute: real RSA keys for tls, random
// passwords, registry endpoints and image digests.
type mocks struct {
	stack, project string
	mu             sync.Mutex
	g              *graph
}

func plain(v resource.PropertyValue, secret func(string)) any {
	switch {
	case v.IsSecret():
		inner := plain(v.SecretValue().Element, secret)
		if s, ok := inner.(string); ok && s != "" {
			secret(s)
		}
		return inner
	case v.IsOutput():
		if !v.OutputValue().Known {
			return nil
		}
		inner := plain(v.OutputValue().Element, secret)
		if s, ok := inner.(string); ok && v.OutputValue().Secret && s != "" {
			secret(s)
		}
		return inner
	case v.IsComputed():
		return nil
	case v.IsObject():
		m := map[string]any{}
		for k, e := range v.ObjectValue() {
			m[string(k)] = plain(e, secret)
		}
		return m
	case v.IsArray():
		var a []any
		for _, e := range v.ArrayValue() {
			a = append(a, plain(e, secret))
		}
		return a
	case v.IsString():
		return v.StringValue()
	case v.IsNumber():
		return v.NumberValue()
	case v.IsBool():
		return v.BoolValue()
	case v.IsResourceReference():
		return string(v.ResourceReferenceValue().URN)
	}
	return nil
}

func (m *mocks) urn(parent, typ, name string) string {
	parentType := tokens.Type("")
	if p := resource.URN(parent); p != "" && p.QualifiedType() != resource.RootStackType {
		parentType = p.QualifiedType()
	}
	return string(resource.NewURN(tokens.QName(m.stack), tokens.PackageName(m.project), parentType, tokens.Type(typ), name))
}

func (m *mocks) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	addSecret := func(s string) { m.g.secrets[s] = args.TypeToken + " " + args.Name }
	in := map[string]any{}
	for k, v := range args.Inputs {
		in[string(k)] = plain(v, addSecret)
	}
	r := rec{Type: args.TypeToken, Name: args.Name, Provider: args.Provider, Custom: args.Custom, In: in}
	if rpc := args.RegisterRPC; rpc != nil {
		r.Parent = rpc.GetParent()
		r.Deps = rpc.GetDependencies()
		r.Protect = rpc.GetProtect()
		r.URN = m.urn(rpc.GetParent(), args.TypeToken, args.Name)
	}
	out := args.Inputs.Copy()
	secret := func(k, v string) {
		out[resource.PropertyKey(k)] = resource.MakeSecret(resource.NewProperty(v))
		m.g.secrets[v] = args.TypeToken + " " + args.Name
	}
	switch args.TypeToken {
	case "random:index/randomPassword:RandomPassword":
		// The same name and keepers give the same password, as the provider
		// keeps one in state: two runs differ only where the inputs differ.
		keepers, _ := json.Marshal(in["keepers"])
		round, _ := mockPasswordRound.Load(args.Name)
		sum := sha256.Sum256([]byte(fmt.Sprintf("password %s %s %v", args.Name, keepers, round)))
		secret("result", hex.EncodeToString(sum[:16]))
	case "tls:index/privateKey:PrivateKey":
		key, err := mockKey(args.Name)
		if err != nil {
			return "", nil, err
		}
		der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
		priv := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
		secret("privateKeyPem", priv)
		out["publicKeyPem"] = resource.NewProperty(string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
	case "docker:index/image:Image":
		name := in["imageName"].(string)
		sum := sha256.Sum256([]byte(name))
		repo := name[:strings.LastIndex(name, ":")]
		out["repoDigest"] = resource.NewProperty(repo + "@sha256:" + hex.EncodeToString(sum[:]))
	case "digitalocean:index/containerRegistry:ContainerRegistry":
		out["serverUrl"] = resource.NewProperty("registry.digitalocean.com")
		out["endpoint"] = resource.NewProperty("registry.digitalocean.com/" + in["name"].(string))
	case "digitalocean:index/containerRegistryDockerCredentials:ContainerRegistryDockerCredentials":
		pass := "do-token-" + args.Name
		auth := base64.StdEncoding.EncodeToString([]byte(pass + ":" + pass))
		cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{"registry.digitalocean.com": map[string]string{"auth": auth}}})
		secret("dockerCredentials", string(cfg))
		m.g.secrets[pass] = "registry token"
	}
	if args.Custom {
		m.g.recs = append(m.g.recs, r)
	}
	return args.Name + "-id", out, nil
}

// mockPasswordRound, set for a password's name, makes the provider produce
// another value for it, as a replaced RandomPassword does.
var mockPasswordRound sync.Map

// mockKeys are the RSA keys of tls.PrivateKey by resource name: a key is
// generated once, like the provider's in state, so two runs agree on it.
var mockKeys sync.Map

func mockKey(name string) (*rsa.PrivateKey, error) {
	if k, ok := mockKeys.Load(name); ok {
		return k.(*rsa.PrivateKey), nil
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	k, _ := mockKeys.LoadOrStore(name, key)
	return k.(*rsa.PrivateKey), nil
}

// Call answers the registry lookup as DigitalOcean does for the one
// registry of the account ("pressroom"), and refuses any other name.
func (m *mocks) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	if args.Token == "digitalocean:index/getContainerRegistry:getContainerRegistry" {
		if name := args.Args["name"].StringValue(); name != "pressroom" {
			return nil, fmt.Errorf("404 Not Found: container registry %q", name)
		}
		return resource.NewPropertyMapFromMap(map[string]any{"name": "pressroom",
			"serverUrl": "registry.digitalocean.com", "endpoint": "registry.digitalocean.com/pressroom"}), nil
	}
	return args.Args, nil
}

// stagingArgs is a complete staging stack: existing cluster, prebuilt images.
func stagingArgs() *PlatformArgs {
	imgs := map[string]string{}
	for _, s := range stacks.Services {
		sum := sha256.Sum256([]byte(s))
		imgs[s] = fmt.Sprintf("registry.example.com/pressroom/%s:v1@sha256:%s", s, hex.EncodeToString(sum[:]))
	}
	return &PlatformArgs{
		Domain: "example.com", Nodes: 1,
		ACMEEmail: "ops@example.com", Issuer: "staging", InstallCertManager: true,
		App: AppSettings{
			GoogleClientID: "client-id.apps.example.com", GoogleLoginEnabled: true,
			EmailFrom: "no-reply@example.com", AdminEmails: []string{"admin@example.com"}, NotifyEmail: "ops@example.com",
		},
		GoogleClientSecret: pulumi.ToSecret(pulumi.String("google-secret-value-1234")).(pulumi.StringOutput),
		ResendAPIKey:       pulumi.ToSecret(pulumi.String("re_resend-secret-value-5678")).(pulumi.StringOutput),
		Images:             imgs,
		Registry:           RegistrySettings{Kind: "none"},
		JWTKeyGeneration:   1,
	}
}

// prodArgs is the prod stack: three nodes, prod issuer, images built and
// pushed to a DigitalOcean registry, protected state.
func prodArgs() *PlatformArgs {
	a := stagingArgs()
	a.Nodes = 3
	a.Issuer = "prod"
	a.Images = nil
	a.Registry = RegistrySettings{Kind: "digitalocean", Region: "fra1"}
	a.Protect = true
	return a
}

// run builds the platform under mocks on a given provider and a readiness
// gate, and returns the graph.
func run(t *testing.T, stack string, args *PlatformArgs) *graph {
	t.Helper()
	g, err := tryRun(stack, args)
	if err != nil {
		t.Fatalf("platform under mocks: %v", err)
	}
	return g
}

func tryRun(stack string, args *PlatformArgs) (*graph, error) {
	g := &graph{secrets: map[string]string{}}
	m := &mocks{stack: stack, project: "pressroom", g: g}
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		prov, err := kubernetes.NewProvider(ctx, "k8s", &kubernetes.ProviderArgs{})
		if err != nil {
			return err
		}
		gate, err := random.NewRandomId(ctx, "cluster-ready", &random.RandomIdArgs{ByteLength: pulumi.Int(4)})
		if err != nil {
			return err
		}
		a := *args
		a.DependsOn = []pulumi.Resource{gate}
		p, err := NewPlatform(ctx, "platform", &a, pulumi.Provider(prov))
		if err != nil {
			return err
		}
		pulumi.All(p.URL, p.Images, p.JWTKeyIDs, p.Issuer).ApplyT(func(v []any) error {
			m.mu.Lock()
			defer m.mu.Unlock()
			g.outputs = map[string]any{"url": v[0], "images": v[1], "jwtKeyIds": v[2], "issuer": v[3]}
			return nil
		})
		return nil
	}, pulumi.WithMocks("pressroom", stack, m))
	return g, err
}

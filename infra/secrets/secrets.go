// Package secrets generates every credential of the platform — the JWT key
// pair (with rotation), the Postgres superuser and per-database passwords,
// the Redis password — and stores them, with the app secrets from stack
// config, in Kubernetes Secrets. Nothing secret leaves a Secret: workloads
// read these keys through secretKeyRef or a read-only volume.
package secrets

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/url"
	"strings"

	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	"github.com/pulumi/pulumi-random/sdk/v4/go/random"
	"github.com/pulumi/pulumi-tls/sdk/v5/go/tls"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"pressroom.dev/infra/kube"
	"pressroom.dev/stacks"
)

// Secret names and keys (the workloads' contract).
const (
	JWTKeys         = "jwt-keys"
	JWTPrivateKey   = "jwt_private.pem" // auth only
	JWTPublicKey    = "jwt_public.pem"  // current + previous public keys, concatenated PEM
	Datastores      = "datastore-credentials"
	PostgresKey     = "postgres-password"
	RedisKey        = "redis-password"
	AppSecrets      = "app-secrets"
	GoogleSecretKey = "GOOGLE_CLIENT_SECRET"
	ResendKey       = "RESEND_API_KEY"
	DatabaseURLKey  = "DATABASE_URL"
)

// DatabaseName is the database of a service.
func DatabaseName(svc string) string { return svc + "_db" }

// PasswordKey is the key of a database role's password in the Datastores Secret.
func PasswordKey(svc string) string { return svc + "-db-password" }

// DatabaseSecret is the Secret holding a service's DATABASE_URL.
func DatabaseSecret(svc string) string { return svc + "-database" }

// SecretsArgs configures the generated and supplied secrets.
type SecretsArgs struct {
	Namespace pulumi.StringInput
	// JWTKeyGeneration (>= 1): bump it to sign with a new key. The
	// verification set holds the next generation's public key ahead of use,
	// so every verifier already trusts the key auth signs with after a bump,
	// whichever pods roll first; the previous generation's key stays in the
	// set until the next bump (the grace period is one generation).
	JWTKeyGeneration   int
	GoogleClientSecret pulumi.StringInput // may be a secret of ""
	ResendAPIKey       pulumi.StringInput // may be a secret of ""
	PostgresHost       string             // default "postgres"
	// Protect the generated passwords: the data directories were initialised
	// with them, so a replaced password locks the services out (prod).
	Protect bool
}

// Secrets is the component.
type Secrets struct {
	pulumi.ResourceState

	JWTKeyIDs pulumi.StringArrayOutput `pulumi:"jwtKeyIds"` // current, previous (from generation 2), next
	// Untagged on purpose: tagged outputs are resolved from the engine's
	// response, and two fields with one tag would leave one never resolved.
	PostgresPassword pulumi.StringOutput
	RedisPassword    pulumi.StringOutput
	// Resources are the Secret objects, for workloads that must wait on them.
	Resources []pulumi.Resource
	// Checksums has a digest of every key of every Secret here, by
	// "<secret>/<key>" (ChecksumKey): an HMAC-SHA256 under a generated
	// key of this stack, so a digest on a pod template (readable by anyone
	// who may read Deployments) tells nothing about a low-entropy value.
	Checksums map[string]pulumi.StringOutput
}

// NewSecrets creates the credentials and their Secrets.
func NewSecrets(ctx *pulumi.Context, name string, args *SecretsArgs, opts ...pulumi.ResourceOption) (*Secrets, error) {
	if args == nil || args.Namespace == nil {
		return nil, fmt.Errorf("secrets: Namespace is required")
	}
	if args.JWTKeyGeneration < 1 {
		return nil, fmt.Errorf("secrets: JWTKeyGeneration is %d; it starts at 1 and only ever increases", args.JWTKeyGeneration)
	}
	host := args.PostgresHost
	if host == "" {
		host = "postgres"
	}
	s := &Secrets{}
	if err := ctx.RegisterComponentResource("pressroom:secrets:Secrets", name, s, opts...); err != nil {
		return nil, err
	}
	child := kube.Child(s)
	ns := args.Namespace

	password := func(n string) (pulumi.StringOutput, error) {
		p, err := random.NewRandomPassword(ctx, n, &random.RandomPasswordArgs{
			Length: pulumi.Int(32), Special: pulumi.Bool(false),
		}, append(child, pulumi.Protect(args.Protect))...)
		if err != nil {
			return pulumi.StringOutput{}, fmt.Errorf("password %s: %w", n, err)
		}
		return p.Result, nil
	}

	// Not protected: a new key only rolls every pod once.
	ck, err := random.NewRandomPassword(ctx, "secret-checksums", &random.RandomPasswordArgs{
		Length: pulumi.Int(32), Special: pulumi.Bool(false),
	}, child...)
	if err != nil {
		return nil, fmt.Errorf("password secret-checksums: %w", err)
	}
	checksumKey := ck.Result
	// Checksums are bound to their Secret (newSecret), so a workload whose
	// template carries one is updated only after the Secret: its new pods
	// read the new values.
	s.Checksums = map[string]pulumi.StringOutput{}
	sums := map[string]map[string]pulumi.StringOutput{}
	sum := func(secret, key string, v pulumi.StringInput) {
		if sums[secret] == nil {
			sums[secret] = map[string]pulumi.StringOutput{}
		}
		sums[secret][key] = pulumi.Unsecret(pulumi.All(checksumKey, v).ApplyT(func(kv []any) string {
			m := hmac.New(sha256.New, []byte(kv[0].(string)))
			m.Write([]byte(secret + "/" + key + "\x00" + kv[1].(string)))
			return hex.EncodeToString(m.Sum(nil))
		})).(pulumi.StringOutput)
	}
	newSecret := func(ctx *pulumi.Context, ns pulumi.StringInput, name string, data pulumi.StringMap, opts []pulumi.ResourceOption) (*corev1.Secret, error) {
		sec, err := newSecret(ctx, ns, name, data, opts)
		if err != nil {
			return nil, err
		}
		for key, v := range sums[name] {
			s.Checksums[ChecksumKey(name, key)] = pulumi.All(sec.Metadata.Name(), v).ApplyT(func(a []any) string {
				return a[1].(string)
			}).(pulumi.StringOutput)
		}
		return sec, nil
	}

	pg, err := password("postgres-superuser")
	if err != nil {
		return nil, err
	}
	redis, err := password("redis")
	if err != nil {
		return nil, err
	}
	data := pulumi.StringMap{PostgresKey: b64(pg), RedisKey: b64(redis)}
	sum(Datastores, PostgresKey, pg)
	sum(Datastores, RedisKey, redis)
	dbPasswords := map[string]pulumi.StringOutput{}
	for _, svc := range stacks.Databases {
		p, err := password("db-" + svc)
		if err != nil {
			return nil, err
		}
		dbPasswords[svc] = p
		data[PasswordKey(svc)] = b64(p)
		sum(Datastores, PasswordKey(svc), p)
	}
	creds, err := newSecret(ctx, ns, Datastores, data, child)
	if err != nil {
		return nil, err
	}
	s.Resources = append(s.Resources, creds)

	for _, svc := range stacks.Databases {
		u := dbPasswords[svc].ApplyT(func(pw string) string {
			return (&url.URL{
				Scheme: "postgres", User: url.UserPassword(svc, pw), Host: host + ":5432",
				Path: "/" + DatabaseName(svc), RawQuery: "sslmode=disable",
			}).String()
		}).(pulumi.StringOutput)
		sum(DatabaseSecret(svc), DatabaseURLKey, u)
		sec, err := newSecret(ctx, ns, DatabaseSecret(svc), pulumi.StringMap{DatabaseURLKey: b64(u)}, child)
		if err != nil {
			return nil, err
		}
		s.Resources = append(s.Resources, sec)
	}

	// JWT keys: one resource per generation, named by it. Generation g
	// signs; g-1 still verifies (tokens issued before the bump), and g+1
	// verifies already: a bump to g+1 then signs with a key that every
	// verifier, rolled or not, has had for a generation. A bump creates
	// g+2 and removes g-1.
	gens := []int{args.JWTKeyGeneration}
	if args.JWTKeyGeneration > 1 {
		gens = append(gens, args.JWTKeyGeneration-1)
	}
	gens = append(gens, args.JWTKeyGeneration+1)
	var private pulumi.StringOutput
	publics := pulumi.StringArray{}
	for i, g := range gens {
		k, err := tls.NewPrivateKey(ctx, fmt.Sprintf("jwt-key-g%d", g), &tls.PrivateKeyArgs{
			Algorithm: pulumi.String("RSA"), RsaBits: pulumi.Int(2048),
		}, child...)
		if err != nil {
			return nil, fmt.Errorf("jwt key generation %d: %w", g, err)
		}
		if i == 0 {
			private = k.PrivateKeyPem
		}
		publics = append(publics, k.PublicKeyPem)
	}
	publicSet := publics.ToStringArrayOutput().ApplyT(func(ps []string) string {
		var b strings.Builder
		for _, p := range ps {
			b.WriteString(strings.TrimSpace(p))
			b.WriteString("\n")
		}
		return b.String()
	}).(pulumi.StringOutput)
	sum(JWTKeys, JWTPrivateKey, private)
	sum(JWTKeys, JWTPublicKey, publicSet)
	jwt, err := newSecret(ctx, ns, JWTKeys, pulumi.StringMap{
		JWTPrivateKey: b64(private),
		JWTPublicKey:  b64(publicSet),
	}, child)
	if err != nil {
		return nil, err
	}
	s.Resources = append(s.Resources, jwt)
	s.JWTKeyIDs = publics.ToStringArrayOutput().ApplyT(func(ps []string) ([]string, error) {
		ids := make([]string, 0, len(ps))
		for _, p := range ps {
			id, err := KeyID(p)
			if err != nil {
				return nil, err
			}
			ids = append(ids, id)
		}
		return ids, nil
	}).(pulumi.StringArrayOutput)

	sum(AppSecrets, GoogleSecretKey, orEmpty(args.GoogleClientSecret))
	sum(AppSecrets, ResendKey, orEmpty(args.ResendAPIKey))
	app, err := newSecret(ctx, ns, AppSecrets, pulumi.StringMap{
		GoogleSecretKey: b64(orEmpty(args.GoogleClientSecret)),
		ResendKey:       b64(orEmpty(args.ResendAPIKey)),
	}, child)
	if err != nil {
		return nil, err
	}
	s.Resources = append(s.Resources, app)
	s.PostgresPassword = pg
	s.RedisPassword = redis

	if err := ctx.RegisterResourceOutputs(s, pulumi.Map{"jwtKeyIds": s.JWTKeyIDs}); err != nil {
		return nil, err
	}
	return s, nil
}

func newSecret(ctx *pulumi.Context, ns pulumi.StringInput, name string, data pulumi.StringMap, opts []pulumi.ResourceOption) (*corev1.Secret, error) {
	sec, err := corev1.NewSecret(ctx, "secret-"+name, &corev1.SecretArgs{
		Metadata: kube.Meta(ns, name, "secret", nil),
		Type:     pulumi.String("Opaque"),
		Data:     data,
	}, append(opts, pulumi.AdditionalSecretOutputs([]string{"data", "stringData"}))...)
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", name, err)
	}
	return sec, nil
}

// b64 encodes for Secret.data (not stringData: data round-trips without a
// perpetual diff). Secretness carries over from the input (random, tls and
// config secrets are secret outputs), and the Secret's data is marked secret.
func b64(v pulumi.StringInput) pulumi.StringOutput {
	return v.ToStringOutput().ApplyT(func(s string) string {
		return base64.StdEncoding.EncodeToString([]byte(s))
	}).(pulumi.StringOutput)
}

func orEmpty(v pulumi.StringInput) pulumi.StringInput {
	if v == nil {
		return pulumi.String("")
	}
	return v
}

// KeyID is the kid of a public key, computed as the kit does:
// base64url(SHA-256(DER PKIX))[:16].
func KeyID(publicPEM string) (string, error) {
	block, _ := pem.Decode([]byte(publicPEM))
	if block == nil {
		return "", fmt.Errorf("jwt public key is not PEM")
	}
	if _, err := x509.ParsePKIXPublicKey(block.Bytes); err != nil {
		return "", fmt.Errorf("jwt public key: %w", err)
	}
	sum := sha256.Sum256(block.Bytes)
	return base64.RawURLEncoding.EncodeToString(sum[:])[:16], nil
}

// ChecksumKey names one Secret key in Checksums.
func ChecksumKey(secret, key string) string { return secret + "/" + key }

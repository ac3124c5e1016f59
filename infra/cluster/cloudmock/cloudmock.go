// Package cloudmock is a pulumi.MockResourceMonitor for the cloud layer that
// fills computed outputs with real material: tls keys, certificates and CSRs
// are generated and signed with Go's crypto, so tests can verify the chain.
// Every registration is recorded for graph assertions.
package cloudmock

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Resource is one recorded registration.
type Resource struct {
	Type    string
	Name    string
	Inputs  resource.PropertyMap
	Outputs resource.PropertyMap
	Protect bool
	// DeleteBeforeReplace: a replacement deletes the old resource first.
	DeleteBeforeReplace bool
	IgnoreChanges       []string
	Parent              string
	Provider            string
	Deps                []string // URNs of explicit dependencies
	Custom              bool
}

// Mocks records resources and answers with realistic outputs.
type Mocks struct {
	mu        sync.Mutex
	resources []Resource
	droplets  int
	// Account is the cloud accounts' state shared by stacks; nil = an
	// empty account of this run's own.
	Account *Account
	// Fallback handles types this package does not know (e.g. the platform's); may be nil.
	Fallback pulumi.MockResourceMonitor
}

// Account is what the DigitalOcean and Cloudflare accounts hold across
// stacks, and what they refuse.
type Account struct {
	mu sync.Mutex
	// Registries: name → region. DigitalOcean's basic and starter tiers
	// allow one registry per account.
	Registries map[string]string
	// Records are the Cloudflare zones' DNS records.
	Records []DNSRecord
}

// DNSRecord is one Cloudflare record.
type DNSRecord struct {
	Zone, Name, Type, Content string
}

func (m *Mocks) account() *Account {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Account == nil {
		m.Account = &Account{}
	}
	return m.Account
}

// createRegistry refuses a second registry as DigitalOcean does.
func (a *Account) createRegistry(name, region string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for existing := range a.Registries {
		return fmt.Errorf("422 Unprocessable Entity: registry %q already exists in this account; the basic and starter tiers allow one registry (asked for %q)", existing, name)
	}
	if a.Registries == nil {
		a.Registries = map[string]string{}
	}
	a.Registries[name] = region
	return nil
}

// createRecord behaves as Cloudflare's API and the Terraform provider's
// allow_overwrite: several A records may share a name (round robin), but
// an identical one is refused (81058), and so is an A next to a CNAME
// (81053). With allowOverwrite the provider takes over the one existing
// record of that name and type, and fails if there is not exactly one.
func (a *Account) createRecord(r DNSRecord, allowOverwrite bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var conflict error
	for _, e := range a.Records {
		if e.Zone != r.Zone || e.Name != r.Name {
			continue
		}
		switch {
		case e.Type == r.Type && e.Content == r.Content:
			conflict = fmt.Errorf("81058: An identical record already exists")
		case e.Type == "CNAME" || r.Type == "CNAME":
			conflict = fmt.Errorf("81053: An A, AAAA, or CNAME record with that host already exists")
		}
	}
	if conflict == nil {
		a.Records = append(a.Records, r)
		return nil
	}
	if !allowOverwrite {
		return conflict
	}
	var same []int
	for i, e := range a.Records {
		if e.Zone == r.Zone && e.Name == r.Name && e.Type == r.Type {
			same = append(same, i)
		}
	}
	if len(same) != 1 {
		return fmt.Errorf("%v; attempted to override existing record however didn't find an exact match", conflict)
	}
	a.Records[same[0]] = r
	return nil
}

// RecordsNamed lists the zone's records of a name.
func (a *Account) RecordsNamed(name string) []DNSRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []DNSRecord
	for _, r := range a.Records {
		if r.Name == name {
			out = append(out, r)
		}
	}
	return out
}

var _ pulumi.MockResourceMonitor = (*Mocks)(nil)

// Resources returns a copy of everything registered so far.
func (m *Mocks) Resources() []Resource {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Resource(nil), m.resources...)
}

// ByType returns the custom resources of a type token.
func (m *Mocks) ByType(token string) []Resource {
	var out []Resource
	for _, r := range m.Resources() {
		if r.Type == token {
			out = append(out, r)
		}
	}
	return out
}

// Count returns how many resources of each type were registered.
func (m *Mocks) Count() map[string]int {
	out := map[string]int{}
	for _, r := range m.Resources() {
		out[r.Type]++
	}
	return out
}

// Call answers provider functions: the registry lookup as DigitalOcean does.
func (m *Mocks) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	if args.Token == "digitalocean:index/getContainerRegistry:getContainerRegistry" {
		a := m.account()
		name := str(args.Args, "name")
		a.mu.Lock()
		region, ok := a.Registries[name]
		a.mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("404 Not Found: container registry %q", name)
		}
		return resource.NewPropertyMapFromMap(map[string]any{
			"id": name, "name": name, "region": region, "subscriptionTierSlug": "basic",
			"serverUrl": "registry.digitalocean.com", "endpoint": "registry.digitalocean.com/" + name,
		}), nil
	}
	if m.Fallback != nil {
		return m.Fallback.Call(args)
	}
	return args.Args, nil
}

// NewResource computes outputs and records the registration.
func (m *Mocks) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	in := args.Inputs
	out := in.Copy()
	id := args.Name + "-id"
	var err error
	set := func(k string, v any) { out[resource.PropertyKey(k)] = resource.NewPropertyValue(v) }
	switch args.TypeToken {
	case "tls:index/privateKey:PrivateKey":
		err = privateKey(in, set)
	case "tls:index/selfSignedCert:SelfSignedCert":
		err = selfSigned(in, set)
	case "tls:index/certRequest:CertRequest":
		err = certRequest(in, set)
	case "tls:index/locallySignedCert:LocallySignedCert":
		err = locallySigned(in, set)
	case "random:index/randomPassword:RandomPassword":
		n := 16
		if v, ok := in["length"]; ok && v.IsNumber() {
			n = int(v.NumberValue())
		}
		set("result", randomString(n))
	case "digitalocean:index/droplet:Droplet":
		// Numbered by the "-node-N" suffix: droplets register concurrently.
		var n int
		if _, err := fmt.Sscanf(args.Name[strings.LastIndex(args.Name, "-")+1:], "%d", &n); err != nil || n == 0 {
			m.mu.Lock()
			m.droplets++
			n = 100 + m.droplets
			m.mu.Unlock()
		}
		id = fmt.Sprint(400000000 + n)
		set("ipv4Address", fmt.Sprintf("203.0.113.%d", 10+n))
		set("ipv4AddressPrivate", fmt.Sprintf("10.110.0.%d", 1+n))
		set("dropletUrn", "do:droplet:"+id)
		set("status", "active")
	case "digitalocean:index/reservedIp:ReservedIp":
		set("ipAddress", "198.51.100.7")
		set("reservedIpUrn", "do:reservedip:198.51.100.7")
		id = "198.51.100.7"
	case "digitalocean:index/volume:Volume":
		id = "vol-" + args.Name
		set("volumeUrn", "do:volume:"+id)
	case "digitalocean:index/vpc:Vpc":
		id = "vpc-" + args.Name
		set("vpcUrn", "do:vpc:"+id)
	case "digitalocean:index/sshKey:SshKey":
		set("fingerprint", fingerprint(in["publicKey"].StringValue()))
	case "digitalocean:index/project:Project":
		id = "project-" + args.Name
	case "digitalocean:index/containerRegistry:ContainerRegistry":
		err = m.account().createRegistry(str(in, "name"), str(in, "region"))
		set("serverUrl", "registry.digitalocean.com")
		set("endpoint", "registry.digitalocean.com/"+str(in, "name"))
	case "cloudflare:index/record:Record":
		ow := in["allowOverwrite"]
		err = m.account().createRecord(DNSRecord{Zone: str(in, "zoneId"), Name: str(in, "name"), Type: str(in, "type"), Content: str(in, "content")},
			ow.IsBool() && ow.BoolValue())
	case "digitalocean:index/containerRegistryDockerCredentials:ContainerRegistryDockerCredentials":
		auth := base64.StdEncoding.EncodeToString([]byte("do-token:do-token"))
		out["dockerCredentials"] = resource.MakeSecret(resource.NewPropertyValue(
			`{"auths":{"registry.digitalocean.com":{"auth":"` + auth + `"}}}`))
	case "docker:index/image:Image":
		// the digest of what was pushed, derived from the tag
		name := str(in, "imageName")
		sum := sha256.Sum256([]byte(name))
		if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
			name = name[:i]
		}
		set("repoDigest", fmt.Sprintf("%s@sha256:%x", name, sum))
	default:
		if m.Fallback != nil && !strings.HasPrefix(args.TypeToken, "digitalocean:") && !strings.HasPrefix(args.TypeToken, "cloudflare:") {
			id, out, err = m.Fallback.NewResource(args)
		}
	}
	if err != nil {
		return "", nil, fmt.Errorf("cloudmock %s %s: %w", args.TypeToken, args.Name, err)
	}
	r := Resource{Type: args.TypeToken, Name: args.Name, Inputs: in, Outputs: out, Provider: args.Provider, Custom: args.Custom}
	if rpc := args.RegisterRPC; rpc != nil {
		r.Protect = rpc.GetProtect()
		r.DeleteBeforeReplace = rpc.GetDeleteBeforeReplace()
		r.IgnoreChanges = rpc.GetIgnoreChanges()
		r.Parent = rpc.GetParent()
		r.Deps = rpc.GetDependencies()
	}
	m.mu.Lock()
	m.resources = append(m.resources, r)
	m.mu.Unlock()
	return id, out, nil
}

func str(in resource.PropertyMap, k string) string {
	v, ok := in[resource.PropertyKey(k)]
	if !ok {
		return ""
	}
	if v.IsSecret() {
		v = v.SecretValue().Element
	}
	if v.IsString() {
		return v.StringValue()
	}
	return ""
}

func privateKey(in resource.PropertyMap, set func(string, any)) error {
	var signer crypto.Signer
	var keyPEM []byte
	switch alg := str(in, "algorithm"); alg {
	case "RSA":
		bits := 2048
		if v, ok := in["rsaBits"]; ok && v.IsNumber() {
			bits = int(v.NumberValue())
		}
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			return err
		}
		signer = k
		keyPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	case "ECDSA":
		curve := elliptic.P256()
		if str(in, "ecdsaCurve") == "P384" {
			curve = elliptic.P384()
		}
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			return err
		}
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return err
		}
		signer = k
		keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	case "ED25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return err
		}
		signer = k
		keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		pub := k.Public().(ed25519.PublicKey)
		set("publicKeyOpenssh", "ssh-ed25519 "+base64.StdEncoding.EncodeToString(sshBlob("ssh-ed25519", pub))+"\n")
		// The real provider writes OpenSSH format; PKCS#8 carries the same key for tests.
		set("privateKeyOpenssh", string(keyPEM))
	default:
		return fmt.Errorf("unsupported algorithm %q", alg)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return err
	}
	set("privateKeyPem", string(keyPEM))
	set("publicKeyPem", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})))
	return nil
}

func sshBlob(kind string, key []byte) []byte {
	var b []byte
	for _, part := range [][]byte{[]byte(kind), key} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(part)))
		b = append(b, part...)
	}
	return b
}

func fingerprint(pub string) string {
	f := strings.Fields(pub)
	if len(f) < 2 {
		return "00"
	}
	blob, _ := base64.StdEncoding.DecodeString(f[1])
	sum := md5.Sum(blob)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02x", b)
	}
	return strings.Join(parts, ":")
}

// ParseKey parses the PEM private keys privateKey produces.
func ParseKey(p string) (crypto.Signer, error) {
	b, _ := pem.Decode([]byte(p))
	if b == nil {
		return nil, fmt.Errorf("no PEM block")
	}
	switch b.Type {
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(b.Bytes)
	default:
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return nil, err
		}
		return k.(crypto.Signer), nil
	}
}

// ParseCert parses one PEM certificate.
func ParseCert(p string) (*x509.Certificate, error) {
	b, _ := pem.Decode([]byte(p))
	if b == nil {
		return nil, fmt.Errorf("no PEM block")
	}
	return x509.ParseCertificate(b.Bytes)
}

func subject(in resource.PropertyMap) pkix.Name {
	var n pkix.Name
	v, ok := in["subject"]
	if !ok || !v.IsObject() {
		return n
	}
	s := v.ObjectValue()
	n.CommonName = str(s, "commonName")
	if o := str(s, "organization"); o != "" {
		n.Organization = []string{o}
	}
	return n
}

func usages(in resource.PropertyMap) (x509.KeyUsage, []x509.ExtKeyUsage) {
	var ku x509.KeyUsage
	var eku []x509.ExtKeyUsage
	v, ok := in["allowedUses"]
	if !ok || !v.IsArray() {
		return ku, eku
	}
	for _, u := range v.ArrayValue() {
		switch u.StringValue() {
		case "cert_signing":
			ku |= x509.KeyUsageCertSign
		case "crl_signing":
			ku |= x509.KeyUsageCRLSign
		case "digital_signature":
			ku |= x509.KeyUsageDigitalSignature
		case "key_encipherment":
			ku |= x509.KeyUsageKeyEncipherment
		case "client_auth":
			eku = append(eku, x509.ExtKeyUsageClientAuth)
		case "server_auth":
			eku = append(eku, x509.ExtKeyUsageServerAuth)
		}
	}
	return ku, eku
}

func template(in resource.PropertyMap) *x509.Certificate {
	hours := 24.0
	if v, ok := in["validityPeriodHours"]; ok && v.IsNumber() {
		hours = v.NumberValue()
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	ku, eku := usages(in)
	isCA := false
	if v, ok := in["isCaCertificate"]; ok && v.IsBool() {
		isCA = v.BoolValue()
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject(in),
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Duration(hours * float64(time.Hour))),
		KeyUsage:              ku,
		ExtKeyUsage:           eku,
		IsCA:                  isCA,
		BasicConstraintsValid: true,
	}
}

func selfSigned(in resource.PropertyMap, set func(string, any)) error {
	key, err := ParseKey(str(in, "privateKeyPem"))
	if err != nil {
		return fmt.Errorf("privateKeyPem: %w", err)
	}
	t := template(in)
	der, err := x509.CreateCertificate(rand.Reader, t, t, key.Public(), key)
	if err != nil {
		return err
	}
	set("certPem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	return nil
}

func certRequest(in resource.PropertyMap, set func(string, any)) error {
	key, err := ParseKey(str(in, "privateKeyPem"))
	if err != nil {
		return fmt.Errorf("privateKeyPem: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject(in)}, key)
	if err != nil {
		return err
	}
	set("certRequestPem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})))
	return nil
}

func locallySigned(in resource.PropertyMap, set func(string, any)) error {
	b, _ := pem.Decode([]byte(str(in, "certRequestPem")))
	if b == nil {
		return fmt.Errorf("certRequestPem: no PEM block")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return err
	}
	caKey, err := ParseKey(str(in, "caPrivateKeyPem"))
	if err != nil {
		return fmt.Errorf("caPrivateKeyPem: %w", err)
	}
	ca, err := ParseCert(str(in, "caCertPem"))
	if err != nil {
		return fmt.Errorf("caCertPem: %w", err)
	}
	t := template(in)
	t.Subject = csr.Subject
	der, err := x509.CreateCertificate(rand.Reader, t, ca, csr.PublicKey, caKey)
	if err != nil {
		return err
	}
	set("certPem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	return nil
}

func randomString(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		v, _ := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		b[i] = alphabet[v.Int64()]
	}
	return string(b)
}

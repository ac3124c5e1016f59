package cluster

import (
	"fmt"

	"github.com/pulumi/pulumi-tls/sdk/v5/go/tls"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// CA validity: K3s' own CAs live 10 years.
const (
	caValidityHours     = 10 * 365 * 24
	clientValidityHours = 365 * 24
	clientRenewHours    = 30 * 24 // renewed by the next `pulumi up` in the last month
)

// Common names of the generated authorities (tests find them by CN).
const (
	ServerCACN        = "pressroom-server-ca"
	ClientCACN        = "pressroom-client-ca"
	RequestHeaderCACN = "pressroom-request-header-ca"
	EtcdServerCACN    = "pressroom-etcd-server-ca"
	EtcdPeerCACN      = "pressroom-etcd-peer-ca"
	AdminCN           = "pressroom-admin"
	AdminOrg          = "system:masters" // cluster-admin through the default RBAC binding
)

// CA is one certificate authority.
type CA struct {
	Key  *tls.PrivateKey
	Cert *tls.SelfSignedCert
}

// PKI holds the authorities K3s would otherwise generate on first start.
type PKI struct {
	ServerCA, ClientCA, RequestHeaderCA, EtcdServerCA, EtcdPeerCA *CA
	ServiceAccountKey                                             *tls.PrivateKey
}

func newCA(ctx *pulumi.Context, name, cn string, opts ...pulumi.ResourceOption) (*CA, error) {
	key, err := tls.NewPrivateKey(ctx, name+"-key", &tls.PrivateKeyArgs{
		Algorithm:  pulumi.String("ECDSA"),
		EcdsaCurve: pulumi.String("P256"),
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: %s key: %w", cn, err)
	}
	cert, err := tls.NewSelfSignedCert(ctx, name, &tls.SelfSignedCertArgs{
		PrivateKeyPem:       key.PrivateKeyPem,
		Subject:             &tls.SelfSignedCertSubjectArgs{CommonName: pulumi.String(cn)},
		IsCaCertificate:     pulumi.Bool(true),
		ValidityPeriodHours: pulumi.Int(caValidityHours),
		AllowedUses:         pulumi.ToStringArray([]string{"cert_signing", "crl_signing", "digital_signature", "key_encipherment"}),
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: %s: %w", cn, err)
	}
	return &CA{Key: key, Cert: cert}, nil
}

// NewPKI generates every authority and the service-account signing key.
func NewPKI(ctx *pulumi.Context, name string, opts ...pulumi.ResourceOption) (*PKI, error) {
	p := &PKI{}
	var err error
	for _, c := range []struct {
		dst **CA
		n   string
		cn  string
	}{
		{&p.ServerCA, "server-ca", ServerCACN},
		{&p.ClientCA, "client-ca", ClientCACN},
		{&p.RequestHeaderCA, "request-header-ca", RequestHeaderCACN},
		{&p.EtcdServerCA, "etcd-server-ca", EtcdServerCACN},
		{&p.EtcdPeerCA, "etcd-peer-ca", EtcdPeerCACN},
	} {
		if *c.dst, err = newCA(ctx, name+"-"+c.n, c.cn, opts...); err != nil {
			return nil, err
		}
	}
	p.ServiceAccountKey, err = tls.NewPrivateKey(ctx, name+"-service-account", &tls.PrivateKeyArgs{
		Algorithm: pulumi.String("RSA"),
		RsaBits:   pulumi.Int(2048),
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: service-account key: %w", err)
	}
	return p, nil
}

// Files maps paths under TLSDir to their PEM contents, as K3s expects them.
func (p *PKI) Files() pulumi.StringMapOutput {
	m := pulumi.StringMap{"service.key": p.ServiceAccountKey.PrivateKeyPem}
	for path, ca := range map[string]*CA{
		"server-ca":         p.ServerCA,
		"client-ca":         p.ClientCA,
		"request-header-ca": p.RequestHeaderCA,
		"etcd/server-ca":    p.EtcdServerCA,
		"etcd/peer-ca":      p.EtcdPeerCA,
	} {
		m[path+".crt"] = ca.Cert.CertPem
		m[path+".key"] = ca.Key.PrivateKeyPem
	}
	return pulumi.ToSecret(m.ToStringMapOutput()).(pulumi.StringMapOutput)
}

// AdminCert is the operator's client certificate (O=system:masters) signed by the client CA.
type AdminCert struct {
	Key  *tls.PrivateKey
	Cert *tls.LocallySignedCert
}

// NewAdminCert issues the admin client certificate.
func NewAdminCert(ctx *pulumi.Context, name string, ca *CA, opts ...pulumi.ResourceOption) (*AdminCert, error) {
	key, err := tls.NewPrivateKey(ctx, name+"-key", &tls.PrivateKeyArgs{
		Algorithm:  pulumi.String("ECDSA"),
		EcdsaCurve: pulumi.String("P256"),
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: admin key: %w", err)
	}
	csr, err := tls.NewCertRequest(ctx, name+"-csr", &tls.CertRequestArgs{
		PrivateKeyPem: key.PrivateKeyPem,
		Subject: &tls.CertRequestSubjectArgs{
			CommonName:   pulumi.String(AdminCN),
			Organization: pulumi.String(AdminOrg),
		},
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: admin csr: %w", err)
	}
	cert, err := tls.NewLocallySignedCert(ctx, name, &tls.LocallySignedCertArgs{
		CertRequestPem:      csr.CertRequestPem,
		CaPrivateKeyPem:     ca.Key.PrivateKeyPem,
		CaCertPem:           ca.Cert.CertPem,
		ValidityPeriodHours: pulumi.Int(clientValidityHours),
		EarlyRenewalHours:   pulumi.Int(clientRenewHours),
		AllowedUses:         pulumi.ToStringArray([]string{"client_auth", "digital_signature", "key_encipherment"}),
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: admin certificate: %w", err)
	}
	return &AdminCert{Key: key, Cert: cert}, nil
}

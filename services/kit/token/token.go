// Package token signs and verifies the platform's RS256 JWTs. Auth signs with
// its private key; every other service verifies with a set of public keys
// chosen by the token's kid, so keys rotate without logging anyone out.
package token

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Default key file locations (the jwt-keys secret mounted read-only at /keys).
const (
	DefaultPrivateKeyPath = "/keys/jwt_private.pem"
	DefaultPublicKeyPath  = "/keys/jwt_public.pem"
)

// ErrInvalidToken is wrapped by every verification failure.
var ErrInvalidToken = errors.New("invalid token")

// Leeway tolerates small clock differences between services when checking exp/iat/nbf.
const Leeway = 30 * time.Second

// Claims are the token's contents. Subject is the user id.
type Claims struct {
	jwt.RegisteredClaims
	Email string   `json:"email,omitempty"`
	Name  string   `json:"name,omitempty"`
	Roles []string `json:"roles,omitempty"`
}

// Signer issues tokens (used by auth only).
type Signer struct {
	key      *rsa.PrivateKey
	kid      string
	issuer   string
	audience []string
	ttl      time.Duration
	now      func() time.Time
}

// NewSigner returns a Signer issuing tokens valid for ttl.
func NewSigner(key *rsa.PrivateKey, issuer string, audience []string, ttl time.Duration) *Signer {
	return &Signer{key: key, kid: KeyID(&key.PublicKey), issuer: issuer, audience: audience, ttl: ttl, now: time.Now}
}

// LoadSigner reads a PEM private key (PKCS#1 or PKCS#8) from path.
func LoadSigner(privatePEMPath, issuer string, audience []string, ttl time.Duration) (*Signer, error) {
	b, err := os.ReadFile(privatePEMPath)
	if err != nil {
		return nil, fmt.Errorf("token: read private key: %w", err)
	}
	key, err := ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("token: %s: %w", privatePEMPath, err)
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("token: token lifetime must be positive, got %s", ttl)
	}
	return NewSigner(key, issuer, audience, ttl), nil
}

// KeyID is the kid of the signing key.
func (s *Signer) KeyID() string { return s.kid }

// PublicKey is the signing key's public half.
func (s *Signer) PublicKey() *rsa.PublicKey { return &s.key.PublicKey }

// Sign issues a token for a user.
func (s *Signer) Sign(subject, email, name string, roles []string) (string, error) {
	return s.SignClaims(Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: subject}, Email: email, Name: name, Roles: roles})
}

// SignClaims issues a token from c, filling issuer, audience, issued-at,
// expiry and a random id where c leaves them empty.
func (s *Signer) SignClaims(c Claims) (string, error) {
	if c.Subject == "" {
		return "", errors.New("token: subject (user id) is required")
	}
	now := s.now()
	if c.Issuer == "" {
		c.Issuer = s.issuer
	}
	if len(c.Audience) == 0 {
		c.Audience = s.audience
	}
	if c.IssuedAt == nil {
		c.IssuedAt = jwt.NewNumericDate(now)
	}
	if c.ExpiresAt == nil {
		c.ExpiresAt = jwt.NewNumericDate(now.Add(s.ttl))
	}
	if c.ID == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		c.ID = hex.EncodeToString(b[:])
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	t.Header["kid"] = s.kid
	out, err := t.SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	return out, nil
}

// Verifier checks tokens against a key set.
type Verifier struct {
	keys   map[string]*rsa.PublicKey
	parser *jwt.Parser
	now    func() time.Time

	mu       sync.Mutex
	verified map[string]verifiedToken // raw token -> claims, until it expires
}

// verifiedToken is a token whose signature and claims already passed.
type verifiedToken struct {
	claims    Claims
	notBefore time.Time // zero = no nbf
	expires   time.Time
}

// verifiedMax bounds the cache of verified tokens (a few hundred bytes each).
const verifiedMax = 10000

// NewVerifier accepts RS256 tokens signed by any of keys, issued by issuer for audience.
func NewVerifier(keys []*rsa.PublicKey, issuer, audience string) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, errors.New("token: at least one public key is required")
	}
	if issuer == "" || audience == "" {
		return nil, errors.New("token: issuer and audience are required to verify tokens")
	}
	v := &Verifier{keys: map[string]*rsa.PublicKey{}, now: time.Now, verified: map[string]verifiedToken{}}
	for _, k := range keys {
		v.keys[KeyID(k)] = k
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodRS256.Alg()}),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(func() time.Time { return v.now() }),
	)
	return v, nil
}

// LoadVerifier reads one or more concatenated PEM public keys from path.
func LoadVerifier(publicPEMPath, issuer, audience string) (*Verifier, error) {
	b, err := os.ReadFile(publicPEMPath)
	if err != nil {
		return nil, fmt.Errorf("token: read public keys: %w", err)
	}
	keys, err := ParsePublicKeys(b)
	if err != nil {
		return nil, fmt.Errorf("token: %s: %w", publicPEMPath, err)
	}
	return NewVerifier(keys, issuer, audience)
}

// KeyIDs lists the kids this verifier accepts.
func (v *Verifier) KeyIDs() []string {
	out := make([]string, 0, len(v.keys))
	for k := range v.keys {
		out = append(out, k)
	}
	return out
}

// Verify checks signature, algorithm, kid, expiry, issuer and audience.
// A token that passed once is remembered until it expires: the same bytes
// carry the same signature, so only the time checks are repeated, and a busy
// caller's every request does not pay for an RSA verification.
func (v *Verifier) Verify(tok string) (*Claims, error) {
	now := v.now()
	v.mu.Lock()
	hit, ok := v.verified[tok]
	v.mu.Unlock()
	if ok {
		if now.After(hit.expires.Add(Leeway)) || now.Add(Leeway).Before(hit.notBefore) {
			v.mu.Lock()
			delete(v.verified, tok)
			v.mu.Unlock()
		} else {
			c := hit.claims
			c.Audience, c.Roles = slices.Clone(c.Audience), slices.Clone(c.Roles) // callers may not change the cache
			return &c, nil
		}
	}
	var c Claims
	_, err := v.parser.ParseWithClaims(tok, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("token has no kid header")
		}
		k, ok := v.keys[kid]
		if !ok {
			return nil, fmt.Errorf("unknown signing key %q", kid)
		}
		return k, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if c.Subject == "" {
		return nil, fmt.Errorf("%w: no subject", ErrInvalidToken)
	}
	v.remember(tok, c, now)
	return &c, nil
}

func (v *Verifier) remember(tok string, c Claims, now time.Time) {
	hit := verifiedToken{claims: c, expires: c.ExpiresAt.Time}
	hit.claims.Audience, hit.claims.Roles = slices.Clone(c.Audience), slices.Clone(c.Roles)
	if c.NotBefore != nil {
		hit.notBefore = c.NotBefore.Time
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.verified) >= verifiedMax {
		for k, t := range v.verified {
			if now.After(t.expires.Add(Leeway)) {
				delete(v.verified, k)
			}
		}
		if len(v.verified) >= verifiedMax/2 {
			clear(v.verified) // still full of live tokens: start over rather than grow
		}
	}
	v.verified[tok] = hit
}

// KeyID is a stable fingerprint of pub: base64url(SHA-256(DER PKIX)), first 16 chars.
func KeyID(pub *rsa.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])[:16]
}

// ParsePrivateKey reads an RSA key in PEM (PKCS#1 "RSA PRIVATE KEY" or PKCS#8 "PRIVATE KEY").
func ParsePrivateKey(pemBytes []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("no PEM block found; want an RSA private key in PEM form")
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("private key is %T; only RSA keys sign RS256", k)
		}
		return rk, nil
	}
	return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
}

// ParsePublicKeys reads every RSA public key ("PUBLIC KEY" or "RSA PUBLIC KEY") in pemBytes.
func ParsePublicKeys(pemBytes []byte) ([]*rsa.PublicKey, error) {
	var keys []*rsa.PublicKey
	rest := pemBytes
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch block.Type {
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("public key %d: %w", len(keys)+1, err)
			}
			rk, ok := k.(*rsa.PublicKey)
			if !ok {
				return nil, fmt.Errorf("public key %d is %T; only RSA keys verify RS256", len(keys)+1, k)
			}
			keys = append(keys, rk)
		case "RSA PUBLIC KEY":
			k, err := x509.ParsePKCS1PublicKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("public key %d: %w", len(keys)+1, err)
			}
			keys = append(keys, k)
		default:
			return nil, fmt.Errorf("PEM block %q is not a public key (did you mount the private key?)", block.Type)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM public key found")
	}
	return keys, nil
}

// EncodePrivateKey returns key as PKCS#8 PEM.
func EncodePrivateKey(key *rsa.PrivateKey) []byte {
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// EncodePublicKey returns pub as PKIX PEM.
func EncodePublicKey(pub *rsa.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

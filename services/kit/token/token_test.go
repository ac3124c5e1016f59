package token

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	iss = "https://auth.example.com"
	aud = "pressroom"
)

var (
	keysOnce sync.Once
	keyA     *rsa.PrivateKey
	keyB     *rsa.PrivateKey
	keyC     *rsa.PrivateKey
)

func keys(t testing.TB) (*rsa.PrivateKey, *rsa.PrivateKey, *rsa.PrivateKey) {
	keysOnce.Do(func() {
		var err error
		for _, k := range []**rsa.PrivateKey{&keyA, &keyB, &keyC} {
			if *k, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
				panic(err)
			}
		}
	})
	return keyA, keyB, keyC
}

func verifier(t testing.TB, pubs ...*rsa.PublicKey) *Verifier {
	t.Helper()
	v, err := NewVerifier(pubs, iss, aud)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSignVerifyRoundTrip(t *testing.T) {
	a, _, _ := keys(t)
	s := NewSigner(a, iss, []string{aud}, time.Hour)
	tok, err := s.Sign("user-1", "ann@example.com", "Ann", []string{"author", "reader"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := verifier(t, &a.PublicKey).Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "user-1" || c.Email != "ann@example.com" || c.Name != "Ann" ||
		!slices.Equal(c.Roles, []string{"author", "reader"}) || c.ID == "" || c.Issuer != iss {
		t.Errorf("claims = %+v", c)
	}
	if s.KeyID() != KeyID(&a.PublicKey) || len(s.KeyID()) != 16 {
		t.Errorf("kid %q", s.KeyID())
	}
}

func TestVerifyRejects(t *testing.T) {
	a, b, _ := keys(t)
	v := verifier(t, &a.PublicKey)
	good := NewSigner(a, iss, []string{aud}, time.Hour)
	claims := Claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject: "u", Issuer: iss, Audience: jwt.ClaimStrings{aud},
		IssuedAt: jwt.NewNumericDate(time.Now()), ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}}
	pubPEM := EncodePublicKey(&a.PublicKey)

	sign := func(m jwt.SigningMethod, key any, kid string, c Claims) string {
		tk := jwt.NewWithClaims(m, c)
		if kid != "" {
			tk.Header["kid"] = kid
		}
		s, err := tk.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	expired := NewSigner(a, iss, []string{aud}, time.Hour)
	expired.now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	expiredTok, _ := expired.Sign("u", "", "", nil)
	wrongIss, _ := NewSigner(a, "https://evil.example.com", []string{aud}, time.Hour).Sign("u", "", "", nil)
	wrongAud, _ := NewSigner(a, iss, []string{"other"}, time.Hour).Sign("u", "", "", nil)
	unknownKid, _ := NewSigner(b, iss, []string{aud}, time.Hour).Sign("u", "", "", nil)
	goodTok, _ := good.Sign("u", "", "", nil)
	parts := strings.Split(goodTok, ".")
	tampered := parts[0] + "." + parts[1] + "x." + parts[2]
	noExp := claims
	noExp.ExpiresAt = nil

	cases := map[string]string{
		"expired":              expiredTok,
		"wrong issuer":         wrongIss,
		"wrong audience":       wrongAud,
		"unknown kid":          unknownKid,
		"missing kid":          sign(jwt.SigningMethodRS256, a, "", claims),
		"alg none":             sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good.KeyID(), claims),
		"HS256 with pub key":   sign(jwt.SigningMethodHS256, pubPEM, good.KeyID(), claims),
		"RS512 right key":      sign(jwt.SigningMethodRS512, a, good.KeyID(), claims),
		"PS256 right key":      sign(jwt.SigningMethodPS256, a, good.KeyID(), claims),
		"no expiry":            sign(jwt.SigningMethodRS256, a, good.KeyID(), noExp),
		"tampered payload":     tampered,
		"garbage":              "not.a.token",
		"empty":                "",
		"other key, right kid": sign(jwt.SigningMethodRS256, b, good.KeyID(), claims),
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := v.Verify(tok)
			if err == nil {
				t.Fatalf("accepted: %+v", c)
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Errorf("error %v does not wrap ErrInvalidToken", err)
			}
		})
	}
	if _, err := v.Verify(goodTok); err != nil {
		t.Fatalf("control token rejected: %v", err)
	}
}

func TestRotationAcceptsEveryKeyInFile(t *testing.T) {
	a, b, c := keys(t)
	dir := t.TempDir()
	// PKIX and PKCS#1 encodings may be mixed in one file.
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&b.PublicKey)})
	pubFile := filepath.Join(dir, "jwt_public.pem")
	if err := os.WriteFile(pubFile, append(EncodePublicKey(&a.PublicKey), pkcs1...), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := LoadVerifier(pubFile, iss, aud)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.KeyIDs()) != 2 {
		t.Fatalf("kids = %v", v.KeyIDs())
	}
	for i, k := range []*rsa.PrivateKey{a, b} {
		privFile := filepath.Join(dir, "priv.pem")
		// the old key as PKCS#1, the new one as PKCS#8: both load
		data := EncodePrivateKey(k)
		if i == 0 {
			data = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
		}
		if err := os.WriteFile(privFile, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := LoadSigner(privFile, iss, []string{aud}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := s.Sign("u", "", "", nil)
		if _, err := v.Verify(tok); err != nil {
			t.Errorf("key %d rejected: %v", i, err)
		}
	}
	tok, _ := NewSigner(c, iss, []string{aud}, time.Minute).Sign("u", "", "", nil)
	if _, err := v.Verify(tok); err == nil {
		t.Error("a key outside the set was accepted")
	}
}

func TestKeyLoadingErrors(t *testing.T) {
	a, _, _ := keys(t)
	if _, err := ParsePublicKeys(EncodePrivateKey(a)); err == nil || !strings.Contains(err.Error(), "private key") {
		t.Errorf("private key given as public: %v", err)
	}
	if _, err := ParsePublicKeys([]byte("hello")); err == nil {
		t.Error("garbage accepted as public keys")
	}
	if _, err := ParsePrivateKey(EncodePublicKey(&a.PublicKey)); err == nil {
		t.Error("public key accepted as private")
	}
	if _, err := LoadVerifier(filepath.Join(t.TempDir(), "missing.pem"), iss, aud); err == nil {
		t.Error("missing file accepted")
	}
	if _, err := NewVerifier([]*rsa.PublicKey{&a.PublicKey}, "", aud); err == nil {
		t.Error("empty issuer accepted")
	}
	if _, err := NewSigner(a, iss, []string{aud}, time.Hour).Sign("", "", "", nil); err == nil {
		t.Error("empty subject signed")
	}
}

// A verified token is remembered, but its expiry still counts, the cached
// claims cannot be changed through a returned copy, and any other bytes
// (a forged signature on the same claims) are verified afresh.
func TestVerifyRemembersTokensUntilTheyExpire(t *testing.T) {
	a, b, _ := keys(t)
	v := verifier(t, &a.PublicKey)
	clock := time.Now()
	v.now = func() time.Time { return clock }
	s := NewSigner(a, iss, []string{aud}, time.Minute)
	s.now = v.now
	tok, err := s.Sign("user-1", "ann@example.com", "Ann", []string{"author"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	first.Roles[0] = "admin"
	again, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(again.Roles, []string{"author"}) {
		t.Fatalf("a caller changed the remembered roles: %v", again.Roles)
	}

	parts := strings.Split(tok, ".")
	forged, err := NewSigner(b, iss, []string{aud}, time.Minute).Sign("user-1", "ann@example.com", "Ann", []string{"author"})
	if err != nil {
		t.Fatal(err)
	}
	forgedSig := parts[0] + "." + parts[1] + "." + strings.Split(forged, ".")[2]
	if _, err := v.Verify(forgedSig); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("same claims with another key's signature: err = %v, want ErrInvalidToken", err)
	}

	clock = clock.Add(time.Minute + Leeway + time.Second)
	if _, err := v.Verify(tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("remembered token after its expiry: err = %v, want ErrInvalidToken", err)
	}
}

// BenchmarkVerify: the first sight of a token costs an RSA verification;
// a token seen before costs a map lookup.
func BenchmarkVerify(b *testing.B) {
	a, _, _ := keys(b)
	tok, err := NewSigner(a, iss, []string{aud}, time.Hour).Sign("user-1", "ann@example.com", "Ann", []string{"author"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.Run("repeat", func(b *testing.B) {
		v := verifier(b, &a.PublicKey)
		for b.Loop() {
			if _, err := v.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("first-sight", func(b *testing.B) {
		v := verifier(b, &a.PublicKey)
		for b.Loop() {
			clear(v.verified)
			if _, err := v.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}

package testkit

import (
	"crypto/rand"
	"crypto/rsa"
	"os"
	"path/filepath"
	"testing"

	"pressroom.dev/kit/token"
)

// KeyFiles is a fresh RSA key pair written the way the jwt-keys secret is mounted.
type KeyFiles struct {
	Dir         string // holds jwt_private.pem and jwt_public.pem
	PrivatePath string
	PublicPath  string
	Private     *rsa.PrivateKey
	KeyID       string
}

// JWTKeys writes a new 2048-bit key pair to a temp dir (removed after the test).
func JWTKeys(t testing.TB) KeyFiles {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	k := KeyFiles{
		Dir:         dir,
		PrivatePath: filepath.Join(dir, "jwt_private.pem"),
		PublicPath:  filepath.Join(dir, "jwt_public.pem"),
		Private:     key,
		KeyID:       token.KeyID(&key.PublicKey),
	}
	if err := os.WriteFile(k.PrivatePath, token.EncodePrivateKey(key), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.PublicPath, token.EncodePublicKey(&key.PublicKey), 0o644); err != nil {
		t.Fatal(err)
	}
	return k
}

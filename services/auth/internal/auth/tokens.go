package auth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"pressroom.dev/kit/ids"
)

// Refresh tokens are "prt_" + base64url(session id (16 bytes) || secret (32
// bytes)). The session id lets a revoked family be rejected from the Redis
// cache without a database round trip; the secret makes the token unguessable.
// Only SHA-256(token) is stored.
const refreshPrefix = "prt_"

const refreshRawLen = 16 + 32

// ErrMalformedToken: the value is not a refresh token this service issued.
var ErrMalformedToken = errors.New("malformed refresh token")

// newRefreshToken returns a fresh token for the session.
func newRefreshToken(sessionID uuid.UUID) (string, error) {
	raw := make([]byte, refreshRawLen)
	copy(raw, sessionID[:])
	if _, err := rand.Read(raw[16:]); err != nil {
		return "", fmt.Errorf("refresh token: %w", err)
	}
	return refreshPrefix + base64.RawURLEncoding.EncodeToString(raw), nil
}

// parseRefreshToken checks the shape of a token and returns its session id.
func parseRefreshToken(tok string) (uuid.UUID, error) {
	body, ok := strings.CutPrefix(tok, refreshPrefix)
	if !ok || base64.RawURLEncoding.EncodedLen(refreshRawLen) != len(body) {
		return uuid.Nil, ErrMalformedToken
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(body)
	if err != nil || len(raw) != refreshRawLen {
		return uuid.Nil, ErrMalformedToken
	}
	id, err := uuid.FromBytes(raw[:16])
	if err != nil || id == uuid.Nil {
		return uuid.Nil, ErrMalformedToken
	}
	return id, nil
}

func hashToken(tok string) []byte {
	sum := sha256.Sum256([]byte(tok))
	return sum[:]
}

// sealSuccessor encrypts next (the token a rotation of tok issued) with a
// key derived from tok, so only a caller holding tok can open it; the
// database keeps only hashes, so it cannot.
func sealSuccessor(tok, next string) ([]byte, error) {
	aead, err := successorAEAD(tok)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal successor: %w", err)
	}
	return aead.Seal(nonce, nonce, []byte(next), nil), nil
}

// openSuccessor is the inverse of sealSuccessor.
func openSuccessor(tok string, sealed []byte) (string, error) {
	aead, err := successorAEAD(tok)
	if err != nil {
		return "", err
	}
	if len(sealed) < aead.NonceSize() {
		return "", ErrMalformedToken
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], nil)
	if err != nil {
		return "", ErrMalformedToken
	}
	return string(plain), nil
}

func successorAEAD(tok string) (cipher.AEAD, error) {
	key := sha256.Sum256([]byte("pressroom refresh successor\x00" + tok)) // never equal to hashToken(tok)
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// pageCursor is ListUsers' keyset position: the last row's lower(email) and id.
type pageCursor struct {
	Email string `json:"e"`
	ID    string `json:"i"`
}

func encodeCursor(c pageCursor) string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ErrBadPageToken: the page token was not produced by ListUsers.
var ErrBadPageToken = errors.New("page_token is not valid: pass the next_page_token of a previous ListUsers response, or leave it empty")

func decodeCursor(s string) (pageCursor, error) {
	var c pageCursor
	if len(s) > 1024 {
		return c, ErrBadPageToken
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return c, ErrBadPageToken
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || dec.More() {
		return pageCursor{}, ErrBadPageToken
	}
	// Both go to SQL: a uuid in another spelling or a NUL byte fails there.
	if !ids.IsUUID(c.ID) || !ids.IsText(c.Email) {
		return pageCursor{}, ErrBadPageToken
	}
	return c, nil
}

// randomToken is a URL-safe random string (state, nonce, PKCE verifier).
func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

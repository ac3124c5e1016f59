// Package devoidc is a small but real OpenID Connect provider for tests and
// for `make dev`: discovery, JWKS, an authorize endpoint with an HTML form
// where you type ANY e-mail (and name) to sign in as, and a token endpoint
// that issues RS256-signed ID tokens (authorization-code flow, nonce, PKCE
// S256, one-time codes). It never talks to the network beyond its listener.
//
// Use it like this:
//
//	p, err := devoidc.New(devoidc.Options{ClientID: "pressroom", ClientSecret: "dev-secret"})
//	if err != nil { ... }
//	if err := p.Start("127.0.0.1:0"); err != nil { ... } // ":0" picks a free port
//	defer p.Close()
//	issuer := p.Issuer() // e.g. "http://127.0.0.1:43121" → OIDC_ISSUER_URL
//
// Then point the relying party at it: OIDC_ISSUER_URL=p.Issuer(),
// GOOGLE_CLIENT_ID/GOOGLE_CLIENT_SECRET = the client above.
//
// Endpoints (relative to the issuer): /.well-known/openid-configuration,
// /jwks, /authorize (GET shows the form, POST signs in), /token, /userinfo.
//
// For negative tests, SetQuirks makes the next ID tokens wrong on purpose
// (audience, expiry, e-mail verification, nonce, issuer, signing key).
package devoidc

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Options configures a Server. The zero value is a usable dev provider that
// accepts any client id, secret and redirect URI.
type Options struct {
	// ClientID and ClientSecret, when set, are the only client accepted.
	ClientID     string
	ClientSecret string
	// RedirectURIs, when set, lists the only redirect URIs accepted (exact match).
	RedirectURIs []string
	// Issuer overrides the issuer URL (default "http://" + the listen address).
	// Set it when the provider is reached through another host name.
	Issuer string
	// Key signs ID tokens; nil generates a fresh 2048-bit key.
	Key *rsa.PrivateKey
	// CodeTTL is how long an authorization code stays valid (default 1 minute).
	CodeTTL time.Duration
	// TokenTTL is the lifetime of ID and access tokens (default 1 hour).
	TokenTTL time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Quirks make the provider misbehave on purpose, for relying-party tests.
type Quirks struct {
	WrongAudience   bool // aud is not the client id
	Expired         bool // exp is in the past
	UnverifiedEmail bool // email_verified is false
	WrongNonce      bool // nonce differs from the one in the authorize request
	WrongIssuer     bool // iss is not this provider
	UnknownKey      bool // signed by a key that is not in the JWKS
}

// Server is a running (or ready to run) provider. Safe for concurrent use.
type Server struct {
	opts     Options
	key      *rsa.PrivateKey
	kid      string
	strayKey *rsa.PrivateKey // for Quirks.UnknownKey

	mu     sync.Mutex
	issuer string
	quirks Quirks
	codes  map[string]*grant // one-time authorization codes
	access map[string]Claims // access token → claims, for /userinfo

	srv *http.Server
	ln  net.Listener
}

// Claims are the ID-token claims the provider issues.
type Claims struct {
	Issuer        string `json:"iss"`
	Subject       string `json:"sub"`
	Audience      string `json:"aud"`
	Expiry        int64  `json:"exp"`
	IssuedAt      int64  `json:"iat"`
	AuthTime      int64  `json:"auth_time,omitempty"`
	Nonce         string `json:"nonce,omitempty"`
	Email         string `json:"email"`
	EmailVerified bool   `json:"email_verified"`
	Name          string `json:"name,omitempty"`
	Picture       string `json:"picture,omitempty"`
}

type grant struct {
	clientID      string
	redirectURI   string
	nonce         string
	challenge     string
	email, name   string
	emailVerified bool
	expires       time.Time
}

// New builds a provider; call Start to serve it, or mount Handler yourself
// (then set Options.Issuer to where it is reachable).
func New(o Options) (*Server, error) {
	if o.CodeTTL <= 0 {
		o.CodeTTL = time.Minute
	}
	if o.TokenTTL <= 0 {
		o.TokenTTL = time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	key := o.Key
	if key == nil {
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return nil, fmt.Errorf("devoidc: generate signing key: %w", err)
		}
	}
	stray, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("devoidc: generate stray key: %w", err)
	}
	s := &Server{
		opts: o, key: key, strayKey: stray, kid: keyID(&key.PublicKey),
		issuer: strings.TrimRight(o.Issuer, "/"),
		codes:  map[string]*grant{}, access: map[string]Claims{},
	}
	return s, nil
}

// Start listens on addr (e.g. "127.0.0.1:0") and serves in the background.
// The issuer becomes "http://<bound address>" unless Options.Issuer is set.
func (s *Server) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("devoidc: listen on %q: %w", addr, err)
	}
	s.mu.Lock()
	if s.issuer == "" {
		s.issuer = "http://" + ln.Addr().String()
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	srv := s.srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
	return nil
}

// Close stops the listener started by Start. Safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Close()
}

// Issuer is the provider's issuer URL (OIDC_ISSUER_URL for the relying party).
func (s *Server) Issuer() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issuer
}

// Addr is the bound listen address after Start ("" before).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// KeyID is the kid of the signing key published in the JWKS.
func (s *Server) KeyID() string { return s.kid }

// SetQuirks applies to every ID token issued from now on; Quirks{} resets.
func (s *Server) SetQuirks(q Quirks) {
	s.mu.Lock()
	s.quirks = q
	s.mu.Unlock()
}

// Handler serves every endpoint; mount it at the issuer's root.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", s.discovery)
	mux.HandleFunc("GET /jwks", s.jwks)
	mux.HandleFunc("GET /authorize", s.authorizeForm)
	mux.HandleFunc("POST /authorize", s.authorizeSubmit)
	mux.HandleFunc("POST /token", s.token)
	mux.HandleFunc("GET /userinfo", s.userinfo)
	return mux
}

func (s *Server) discovery(w http.ResponseWriter, _ *http.Request) {
	iss := s.Issuer()
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                iss,
		"authorization_endpoint":                iss + "/authorize",
		"token_endpoint":                        iss + "/token",
		"userinfo_endpoint":                     iss + "/userinfo",
		"jwks_uri":                              iss + "/jwks",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"scopes_supported":                      []string{"openid", "email", "profile"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"code_challenge_methods_supported":      []string{"S256"},
		"grant_types_supported":                 []string{"authorization_code"},
		"claims_supported":                      []string{"iss", "sub", "aud", "exp", "iat", "nonce", "email", "email_verified", "name", "picture"},
	})
}

func (s *Server) jwks(w http.ResponseWriter, _ *http.Request) {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &s.key.PublicKey, KeyID: s.kid, Algorithm: string(jose.RS256), Use: "sig",
	}}}
	writeJSON(w, http.StatusOK, set)
}

// authParams are the authorize request's parameters, carried through the form.
type authParams struct {
	ResponseType, ClientID, RedirectURI, Scope, State, Nonce, Challenge, ChallengeMethod, LoginHint string
}

func readAuthParams(v url.Values) authParams {
	return authParams{
		ResponseType: v.Get("response_type"), ClientID: v.Get("client_id"),
		RedirectURI: v.Get("redirect_uri"), Scope: v.Get("scope"), State: v.Get("state"),
		Nonce: v.Get("nonce"), Challenge: v.Get("code_challenge"),
		ChallengeMethod: v.Get("code_challenge_method"), LoginHint: v.Get("login_hint"),
	}
}

// check validates an authorize request. Problems with the client or the
// redirect URI are shown to the user (never redirect to an unknown URI);
// the rest go back to the client as OAuth errors.
func (s *Server) check(p authParams) (userErr string, oauthErr string) {
	if p.ClientID == "" {
		return "client_id is missing", ""
	}
	if s.opts.ClientID != "" && p.ClientID != s.opts.ClientID {
		return fmt.Sprintf("unknown client_id %q", p.ClientID), ""
	}
	u, err := url.Parse(p.RedirectURI)
	if p.RedirectURI == "" || err != nil || !u.IsAbs() {
		return "redirect_uri must be an absolute URL", ""
	}
	if len(s.opts.RedirectURIs) > 0 && !contains(s.opts.RedirectURIs, p.RedirectURI) {
		return fmt.Sprintf("redirect_uri %q is not registered for this client", p.RedirectURI), ""
	}
	if p.ResponseType != "code" {
		return "", "unsupported_response_type"
	}
	if !contains(strings.Fields(p.Scope), "openid") {
		return "", "invalid_scope"
	}
	if p.Challenge != "" && p.ChallengeMethod != "S256" {
		return "", "invalid_request" // only S256: "plain" PKCE protects nothing
	}
	return "", ""
}

func (s *Server) authorizeForm(w http.ResponseWriter, r *http.Request) {
	p := readAuthParams(r.URL.Query())
	if ue, oe := s.check(p); ue != "" {
		http.Error(w, "devoidc: "+ue, http.StatusBadRequest)
		return
	} else if oe != "" {
		redirectError(w, r, p, oe)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = formTmpl.Execute(w, p)
}

func (s *Server) authorizeSubmit(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "devoidc: bad form: "+err.Error(), http.StatusBadRequest)
		return
	}
	p := readAuthParams(r.PostForm)
	if ue, oe := s.check(p); ue != "" {
		http.Error(w, "devoidc: "+ue, http.StatusBadRequest)
		return
	} else if oe != "" {
		redirectError(w, r, p, oe)
		return
	}
	email := strings.TrimSpace(r.PostForm.Get("email"))
	if !strings.Contains(email, "@") || strings.ContainsAny(email, " \t\r\n") {
		http.Error(w, "devoidc: type an e-mail address such as someone@example.com", http.StatusBadRequest)
		return
	}
	name := strings.TrimSpace(r.PostForm.Get("name"))
	if name == "" {
		name = email[:strings.Index(email, "@")]
	}
	code := randomString(24)
	s.mu.Lock()
	s.gcLocked()
	s.codes[code] = &grant{
		clientID: p.ClientID, redirectURI: p.RedirectURI, nonce: p.Nonce, challenge: p.Challenge,
		email: email, name: name, emailVerified: r.PostForm.Get("email_unverified") == "",
		expires: s.opts.Now().Add(s.opts.CodeTTL),
	}
	s.mu.Unlock()
	q := url.Values{"code": {code}}
	if p.State != "" {
		q.Set("state", p.State)
	}
	http.Redirect(w, r, withQuery(p.RedirectURI, q), http.StatusFound)
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		tokenError(w, http.StatusBadRequest, "invalid_request", "bad form: "+err.Error())
		return
	}
	f := r.PostForm
	if gt := f.Get("grant_type"); gt != "authorization_code" {
		tokenError(w, http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("grant_type %q is not supported; use authorization_code", gt))
		return
	}
	clientID, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 §2.3.1: Basic credentials are form-urlencoded first.
		clientID, _ = url.QueryUnescape(clientID)
		secret, _ = url.QueryUnescape(secret)
	} else {
		clientID, secret = f.Get("client_id"), f.Get("client_secret")
	}
	if s.opts.ClientID != "" && (clientID != s.opts.ClientID ||
		subtle.ConstantTimeCompare([]byte(secret), []byte(s.opts.ClientSecret)) != 1) {
		tokenError(w, http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
		return
	}
	code := f.Get("code")
	s.mu.Lock()
	g := s.codes[code]
	delete(s.codes, code) // one-time: a replayed code finds nothing
	s.mu.Unlock()
	now := s.opts.Now()
	switch {
	case g == nil:
		tokenError(w, http.StatusBadRequest, "invalid_grant", "unknown, expired or already used code")
		return
	case now.After(g.expires):
		tokenError(w, http.StatusBadRequest, "invalid_grant", "code expired")
		return
	case g.clientID != clientID:
		tokenError(w, http.StatusBadRequest, "invalid_grant", "code was issued to another client")
		return
	case g.redirectURI != f.Get("redirect_uri"):
		tokenError(w, http.StatusBadRequest, "invalid_grant", "redirect_uri differs from the authorize request")
		return
	}
	if g.challenge != "" {
		v := f.Get("code_verifier")
		sum := sha256.Sum256([]byte(v))
		if v == "" || base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
			tokenError(w, http.StatusBadRequest, "invalid_grant", "PKCE code_verifier does not match the code_challenge")
			return
		}
	} else if f.Get("code_verifier") != "" {
		tokenError(w, http.StatusBadRequest, "invalid_grant", "code_verifier sent but the authorize request had no code_challenge")
		return
	}

	s.mu.Lock()
	q, iss := s.quirks, s.issuer
	s.mu.Unlock()
	c := Claims{
		Issuer: iss, Subject: SubjectFor(g.email), Audience: clientID,
		IssuedAt: now.Unix(), AuthTime: now.Unix(), Expiry: now.Add(s.opts.TokenTTL).Unix(),
		Nonce: g.nonce, Email: g.email, EmailVerified: g.emailVerified, Name: g.name,
	}
	key := s.key
	if q.WrongAudience {
		c.Audience = "someone-else"
	}
	if q.Expired {
		c.IssuedAt, c.AuthTime, c.Expiry = now.Add(-2*time.Hour).Unix(), now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
	}
	if q.UnverifiedEmail {
		c.EmailVerified = false
	}
	if q.WrongNonce {
		c.Nonce = "not-" + g.nonce
	}
	if q.WrongIssuer {
		c.Issuer = iss + "/elsewhere"
	}
	if q.UnknownKey {
		key = s.strayKey
	}
	idToken, err := sign(key, s.kid, c)
	if err != nil {
		tokenError(w, http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	at := randomString(24)
	s.mu.Lock()
	s.access[at] = c
	s.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": at, "token_type": "Bearer", "id_token": idToken,
		"expires_in": int(s.opts.TokenTTL.Seconds()), "scope": "openid email profile",
	})
}

func (s *Server) userinfo(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	c, found := s.access[tok]
	s.mu.Unlock()
	if !ok || !found || s.opts.Now().Unix() > c.Expiry {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, "devoidc: missing, unknown or expired access token", http.StatusUnauthorized)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"sub": c.Subject, "email": c.Email, "email_verified": c.EmailVerified, "name": c.Name,
	})
}

// gcLocked drops expired codes and access tokens so a long `make dev` stays small.
func (s *Server) gcLocked() {
	now := s.opts.Now()
	for k, g := range s.codes {
		if now.After(g.expires) {
			delete(s.codes, k)
		}
	}
	for k, c := range s.access {
		if now.Unix() > c.Expiry {
			delete(s.access, k)
		}
	}
}

// SubjectFor is the stable `sub` the provider gives an e-mail address
// (case-insensitive), so signing in twice as the same person is one account.
func SubjectFor(email string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(email))))
	return hex.EncodeToString(sum[:12])
}

func sign(key *rsa.PrivateKey, kid string, c Claims) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("devoidc: signer: %w", err)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("devoidc: sign: %w", err)
	}
	return jws.CompactSerialize()
}

func keyID(pub *rsa.PublicKey) string {
	jwk := jose.JSONWebKey{Key: pub}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		panic(err) // only fails for unsupported key types; ours is RSA
	}
	return base64.RawURLEncoding.EncodeToString(tp)[:16]
}

func redirectError(w http.ResponseWriter, r *http.Request, p authParams, code string) {
	q := url.Values{"error": {code}}
	if p.State != "" {
		q.Set("state", p.State)
	}
	http.Redirect(w, r, withQuery(p.RedirectURI, q), http.StatusFound)
}

func tokenError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func withQuery(raw string, q url.Values) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	existing := u.Query()
	for k, vs := range q {
		existing[k] = vs
	}
	u.RawQuery = existing.Encode()
	return u.String()
}

func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(errors.New("devoidc: crypto/rand failed")) // never happens on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

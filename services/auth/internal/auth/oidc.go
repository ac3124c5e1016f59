package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// OIDCConfig is the relying-party side of the OpenID Connect provider.
type OIDCConfig struct {
	IssuerURL    string
	ClientID     string
	ClientSecret string
	RedirectURL  string
	// HTTPClient talks to the provider (nil = a client with a 10 s timeout).
	HTTPClient *http.Client
}

// Identity is what a verified ID token says about the person. Issuer and
// Subject (iss + sub) identify the person; the e-mail may change hands.
type Identity struct {
	Issuer  string
	Subject string
	Email   string
	Name    string
	Picture string
}

// Provider runs the authorization-code flow against one OIDC issuer.
// Discovery is lazy and retried until it succeeds once, so auth starts (and
// is ready) even while the provider is unreachable.
type Provider struct {
	cfg OIDCConfig

	mu       sync.Mutex
	oauth    *oauth2.Config
	verifier *oidc.IDTokenVerifier
}

// NewProvider checks the configuration; it does not contact the issuer.
func NewProvider(cfg OIDCConfig) (*Provider, error) {
	var problems []string
	if cfg.IssuerURL == "" {
		problems = append(problems, "OIDC_ISSUER_URL is empty")
	}
	if cfg.ClientID == "" {
		problems = append(problems, "GOOGLE_CLIENT_ID is empty")
	}
	if cfg.ClientSecret == "" {
		problems = append(problems, "GOOGLE_CLIENT_SECRET is empty")
	}
	if cfg.RedirectURL == "" {
		problems = append(problems, "OIDC_REDIRECT_URL is empty")
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("sign-in is enabled (GOOGLE_LOGIN_ENABLED=true) but %s; set them or set GOOGLE_LOGIN_ENABLED=false",
			strings.Join(problems, ", "))
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	return &Provider{cfg: cfg}, nil
}

func (p *Provider) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, p.cfg.HTTPClient)
}

func (p *Provider) discover(ctx context.Context) (*oauth2.Config, *oidc.IDTokenVerifier, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.oauth != nil {
		return p.oauth, p.verifier, nil
	}
	prov, err := oidc.NewProvider(p.ctx(ctx), p.cfg.IssuerURL)
	if err != nil {
		return nil, nil, fmt.Errorf("OIDC discovery at %s: %w", p.cfg.IssuerURL, err)
	}
	p.oauth = &oauth2.Config{
		ClientID: p.cfg.ClientID, ClientSecret: p.cfg.ClientSecret, RedirectURL: p.cfg.RedirectURL,
		Endpoint: prov.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "email", "profile"},
	}
	// The verifier checks signature (JWKS, refreshed on unknown kid), issuer,
	// audience = our client id, and expiry.
	p.verifier = prov.Verifier(&oidc.Config{ClientID: p.cfg.ClientID})
	return p.oauth, p.verifier, nil
}

// AuthURL is where to send the browser.
func (p *Provider) AuthURL(ctx context.Context, state, nonce, pkceVerifier string) (string, error) {
	oc, _, err := p.discover(ctx)
	if err != nil {
		return "", err
	}
	return oc.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(pkceVerifier)), nil
}

// Errors of Exchange, told apart so the API can say what went wrong.
var (
	ErrCodeRejected     = errors.New("the provider rejected the authorization code")
	ErrIDTokenInvalid   = errors.New("the ID token is invalid")
	ErrNonceMismatch    = errors.New("the ID token's nonce does not match this sign-in")
	ErrEmailUnverified  = errors.New("the provider has not verified this e-mail address")
	ErrProviderUnusable = errors.New("the sign-in provider cannot be reached")
)

// Exchange redeems the code (with the PKCE verifier) and verifies the ID
// token, including the nonce and a verified e-mail.
func (p *Provider) Exchange(ctx context.Context, code, pkceVerifier, nonce string) (Identity, error) {
	var id Identity
	oc, v, err := p.discover(ctx)
	if err != nil {
		return id, fmt.Errorf("%w: %v", ErrProviderUnusable, err)
	}
	tok, err := oc.Exchange(p.ctx(ctx), code, oauth2.VerifierOption(pkceVerifier))
	if err != nil {
		return id, fmt.Errorf("%w: %v", ErrCodeRejected, err)
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		return id, fmt.Errorf("%w: the token response has no id_token", ErrIDTokenInvalid)
	}
	idt, err := v.Verify(p.ctx(ctx), raw)
	if err != nil {
		return id, fmt.Errorf("%w: %v", ErrIDTokenInvalid, err)
	}
	if idt.Nonce == "" || idt.Nonce != nonce {
		return id, ErrNonceMismatch
	}
	if idt.Subject == "" {
		return id, fmt.Errorf("%w: no sub claim", ErrIDTokenInvalid)
	}
	var c struct {
		Email         string          `json:"email"`
		EmailVerified json.RawMessage `json:"email_verified"`
		Name          string          `json:"name"`
		Picture       string          `json:"picture"`
	}
	if err := idt.Claims(&c); err != nil {
		return id, fmt.Errorf("%w: claims: %v", ErrIDTokenInvalid, err)
	}
	if strings.TrimSpace(c.Email) == "" {
		return id, fmt.Errorf("%w: no email claim (request the email scope)", ErrIDTokenInvalid)
	}
	// Some providers send "true" as a string.
	if v := strings.Trim(string(c.EmailVerified), `"`); v != "true" {
		return id, ErrEmailUnverified
	}
	// The issuer is the configured one, which the verifier checked the token
	// against: Google's iss is sometimes "accounts.google.com" without the
	// scheme, and one person must not look like two.
	return Identity{Issuer: p.cfg.IssuerURL, Subject: idt.Subject, Email: strings.TrimSpace(c.Email), Name: c.Name, Picture: c.Picture}, nil
}

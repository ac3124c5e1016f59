package devoidc

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	clientID = "pressroom"
	secret   = "s3cret"
	redirect = "http://127.0.0.1:1/auth/callback"
)

func start(t *testing.T) *Server {
	t.Helper()
	p, err := New(Options{ClientID: clientID, ClientSecret: secret, RedirectURIs: []string{redirect}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func verifier() (string, string) {
	v := "verifier-" + randomString(32)
	sum := sha256.Sum256([]byte(v))
	return v, base64.RawURLEncoding.EncodeToString(sum[:])
}

// authorize signs in as email through the form and returns the code.
func authorize(t *testing.T, p *Server, email, nonce, challenge string) string {
	t.Helper()
	form := url.Values{
		"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect},
		"scope": {"openid email profile"}, "state": {"st"}, "nonce": {nonce},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "email": {email}, "name": {"Ann"},
	}
	// The GET shows a form carrying the parameters through.
	resp, err := http.Get(p.Issuer() + "/authorize?" + form.Encode())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `name="nonce" value="`+nonce+`"`) {
		t.Fatalf("authorize form: %d %s", resp.StatusCode, body)
	}
	resp, err = noRedirect.PostForm(p.Issuer()+"/authorize", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil {
		t.Fatalf("authorize submit: %d %v", resp.StatusCode, err)
	}
	if !strings.HasPrefix(loc.String(), redirect) || loc.Query().Get("state") != "st" || loc.Query().Get("code") == "" {
		t.Fatalf("redirect %q lacks code/state", loc)
	}
	return loc.Query().Get("code")
}

func exchange(t *testing.T, p *Server, code, verifier string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", p.Issuer()+"/token", strings.NewReader(url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {verifier},
	}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

// verify checks the ID token's signature against the published JWKS.
func verify(t *testing.T, p *Server, idToken string) (Claims, error) {
	t.Helper()
	resp, err := http.Get(p.Issuer() + "/jwks")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSigned(idToken, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	keys := set.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q not in JWKS", jws.Signatures[0].Header.KeyID)
	}
	var c Claims
	payload, err := jws.Verify(keys[0].Key)
	if err != nil {
		return c, err
	}
	return c, json.Unmarshal(payload, &c)
}

func TestDiscovery(t *testing.T) {
	p := start(t)
	resp, err := http.Get(p.Issuer() + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	if d["issuer"] != p.Issuer() || d["token_endpoint"] != p.Issuer()+"/token" || d["jwks_uri"] != p.Issuer()+"/jwks" {
		t.Fatalf("discovery document: %v", d)
	}
	if !strings.HasPrefix(p.Issuer(), "http://127.0.0.1:") {
		t.Fatalf("issuer %q is not on loopback", p.Issuer())
	}
}

func TestCodeFlow(t *testing.T) {
	p := start(t)
	v, ch := verifier()
	code := authorize(t, p, "Ann@Example.com", "n-1", ch)
	status, out := exchange(t, p, code, v)
	if status != 200 {
		t.Fatalf("token: %d %v", status, out)
	}
	c, err := verify(t, p, out["id_token"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer != p.Issuer() || c.Audience != clientID || c.Nonce != "n-1" || c.Email != "Ann@Example.com" ||
		!c.EmailVerified || c.Name != "Ann" || c.Subject != SubjectFor("ann@example.com") {
		t.Fatalf("claims: %+v", c)
	}
	if time.Unix(c.Expiry, 0).Before(time.Now()) {
		t.Fatalf("token already expired: %+v", c)
	}
	// userinfo answers for the access token.
	req, _ := http.NewRequest("GET", p.Issuer()+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+out["access_token"].(string))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("userinfo: %v %v", resp, err)
	}
	resp.Body.Close()

	// The code is one-time.
	if status, out := exchange(t, p, code, v); status != 400 || out["error"] != "invalid_grant" {
		t.Fatalf("replayed code: %d %v", status, out)
	}
}

func TestPKCEMismatch(t *testing.T) {
	p := start(t)
	_, ch := verifier()
	other, _ := verifier()
	code := authorize(t, p, "a@example.com", "n", ch)
	if status, out := exchange(t, p, code, other); status != 400 || out["error"] != "invalid_grant" {
		t.Fatalf("wrong verifier: %d %v", status, out)
	}
}

func TestClientChecks(t *testing.T) {
	p := start(t)
	// Unknown redirect URIs are refused on the page, never redirected to.
	resp, err := noRedirect.Get(p.Issuer() + "/authorize?" + url.Values{
		"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {"http://evil.example.com/cb"}, "scope": {"openid"},
	}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("unregistered redirect: %d", resp.StatusCode)
	}
	// Wrong secret.
	v, ch := verifier()
	code := authorize(t, p, "a@example.com", "n", ch)
	req, _ := http.NewRequest("POST", p.Issuer()+"/token", strings.NewReader(url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {v},
	}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, "wrong")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("wrong secret: %d", resp.StatusCode)
	}
}

func TestQuirks(t *testing.T) {
	p := start(t)
	cases := []struct {
		q     Quirks
		check func(c Claims, err error) bool
	}{
		{Quirks{WrongAudience: true}, func(c Claims, err error) bool { return err == nil && c.Audience != clientID }},
		{Quirks{Expired: true}, func(c Claims, err error) bool { return err == nil && c.Expiry < time.Now().Unix() }},
		{Quirks{UnverifiedEmail: true}, func(c Claims, err error) bool { return err == nil && !c.EmailVerified }},
		{Quirks{WrongNonce: true}, func(c Claims, err error) bool { return err == nil && c.Nonce != "n" }},
		{Quirks{WrongIssuer: true}, func(c Claims, err error) bool { return err == nil && c.Issuer != p.Issuer() }},
		{Quirks{UnknownKey: true}, func(c Claims, err error) bool { return err != nil }},
	}
	for _, tc := range cases {
		p.SetQuirks(tc.q)
		v, ch := verifier()
		status, out := exchange(t, p, authorize(t, p, "a@example.com", "n", ch), v)
		if status != 200 {
			t.Fatalf("%+v: %d %v", tc.q, status, out)
		}
		c, err := verify(t, p, out["id_token"].(string))
		if !tc.check(c, err) {
			t.Errorf("quirk %+v not applied: %+v %v", tc.q, c, err)
		}
	}
}

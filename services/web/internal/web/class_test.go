package web

import (
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"pressroom.dev/kit/testkit"
	"pressroom.dev/kit/token"
	articlev1 "pressroom.dev/proto/gen/article/v1"
)

var sessionCookies = []string{cookieAccess, cookieRefresh, cookieState}

// routePath fills a route template's parameters with ordinary values.
func routePath(template, id string) string {
	return strings.NewReplacer(":slug", "tides", ":id", id, "*file", "/style.css").Replace(template)
}

// backendCalls counts every call web made to auth, article and media.
func (h *harness) backendCalls() int {
	h.auth.mu.Lock()
	n := 0
	for _, c := range h.auth.calls {
		n += c
	}
	h.auth.mu.Unlock()
	h.articles.mu.Lock()
	for _, c := range h.articles.calls {
		n += c
	}
	h.articles.mu.Unlock()
	h.media.mu.Lock()
	n += h.media.calls
	h.media.mu.Unlock()
	return n
}

func (h *harness) writes() map[string]int {
	out := map[string]int{}
	for _, n := range []string{"Refresh", "SignOut", "StartSignIn", "FinishSignIn", "SetRoles"} {
		out["auth."+n] = h.auth.callCount(n)
	}
	for _, n := range []string{"CreateArticle", "UpdateArticle", "DeleteArticle", "PublishArticle", "UnpublishArticle"} {
		out["article."+n] = h.articles.callCount(n)
	}
	h.media.mu.Lock()
	out["media.items"], out["media.uploads"] = len(h.media.items), len(h.media.uploads)
	h.media.mu.Unlock()
	return out
}

func (h *harness) logTo(logs *testkit.LogBuffer) {
	h.app.log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// A GET or HEAD never changes anything, whatever cookies come with it: an
// image in an article, a link or a page elsewhere can make a browser send
// one by itself. The test walks every GET and HEAD route web has (from the
// engine, so a new route is walked too) with a full session and checks that
// no service was asked to change anything and no session cookie was set or
// cleared. (/auth/callback is walked with a state that is not this
// browser's: the provider's redirect is a GET by protocol, and it acts only
// on the state this browser started.)
func TestSafeMethodsNeverChangeTheSession(t *testing.T) {
	h := newHarness(t)
	a := h.published("Tides", "tides", "text")
	h.media.items = []MediaItem{{ID: "m1", Filename: "boat.png", URL: boatPath, ContentType: "image/png"}}
	expired, _ := token.NewSigner(testKey, "pressroom-auth", []string{"pressroom"}, -time.Minute).Sign("u-admin", "ada@example.com", "Ada", []string{"admin"})
	walked := 0
	for _, r := range h.engine.Routes() {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			continue
		}
		for _, tok := range []string{h.tok("u-admin"), expired, ""} {
			before := h.writes()
			path := routePath(r.Path, a.Id) + "?return_to=%2Fadmin&code=code-u-admin&state=st-forged"
			resp, _ := h.do(req{method: r.Method, path: path, tok: tok, csrf: csrfTok,
				cookies: []*http.Cookie{{Name: cookieRefresh, Value: "rt-u-admin"}, {Name: cookieState, Value: "st-123"}}})
			walked++
			if after := h.writes(); !equalCounts(before, after) {
				t.Errorf("%s %s changed state: %v → %v", r.Method, path, before, after)
			}
			for _, name := range sessionCookies {
				if c := cookieNamed(resp, name); c != nil {
					t.Errorf("%s %s set cookie %s (max-age %d)", r.Method, path, name, c.MaxAge)
				}
			}
		}
	}
	if walked < 30 {
		t.Fatalf("walked only %d requests: the routes were not found", walked)
	}
}

func equalCounts(a, b map[string]int) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return len(a) == len(b)
}

// Session changes are POSTs from this site only: from another origin they
// are refused before anything happens.
func TestCrossSitePostsCannotChangeTheSession(t *testing.T) {
	h := newHarness(t)
	for _, path := range []string{"/auth/refresh", "/auth/renew?return_to=%2Fadmin", "/auth/login"} {
		for _, hdr := range []map[string]string{{"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}, {}} {
			before := h.backendCalls()
			resp, _ := h.do(req{method: http.MethodPost, path: path, form: url.Values{"return_to": {"/"}}, header: hdr,
				cookies: []*http.Cookie{{Name: cookieRefresh, Value: "rt-u-admin"}}})
			if resp.StatusCode != http.StatusForbidden || h.backendCalls() != before || len(resp.Cookies()) != 0 {
				t.Errorf("POST %s with %v: %d, %d calls, cookies %v", path, hdr, resp.StatusCode, h.backendCalls()-before, resp.Cookies())
			}
		}
	}
}

// A limit answers 429 with Retry-After and destroys nothing: the test walks
// every route (every method) while each service refuses every call with its
// rate limit, and checks that a request that reached a service was answered
// 429 with the service's Retry-After (or, for a page that works without
// what was refused, not with an error), that no session cookie was cleared, and
// that nothing was logged as an error. (Signing out clears the cookies
// whatever auth answers: that is what the visitor asked for.)
func TestLimitsAnswer429AndKeepTheSession(t *testing.T) {
	h := newHarness(t)
	a := h.published("Tides", "tides", "text")
	var logs testkit.LogBuffer
	h.logTo(&logs)
	h.auth.limited, h.articles.limited, h.media.limited = true, true, true
	expired, _ := token.NewSigner(testKey, "pressroom-auth", []string{"pressroom"}, -time.Minute).Sign("u-admin", "ada@example.com", "Ada", []string{"admin"})
	limited := 0
	for _, r := range h.engine.Routes() {
		for _, tok := range []string{h.tok("u-admin"), expired} {
			path := routePath(r.Path, a.Id)
			var form url.Values
			if r.Method == http.MethodPost {
				path += "?return_to=%2Fadmin&back=%2Fadmin"
				form = url.Values{"return_to": {"/admin"}, "title": {"T"}, "roles": {"author"}}
			} else {
				path += "?return_to=%2Fadmin"
			}
			before := h.backendCalls()
			resp, _ := h.do(req{method: r.Method, path: path, tok: tok, csrf: csrfTok, form: form,
				cookies: []*http.Cookie{{Name: cookieRefresh, Value: "rt-u-admin"}}, header: map[string]string{"Origin": origin}})
			if h.backendCalls() == before {
				continue
			}
			if r.Path == "/auth/logout" {
				continue
			}
			// A page may still work without what was refused (the editor
			// without its media list); a refusal itself is a 429.
			if resp.StatusCode == http.StatusTooManyRequests {
				limited++
			}
			if resp.StatusCode >= 500 || (resp.StatusCode == http.StatusTooManyRequests) != (resp.Header.Get("Retry-After") == "17") {
				t.Errorf("%s %s under a limit: %d, Retry-After %q", r.Method, path, resp.StatusCode, resp.Header.Get("Retry-After"))
			}
			for _, name := range sessionCookies {
				if c := cookieNamed(resp, name); c != nil && c.MaxAge < 0 {
					t.Errorf("%s %s under a limit cleared cookie %s", r.Method, path, name)
				}
			}
		}
	}
	if limited < 10 {
		t.Fatalf("only %d requests were answered 429: the walk missed the routes", limited)
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("a limit was logged as an error:\n%s", logs.String())
	}
}

// Route parameters and page tokens no service could hold are refused by web
// before any service sees them, as 400 or 404, never as an error: the test
// walks every route with a parameter, and every GET route with ?after=.
func TestHostileRouteParametersAreRefusedBeforeTheServices(t *testing.T) {
	h := newHarness(t)
	h.published("Tides", "tides", "text")
	var logs testkit.LogBuffer
	h.logTo(&logs)
	hostile := []string{"%00", "a%00b", "%C0%AF", "%FF", strings.Repeat("x", 600)}
	walked := 0
	for _, r := range h.engine.Routes() {
		var paths []string
		if strings.ContainsAny(r.Path, ":*") {
			for _, v := range hostile {
				paths = append(paths, strings.NewReplacer(":slug", v, ":id", v, "*file", "/"+v).Replace(r.Path))
			}
		}
		if r.Method == http.MethodGet {
			for _, v := range hostile {
				paths = append(paths, routePath(r.Path, "a001")+"?after="+v)
			}
		}
		for _, p := range paths {
			for _, tok := range []string{"", h.tok("u-admin")} {
				before := h.backendCalls()
				resp, _ := h.do(req{method: r.Method, path: p, tok: tok, csrf: csrfTok, form: formFor(r.Method),
					header: map[string]string{"Origin": origin}})
				walked++
				if resp.StatusCode >= 500 {
					t.Errorf("%s %s = %d", r.Method, p, resp.StatusCode)
				}
				if strings.Contains(p, "after=") && r.Path != "/static/*file" && r.Path != "/robots.txt" {
					continue // the page token is checked; the route may still call services for its own work
				}
				if h.backendCalls() != before && r.Path != "/static/*file" {
					t.Errorf("%s %s reached a service", r.Method, p)
				}
			}
		}
	}
	if walked < 50 {
		t.Fatalf("walked only %d requests", walked)
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("hostile input was logged as an error:\n%s", logs.String())
	}
}

func formFor(method string) url.Values {
	if method == http.MethodPost {
		return url.Values{"title": {"T"}}
	}
	return nil
}

// The provider's error text in the callback URL is not shown on the site:
// anyone can put any text there.
func TestCallbackErrorShowsAFixedMessage(t *testing.T) {
	h := newHarness(t)
	resp, body := h.do(req{path: "/auth/callback?error=" + url.QueryEscape("Your account is locked: call +1 555 0100")})
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("callback with error = %d", resp.StatusCode)
	}
	mustContain(t, body, "cancelled or refused by the identity provider")
	mustNotContain(t, body, "call +1 555 0100", "account is locked")
}

// An image in a body is a media file or an https URL: a same-site path
// would be a request every reader's browser sends by itself.
func TestMarkdownImagesAreMediaFilesOrHTTPS(t *testing.T) {
	md := NewMarkdown()
	out := string(md.Render("![a](" + boatPath + ") ![b](https://images.example.org/x.png) ![renew](/auth/renew) " +
		"![up](/media/../auth/refresh) ![rel](auth/renew) ![plain](http://example.org/x.png)"))
	for _, want := range []string{`src="` + boatPath + `"`, `src="https://images.example.org/x.png"`, "renew", "up", "rel", "plain"} {
		if !strings.Contains(out, want) {
			t.Errorf("rendered body lacks %q:\n%s", want, out)
		}
	}
	for _, bad := range []string{`src="/auth`, `src="/media/..`, `src="auth/renew"`, `src="http://`} {
		if strings.Contains(out, bad) {
			t.Errorf("rendered body keeps %q:\n%s", bad, out)
		}
	}
	// A cover that is not a media file (stored before covers were checked) is not shown.
	h := newHarness(t)
	h.articles.add(&articlev1.Article{Title: "Old", Slug: "old", AuthorId: "u-author", CoverMedia: "/media/../auth/renew",
		Status: articlev1.ArticleStatus_ARTICLE_STATUS_PUBLISHED})
	for _, p := range []string{"/", "/articles/old"} {
		_, body := h.do(req{path: p})
		mustNotContain(t, body, "/media/../auth/renew")
	}
}

// Every form on the site is held to the CSP's form-action 'self', and
// browsers apply it to the form's redirects too: a POST that redirects to
// another origin (the sign-in provider) leaves the visitor on a page that
// never moves. The test walks every POST route with a full session, from
// this site, and checks that no answer redirects off this origin.
func TestFormPostsNeverRedirectOffSite(t *testing.T) {
	h := newHarness(t)
	a := h.published("Tides", "tides", "text")
	walked := 0
	for _, r := range h.engine.Routes() {
		if r.Method != http.MethodPost {
			continue
		}
		for _, tok := range []string{h.tok("u-admin"), ""} {
			path := routePath(r.Path, a.Id) + "?return_to=%2Fadmin&back=%2Fadmin"
			form := url.Values{"return_to": {"/admin"}, "title": {"T"}, "roles": {"author"}}
			var cookies []*http.Cookie // signed out, the sign-in start goes on to the provider
			if tok != "" {
				cookies = []*http.Cookie{{Name: cookieRefresh, Value: "rt-u-admin"}}
			}
			resp, _ := h.do(req{method: r.Method, path: path, tok: tok, csrf: csrfTok, form: form, cookies: cookies,
				header: map[string]string{"Origin": origin}})
			walked++
			loc := resp.Header.Get("Location")
			if loc == "" {
				continue
			}
			u, err := url.Parse(loc)
			if err != nil || (u.IsAbs() && u.Scheme+"://"+u.Host != origin) || strings.HasPrefix(loc, "//") {
				t.Errorf("POST %s (signed in: %v) redirects off this site to %q", path, tok != "", loc)
			}
		}
	}
	if walked < 10 {
		t.Fatalf("walked only %d requests: the routes were not found", walked)
	}
}

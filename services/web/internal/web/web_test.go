package web

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/xml"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/gin-gonic/gin"

	"pressroom.dev/kit/connectkit"
	"pressroom.dev/kit/token"
	articlev1 "pressroom.dev/proto/gen/article/v1"
	"pressroom.dev/proto/gen/article/v1/articlev1connect"
	authv1 "pressroom.dev/proto/gen/auth/v1"
	"pressroom.dev/proto/gen/auth/v1/authv1connect"
)

const origin = "https://news.example.com"

type harness struct {
	t        testing.TB
	web      *httptest.Server
	app      *App
	signer   *token.Signer
	articles *fakeArticles
	auth     *fakeAuth
	media    *fakeMedia
	engine   *gin.Engine
}

var testKey = func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}()

func newHarness(t testing.TB) *harness {
	t.Helper()
	gin.SetMode(gin.TestMode)
	signer := token.NewSigner(testKey, "pressroom-auth", []string{"pressroom"}, 15*time.Minute)
	verifier, err := token.NewVerifier([]*rsa.PublicKey{&testKey.PublicKey}, "pressroom-auth", "pressroom")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, signer: signer, articles: newFakeArticles(),
		auth:  &fakeAuth{signer: signer, setRoles: map[string][]string{}},
		media: &fakeMedia{verifier: verifier}}
	h.auth.users = []*authv1.User{
		{Id: "u-admin", Email: "ada@example.com", Name: "Ada Admin", Roles: []string{"admin"}},
		{Id: "u-author", Email: "wren@example.com", Name: "Wren Writer", Roles: []string{"author"}},
		{Id: "u-reader", Email: "rory@example.com", Name: "Rory Reader", Roles: []string{"reader"}},
	}
	artPath, artH := articlev1connect.NewArticleServiceHandler(h.articles, connect.WithInterceptors(
		connectkit.AuthInterceptor(verifier, connectkit.AllowAnonymous(
			articlev1connect.ArticleServiceGetArticleProcedure, articlev1connect.ArticleServiceListArticlesProcedure))))
	authPath, authH := authv1connect.NewAuthServiceHandler(h.auth, connect.WithInterceptors(
		connectkit.AuthInterceptor(verifier, connectkit.AllowAnonymous(
			authv1connect.AuthServiceStartSignInProcedure, authv1connect.AuthServiceFinishSignInProcedure,
			authv1connect.AuthServiceRefreshProcedure, authv1connect.AuthServiceSignOutProcedure))))
	artSrv, authSrv, mediaSrv := serveConnect(artPath, artH), serveConnect(authPath, authH), httptest.NewServer(h.media)
	t.Cleanup(func() { artSrv.Close(); authSrv.Close(); mediaSrv.Close() })
	ics := connect.WithInterceptors(connectkit.ForwardToken())
	h.app, err = New(Options{
		Site:         Site{Title: "The Harbour Gazette", Description: "Local news.", URL: origin},
		Auth:         authv1connect.NewAuthServiceClient(http.DefaultClient, authSrv.URL, ics),
		Articles:     articlev1connect.NewArticleServiceClient(http.DefaultClient, artSrv.URL, ics),
		Media:        NewMediaClient(mediaSrv.URL, nil),
		Verifier:     verifier,
		PageCacheTTL: time.Minute,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	e := gin.New()
	_ = e.SetTrustedProxies([]string{"127.0.0.1"}) // the test client plays the edge proxy
	h.app.Register(e)
	h.engine = e
	h.web = httptest.NewServer(e)
	t.Cleanup(h.web.Close)
	return h
}

func (h *harness) tok(userID string) string {
	u := h.auth.user(userID)
	tok, err := h.signer.Sign(u.Id, u.Email, u.Name, u.Roles)
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

type req struct {
	method, path string
	form         url.Values
	tok          string // access-token cookie
	csrf         string // CSRF cookie and form field ("" = none)
	cookies      []*http.Cookie
	header       map[string]string
	body         io.Reader
	ctype        string
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func (h *harness) do(r req) (*http.Response, string) {
	h.t.Helper()
	if r.method == "" {
		r.method = http.MethodGet
	}
	body := r.body
	if r.form != nil {
		if r.csrf != "" {
			r.form.Set("csrf", r.csrf)
		}
		body = strings.NewReader(r.form.Encode())
		r.ctype = "application/x-www-form-urlencoded"
	}
	hr, err := http.NewRequest(r.method, h.web.URL+r.path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	if r.ctype != "" {
		hr.Header.Set("Content-Type", r.ctype)
	}
	if r.tok != "" {
		hr.AddCookie(&http.Cookie{Name: cookieAccess, Value: r.tok})
	}
	if r.csrf != "" {
		hr.AddCookie(&http.Cookie{Name: cookieCSRF, Value: r.csrf})
	}
	for _, c := range r.cookies {
		hr.AddCookie(c)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	resp, err := noRedirect.Do(hr)
	if err != nil {
		h.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// Media file paths as the media service names them.
var (
	coverPath = "/media/" + strings.Repeat("c0", 32) + ".png"
	boatPath  = "/media/" + strings.Repeat("b0", 32) + ".png"
)

const csrfTok = "csrf-0123456789abcdef0123456789abcdef"

func (h *harness) published(title, slug, body string) *articlev1.Article {
	return h.articles.add(&articlev1.Article{Title: title, Slug: slug, Summary: "About " + title, BodyMarkdown: body,
		AuthorId: "u-author", AuthorName: "Wren Writer", CoverMedia: coverPath,
		Status: articlev1.ArticleStatus_ARTICLE_STATUS_PUBLISHED})
}

func mustContain(t *testing.T, body string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(body, s) {
			t.Fatalf("page lacks %q:\n%s", s, body)
		}
	}
}

func mustNotContain(t *testing.T, body string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if strings.Contains(body, s) {
			t.Fatalf("page must not contain %q:\n%s", s, body)
		}
	}
}

func TestHomeListsPublishedArticlesWithHeadersAndETag(t *testing.T) {
	h := newHarness(t)
	h.published("Tides of March", "tides-of-march", "Body")
	h.articles.add(&articlev1.Article{Title: "Secret draft", Slug: "secret-draft", AuthorId: "u-author"})

	resp, body := h.do(req{path: "/"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET / = %d", resp.StatusCode)
	}
	mustContain(t, body, "Tides of March", "About Tides of March", "Wren Writer", `href="/articles/tides-of-march"`,
		`src="`+coverPath+`"`, "<title>The Harbour Gazette</title>", `property="og:title"`, `rel="alternate" type="application/atom+xml"`)
	mustNotContain(t, body, "Secret draft")

	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Fatalf("weak CSP: %q", csp)
	}
	for hdr, want := range map[string]string{"Referrer-Policy": "strict-origin-when-cross-origin", "X-Content-Type-Options": "nosniff",
		"Strict-Transport-Security": "max-age=31536000; includeSubDomains"} {
		if got := resp.Header.Get(hdr); got != want {
			t.Errorf("%s = %q, want %q", hdr, got, want)
		}
	}
	etag := resp.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag on the home page")
	}
	resp, body = h.do(req{method: http.MethodHead, path: "/"})
	if resp.StatusCode != http.StatusOK || body != "" || resp.Header.Get("ETag") != etag {
		t.Fatalf("HEAD / = %d, %d bytes, ETag %q", resp.StatusCode, len(body), resp.Header.Get("ETag"))
	}
	resp, body = h.do(req{path: "/", header: map[string]string{"If-None-Match": etag}})
	if resp.StatusCode != http.StatusNotModified || body != "" {
		t.Fatalf("conditional GET = %d with %d bytes, want 304 and no body", resp.StatusCode, len(body))
	}
	// Served from the page cache: one ListArticles call for both requests.
	if n := h.articles.calls["ListArticles"]; n != 1 {
		t.Fatalf("ListArticles called %d times, want 1 (cached)", n)
	}
}

// A page is cached under its path and the query parameters it reads, so a
// stream of made-up query strings is one entry and one backend call, not one
// each: a review filled 3.5 GB of heap with /feed.xml?x=1 … ?x=1999.
func TestPageCacheKeysOnlyWhatAPageReads(t *testing.T) {
	h := newHarness(t)
	for i := 0; i < homePageSize+3; i++ {
		h.published("Story "+string(rune('A'+i)), "story-"+string(rune('a'+i)), "x")
	}
	for i := 0; i < 50; i++ {
		for _, path := range []string{"/feed.xml?x=%d", "/?utm_source=%d", "/articles/story-a?x=%d", "/sitemap.xml?v=%d"} {
			if resp, _ := h.do(req{path: fmt.Sprintf(path, i)}); resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s = %d", fmt.Sprintf(path, i), resp.StatusCode)
			}
		}
	}
	h.articles.mu.Lock()
	lists, gets := h.articles.calls["ListArticles"], h.articles.calls["GetArticle"]
	h.articles.mu.Unlock()
	if lists > 3 || gets > 1 { // home, feed, sitemap list once each; the article page gets once
		t.Fatalf("200 requests under 4 pages made %d ListArticles and %d GetArticle calls, want at most 3 and 1", lists, gets)
	}
	// The page token is part of the key: page 2 is not page 1.
	_, first := h.do(req{path: "/"})
	_, second := h.do(req{path: "/?after=12&utm_source=x"})
	if first == second {
		t.Fatal("/?after=12 served the first page from the cache")
	}
}

func TestPageCacheStaysWithinItsBounds(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	pc := newPageCache(time.Minute, func() time.Time { return now })
	page := make([]byte, 1<<20)
	for i := 0; i < 200; i++ {
		pc.put(fmt.Sprintf("/p%d", i), cachedPage{status: 200, body: page}, pc.generation())
		if pc.bytes > pageCacheMaxBytes || len(pc.m) > pageCacheMax {
			t.Fatalf("after %d pages: %d bytes in %d entries, bounds %d and %d", i+1, pc.bytes, len(pc.m), pageCacheMaxBytes, pageCacheMax)
		}
	}
	pc.put("/huge", cachedPage{status: 200, body: make([]byte, pageCacheMaxBytes/16+1)}, pc.generation())
	if _, ok := pc.get("/huge"); ok {
		t.Fatal("a page of a sixteenth of the cache was kept")
	}
	pc.clear()
	pc.put("/a", cachedPage{status: 200, body: page}, pc.generation())
	now = now.Add(2 * time.Minute)
	if _, ok := pc.get("/a"); ok || len(pc.m) != 0 || pc.bytes != 0 {
		t.Fatalf("an expired page is still held: %d entries, %d bytes", len(pc.m), pc.bytes)
	}
}

// getConcurrently asks for path from n visitors at once while the article
// service holds every call, lets the calls go once the first has arrived
// and the rest have had time to, and returns each visitor's status and body.
func getConcurrently(t *testing.T, h *harness, path string, n int) (statuses []int, bodies []string) {
	t.Helper()
	gate := make(chan struct{})
	h.articles.mu.Lock()
	h.articles.gate = gate
	h.articles.mu.Unlock()
	type answer struct {
		status int
		body   string
		err    error
	}
	answers := make(chan answer, n)
	for range n {
		go func() {
			resp, err := http.Get(h.web.URL + path)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			answers <- answer{resp.StatusCode, string(b), err}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.articles.callCount("GetArticle") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no visitor reached the article service within 10 s")
		}
		time.Sleep(time.Millisecond)
	}
	// Uncoalesced, every visitor would have called the service by now.
	time.Sleep(300 * time.Millisecond)
	close(gate)
	for range n {
		a := <-answers
		if a.err != nil {
			t.Fatal(a.err)
		}
		statuses, bodies = append(statuses, a.status), append(bodies, a.body)
	}
	return statuses, bodies
}

// When a page expires under load, the visitors asking for it share one
// build: the benchmark's platform log showed some twenty GetArticle calls
// within 10 ms each time the article page expired.
func TestConcurrentMissesShareOneBuild(t *testing.T) {
	h := newHarness(t)
	h.published("Tides", "tides", "The tide came in.")
	const visitors = 12
	statuses, bodies := getConcurrently(t, h, "/articles/tides", visitors)
	for i := range visitors {
		if statuses[i] != http.StatusOK || bodies[i] != bodies[0] {
			t.Fatalf("visitor %d: status %d, same page as the first: %v", i, statuses[i], bodies[i] == bodies[0])
		}
	}
	if got := h.articles.callCount("GetArticle"); got != 1 {
		t.Fatalf("%d visitors missing the cache together made %d GetArticle calls, want 1", visitors, got)
	}
}

// A failed shared build fails only the request that ran it: the others
// build their own page (the failure may be that visitor leaving).
func TestFailedSharedBuildFailsOnlyItsOwnRequest(t *testing.T) {
	h := newHarness(t)
	h.published("Tides", "tides", "The tide came in.")
	h.articles.mu.Lock()
	h.articles.failWith = connect.NewError(connect.CodeUnavailable, errors.New("article service restarting"))
	h.articles.mu.Unlock()
	const visitors = 6
	statuses, bodies := getConcurrently(t, h, "/articles/tides", visitors)
	failed := 0
	for i, s := range statuses {
		switch {
		case s >= 500:
			failed++
		case s != http.StatusOK || !strings.Contains(bodies[i], "The tide came in."):
			t.Fatalf("visitor %d: status %d and no article: %.200q", i, s, bodies[i])
		}
	}
	if failed != 1 {
		t.Fatalf("statuses %v: one build failed, so exactly one visitor should see an error", statuses)
	}
}

// An edit clears the cache; a page whose build began before the edit must
// not be kept after it, or an unpublished article would come back for a
// PAGE_CACHE_TTL.
func TestPageBuiltBeforeAnEditIsNotKept(t *testing.T) {
	h := newHarness(t)
	h.published("Tides", "tides", "The tide came in.")
	gate := make(chan struct{})
	h.articles.mu.Lock()
	h.articles.gate = gate
	h.articles.mu.Unlock()
	first := make(chan int, 1)
	go func() {
		resp, err := http.Get(h.web.URL + "/articles/tides")
		if err != nil {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	deadline := time.Now().Add(10 * time.Second)
	for h.articles.callCount("GetArticle") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the page build never reached the article service")
		}
		time.Sleep(time.Millisecond)
	}
	h.app.Invalidate() // an edit lands while the page is being built
	// A visitor after the edit does not wait for the build that began before it.
	second := make(chan int, 1)
	go func() {
		resp, err := http.Get(h.web.URL + "/articles/tides")
		if err != nil {
			second <- 0
			return
		}
		resp.Body.Close()
		second <- resp.StatusCode
	}()
	for h.articles.callCount("GetArticle") < 2 {
		if time.Now().After(deadline) {
			t.Fatal("a visitor after the edit joined the build that began before it")
		}
		time.Sleep(time.Millisecond)
	}
	close(gate)
	if a, b := <-first, <-second; a != http.StatusOK || b != http.StatusOK {
		t.Fatalf("statuses %d and %d, want 200s", a, b)
	}
	h.articles.mu.Lock()
	h.articles.gate = nil
	h.articles.mu.Unlock()
	// The second build began after the edit and is kept; the first is not.
	// Either way one more visit is served from the cache.
	if resp, _ := h.do(req{path: "/articles/tides"}); resp.StatusCode != http.StatusOK {
		t.Fatalf("third visit: %d", resp.StatusCode)
	}
	if got := h.articles.callCount("GetArticle"); got != 2 {
		t.Fatalf("GetArticle calls: %d, want 2 (the third visit from the cache)", got)
	}
}

// A page built before an edit is dropped even when nobody asks again
// during the build: the next visit builds afresh.
func TestStaleBuildIsDroppedByTheCache(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	pc := newPageCache(time.Minute, func() time.Time { return now })
	gen := pc.generation()
	pc.clear() // the edit
	pc.put("/articles/tides", cachedPage{status: 200, body: []byte("old")}, gen)
	if _, ok := pc.get("/articles/tides"); ok {
		t.Fatal("a page built before the cache was cleared was kept")
	}
	pc.put("/articles/tides", cachedPage{status: 200, body: []byte("new")}, pc.generation())
	if p, ok := pc.get("/articles/tides"); !ok || string(p.body) != "new" {
		t.Fatal("a page built after the clear was not kept")
	}
}

// countingBody is a request body that counts what the server read of it.
type countingBody struct {
	r io.Reader
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	return n, err
}

// No form outside /admin is larger than a sign-out, so web reads at most
// 64 KiB of any other body before it answers: a review had an anonymous
// POST /auth/logout parse 69 MB.
func TestBodiesAreBoundedBeforeTheyAreParsed(t *testing.T) {
	h := newHarness(t)
	huge := strings.Repeat("a", 16<<20)
	for _, tc := range []struct {
		what, path, ctype, body string
		cookies                 []*http.Cookie
	}{
		{"anonymous sign-out", "/auth/logout", "application/x-www-form-urlencoded", "x=" + huge + "&csrf=" + csrfTok, nil},
		{"sign-out with the CSRF cookie", "/auth/logout", "application/x-www-form-urlencoded", "x=" + huge + "&csrf=" + csrfTok,
			[]*http.Cookie{{Name: cookieCSRF, Value: csrfTok}}},
		{"multipart sign-out", "/auth/logout", "multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x\"\r\n\r\n" + huge,
			[]*http.Cookie{{Name: cookieCSRF, Value: csrfTok}}},
		{"a post to an unknown page", "/nowhere", "application/x-www-form-urlencoded", huge, nil},
	} {
		body := &countingBody{r: strings.NewReader(tc.body)}
		r := httptest.NewRequest(http.MethodPost, "/auth/logout", body)
		r.URL.Path = tc.path
		r.Header.Set("Content-Type", tc.ctype)
		r.Header.Set("Origin", origin)
		for _, ck := range tc.cookies {
			r.AddCookie(ck)
		}
		w := httptest.NewRecorder()
		h.web.Config.Handler.ServeHTTP(w, r)
		if w.Code == http.StatusOK || w.Code == http.StatusFound {
			t.Errorf("%s: %d, want a refusal", tc.what, w.Code)
		}
		if body.n > 64<<10+32<<10 {
			t.Errorf("%s: web read %d bytes of the body, want at most 64 KiB (and a buffer)", tc.what, body.n)
		}
	}
}

func TestHomePaging(t *testing.T) {
	h := newHarness(t)
	for i := 0; i < homePageSize+3; i++ {
		h.published("Story "+string(rune('A'+i)), "story-"+string(rune('a'+i)), "x")
	}
	_, body := h.do(req{path: "/"})
	mustContain(t, body, `rel="next"`, "?after=12")
	_, body = h.do(req{path: "/?after=12"})
	mustContain(t, body, "Story C", "Story A", `name="robots" content="noindex"`)
	mustNotContain(t, body, "Story D", `rel="next"`)
}

func TestArticlePageRendersSanitizedMarkdown(t *testing.T) {
	h := newHarness(t)
	h.published("Night shift", "night-shift", "# Heading\n\nSome *emphasis* and a [link](https://example.org).\n\n"+
		"<script>alert(1)</script>\n<img src=x onerror=alert(2)>\n[bad](javascript:alert(3))\n<p style=\"color:red\" onclick=\"x()\">styled</p>\n<iframe src=\"https://evil.example\"></iframe>")
	resp, body := h.do(req{path: "/articles/night-shift"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	mustContain(t, body, "<h1>Heading</h1>", "<em>emphasis</em>", `href="https://example.org"`,
		`<meta property="og:type" content="article">`, `<meta property="og:image" content="https://news.example.com`+coverPath+`">`,
		`<link rel="canonical" href="https://news.example.com/articles/night-shift">`, "<title>Night shift · The Harbour Gazette</title>",
		`<meta name="description" content="About Night shift">`)
	mustNotContain(t, body, "<script", "onerror", "javascript:", "onclick", `style="`, "<iframe")
}

func TestDraftsAndUnknownPagesAre404(t *testing.T) {
	h := newHarness(t)
	h.articles.add(&articlev1.Article{Title: "Draft", Slug: "draft-one", AuthorId: "u-author"})
	for _, p := range []string{"/articles/draft-one", "/articles/nope", "/no/such/page", "/authors/nobody"} {
		resp, body := h.do(req{path: p})
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", p, resp.StatusCode)
		}
		mustContain(t, body, `id="problem"`)
	}
	// Its author can look at it at the public address, marked as a draft.
	resp, body := h.do(req{path: "/articles/draft-one", tok: h.tok("u-author")})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("author viewing own draft = %d", resp.StatusCode)
	}
	mustContain(t, body, "<strong>Draft</strong>", `content="noindex"`)
}

func TestServiceOutageIsAFriendlyPage(t *testing.T) {
	h := newHarness(t)
	h.articles.failWith = connect.NewError(connect.CodeInternal, io.ErrUnexpectedEOF)
	resp, body := h.do(req{path: "/"})
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("status %d", resp.StatusCode)
	}
	mustContain(t, body, "Something went wrong")
	mustNotContain(t, body, "unexpected EOF", "goroutine")
	h.articles.failWith = connect.NewError(connect.CodeUnavailable, io.EOF)
	resp, _ = h.do(req{path: "/?after=1"})
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("unavailable backend = %d, want 503", resp.StatusCode)
	}
}

func TestFeedAndSitemap(t *testing.T) {
	h := newHarness(t)
	h.published("First & best", "first", "Hello <b>world</b>")
	h.published("Second", "second", "More")
	resp, body := h.do(req{path: "/feed.xml"})
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/atom+xml") {
		t.Fatalf("feed content type %q", ct)
	}
	var feed atomFeed
	if err := xml.Unmarshal([]byte(body), &feed); err != nil {
		t.Fatalf("feed is not XML: %v\n%s", err, body)
	}
	if len(feed.Entries) != 2 || feed.Entries[1].Title != "First & best" || feed.Entries[0].Link.Href != origin+"/articles/second" {
		t.Fatalf("feed entries: %+v", feed.Entries)
	}
	_, body = h.do(req{path: "/sitemap.xml"})
	var set struct {
		URLs []struct {
			Loc string `xml:"loc"`
		} `xml:"url"`
	}
	if err := xml.Unmarshal([]byte(body), &set); err != nil {
		t.Fatalf("sitemap is not XML: %v", err)
	}
	var locs []string
	for _, u := range set.URLs {
		locs = append(locs, u.Loc)
	}
	got := strings.Join(locs, " ")
	for _, want := range []string{origin + "/", origin + "/articles/first", origin + "/articles/second", origin + "/authors/u-author"} {
		if !strings.Contains(got, want) {
			t.Errorf("sitemap lacks %s: %s", want, got)
		}
	}
}

func TestAuthorPage(t *testing.T) {
	h := newHarness(t)
	h.published("By Wren", "by-wren", "x")
	h.articles.add(&articlev1.Article{Title: "Other", Slug: "other", AuthorId: "u-admin", AuthorName: "Ada",
		Status: articlev1.ArticleStatus_ARTICLE_STATUS_PUBLISHED})
	_, body := h.do(req{path: "/authors/u-author"})
	mustContain(t, body, "Articles by Wren Writer", "By Wren")
	mustNotContain(t, body, ">Other<")
}

func TestSignInFlowSetsSecureCookies(t *testing.T) {
	h := newHarness(t)
	// The sign-in page's form starts the sign-in (a POST, sent by continue.js).
	resp, body := h.do(req{path: "/login?return_to=/admin"})
	if resp.StatusCode != http.StatusOK || h.auth.callCount("StartSignIn") != 0 {
		t.Fatalf("/login → %d, %d sign-ins started", resp.StatusCode, h.auth.callCount("StartSignIn"))
	}
	mustContain(t, body, `action="/auth/login"`, `name="return_to" value="/admin"`, `data-autosubmit`, `/static/continue.js?v=`)
	resp, _ = h.do(req{path: "/auth/login?return_to=/admin"})
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || loc != "/login?return_to=%2Fadmin" {
		t.Fatalf("GET /auth/login → %d %q", resp.StatusCode, loc)
	}
	resp, body = h.do(req{method: http.MethodPost, path: "/auth/login", form: url.Values{"return_to": {"/admin"}},
		header: map[string]string{"X-Forwarded-For": "6.6.6.6, 198.51.100.4", "Origin": origin}})
	if h.auth.lastXFF != "198.51.100.4" {
		t.Fatalf("auth saw X-Forwarded-For %q, want the browser's address from our proxy", h.auth.lastXFF)
	}
	if loc := providerLink(t, resp, body); !strings.HasPrefix(loc, "https://id.example.com/authorize") || !strings.Contains(loc, "return=/admin") {
		t.Fatalf("/auth/login links on to %q", loc)
	}
	state := cookieNamed(resp, cookieState)
	if state == nil || state.Value != "st-123" || state.Path != "/auth" || !state.HttpOnly || !state.Secure {
		t.Fatalf("state cookie: %+v", state)
	}

	// A callback whose state doesn't match this browser is refused.
	resp, body = h.do(req{path: "/auth/callback?code=code-u-author&state=st-123"})
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("callback without state cookie = %d", resp.StatusCode)
	}
	mustContain(t, body, "sign in again")

	resp, _ = h.do(req{path: "/auth/callback?code=code-u-author&state=st-123", cookies: []*http.Cookie{{Name: cookieState, Value: "st-123"}}})
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/admin" {
		t.Fatalf("callback → %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	at, rt := cookieNamed(resp, cookieAccess), cookieNamed(resp, cookieRefresh)
	if at == nil || at.Path != "/" || !at.HttpOnly || !at.Secure || at.SameSite != http.SameSiteLaxMode || at.MaxAge < 86000 || at.MaxAge > 86400 {
		t.Fatalf("access cookie: %+v", at)
	}
	if rt == nil || rt.Value != "rt-u-author" || rt.Path != "/auth" || !rt.HttpOnly || !rt.Secure || rt.SameSite != http.SameSiteLaxMode {
		t.Fatalf("refresh cookie: %+v", rt)
	}
	// The new access token works at /admin.
	resp, _ = h.do(req{path: "/admin/articles", tok: at.Value})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/admin with the new token = %d", resp.StatusCode)
	}
	// A bad code shows the reason.
	resp, body = h.do(req{path: "/auth/callback?code=code-nobody&state=st-123", cookies: []*http.Cookie{{Name: cookieState, Value: "st-123"}}})
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad code = %d", resp.StatusCode)
	}
	mustContain(t, body, "invalid or expired")
}

// Every redirect made from a request's return_to, or from auth's answer,
// lands on this site as a browser reads the Location header. A browser drops
// tabs and newlines and reads "\" as "/", so "/\t/evil.example" means
// //evil.example: web once let that through its own, weaker check.
func TestOpenRedirectsAreRefused(t *testing.T) {
	h := newHarness(t)
	signedIn := []*http.Cookie{{Name: cookieRefresh, Value: "rt-u-author"}}
	stateCookie := []*http.Cookie{{Name: cookieState, Value: "st-123"}}
	for _, target := range []string{"https://evil.example", "//evil.example", "/\\evil.example", "/\t/evil.example",
		"/\n/evil.example", "\t//evil.example", "javascript:alert(1)", "admin", "/ok\r\nX: y"} {
		q := url.QueryEscape(target)
		post := url.Values{"return_to": {target}}
		for _, tc := range []struct {
			what, method, path string
			form               url.Values
			cookies            []*http.Cookie
		}{
			{"refresh, signed out", http.MethodGet, "/auth/refresh?return_to=" + q, nil, nil},
			{"refresh, signed out", http.MethodPost, "/auth/refresh", post, nil},
			{"refresh, signed in", http.MethodPost, "/auth/refresh", post, signedIn},
			{"login with a live session", http.MethodPost, "/auth/login", post, signedIn},
			{"callback with this return_to from auth", http.MethodGet, "/auth/callback?code=code-u-author&state=st-123", nil, stateCookie},
		} {
			h.auth.mu.Lock()
			h.auth.returnTo = target
			h.auth.mu.Unlock()
			resp, _ := h.do(req{method: tc.method, path: tc.path, form: tc.form, cookies: tc.cookies, header: map[string]string{"Origin": origin}})
			if loc := resp.Header.Get("Location"); (resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther) || loc != "/" {
				t.Errorf("%s %s, return_to %q: %d to %q, want a redirect to /", tc.what, tc.method, target, resp.StatusCode, loc)
			}
		}
		// What the sign-in start passes on is already the cleaned path.
		if _, body := h.do(req{path: "/login?return_to=" + q}); !strings.Contains(body, `name="return_to" value="/"`) {
			t.Errorf("/login, return_to %q: the form does not carry /", target)
		}
		if resp, _ := h.do(req{path: "/auth/login?return_to=" + q}); resp.Header.Get("Location") != "/login?return_to=%2F" {
			t.Errorf("GET /auth/login, return_to %q: to %q", target, resp.Header.Get("Location"))
		}
		if resp, body := h.do(req{method: http.MethodPost, path: "/auth/login", form: post, header: map[string]string{"Origin": origin}}); !strings.HasSuffix(providerLink(t, resp, body), "&return=/") {
			t.Errorf("/auth/login, return_to %q: auth was asked for %q", target, providerLink(t, resp, body))
		}
	}
	h.auth.mu.Lock()
	h.auth.returnTo = ""
	h.auth.mu.Unlock()
	// A local path with a query comes back unchanged.
	resp, _ := h.do(req{method: http.MethodPost, path: "/auth/refresh", form: url.Values{"return_to": {"/articles/tides?page=2"}},
		header: map[string]string{"Origin": origin}})
	if loc := resp.Header.Get("Location"); loc != "/articles/tides?page=2" {
		t.Errorf("a local return_to became %q", loc)
	}
}

func TestExpiredSessionRefreshesTransparently(t *testing.T) {
	h := newHarness(t)
	// No access token: /admin goes through refresh and comes back.
	resp, _ := h.do(req{path: "/admin/articles?status=draft"})
	if loc := resp.Header.Get("Location"); loc != "/auth/refresh?return_to=%2Fadmin%2Farticles%3Fstatus%3Ddraft" {
		t.Fatalf("anonymous /admin → %q", loc)
	}
	// The refresh page renews nothing itself: its form does, with a POST.
	resp, body := h.do(req{path: "/auth/refresh?return_to=/admin/articles", cookies: []*http.Cookie{{Name: cookieRefresh, Value: "rt-u-author"}}})
	if resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 0 || h.auth.callCount("Refresh") != 0 {
		t.Fatalf("GET /auth/refresh → %d, cookies %v, %d refreshes", resp.StatusCode, resp.Cookies(), h.auth.callCount("Refresh"))
	}
	mustContain(t, body, `action="/auth/refresh"`, `name="return_to" value="/admin/articles"`, `data-autosubmit`)
	resp, _ = h.do(req{method: http.MethodPost, path: "/auth/refresh", form: url.Values{"return_to": {"/admin/articles"}},
		cookies: []*http.Cookie{{Name: cookieRefresh, Value: "rt-u-author"}}, header: map[string]string{"Origin": origin}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin/articles" || cookieNamed(resp, cookieAccess) == nil {
		t.Fatalf("refresh → %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// An expired access token on a public page is refreshed too, and the page comes back.
	expiredTok, _ := token.NewSigner(testKey, "pressroom-auth", []string{"pressroom"}, -time.Minute).Sign("u-author", "w@example.com", "W", []string{"author"})
	resp, _ = h.do(req{path: "/articles/x?y=1", tok: expiredTok})
	if loc := resp.Header.Get("Location"); loc != "/auth/refresh?return_to=%2Farticles%2Fx%3Fy%3D1" {
		t.Fatalf("expired token on a public page → %d %q", resp.StatusCode, loc)
	}
	// ...but a reader whose session is gone just sees the public page signed out, never a forced sign-in.
	resp, _ = h.do(req{method: http.MethodPost, path: "/auth/refresh", form: url.Values{"return_to": {"/articles/x"}},
		cookies: []*http.Cookie{{Name: cookieRefresh, Value: "rt-revoked"}}, header: map[string]string{"Origin": origin}})
	if loc := resp.Header.Get("Location"); loc != "/articles/x" {
		t.Fatalf("failed refresh for a public page → %q", loc)
	}
	if c := cookieNamed(resp, cookieAccess); c == nil || c.MaxAge >= 0 {
		t.Fatalf("access cookie not cleared: %+v", c)
	}
	// Feeds never bounce through refresh.
	resp, _ = h.do(req{path: "/feed.xml", tok: expiredTok})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("feed with an expired cookie = %d", resp.StatusCode)
	}
	// An invalid refresh token clears the cookies and starts a sign-in.
	resp, _ = h.do(req{method: http.MethodPost, path: "/auth/refresh", form: url.Values{"return_to": {"/admin"}},
		cookies: []*http.Cookie{{Name: cookieRefresh, Value: "rt-stolen"}}, header: map[string]string{"Origin": origin}})
	if loc := resp.Header.Get("Location"); loc != "/login?return_to=%2Fadmin" {
		t.Fatalf("bad refresh → %q", loc)
	}
	if c := cookieNamed(resp, cookieRefresh); c == nil || c.MaxAge >= 0 {
		t.Fatalf("refresh cookie not cleared: %+v", c)
	}
	// An expired access token counts as none.
	expired, _ := token.NewSigner(testKey, "pressroom-auth", []string{"pressroom"}, -time.Minute).Sign("u-author", "w@example.com", "W", []string{"author"})
	resp, _ = h.do(req{path: "/admin", tok: expired})
	if !strings.HasPrefix(resp.Header.Get("Location"), "/auth/refresh") {
		t.Fatalf("expired token at /admin → %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestLogoutRevokesAndClears(t *testing.T) {
	h := newHarness(t)
	resp, _ := h.do(req{method: http.MethodPost, path: "/auth/logout", form: url.Values{}, csrf: csrfTok, tok: h.tok("u-reader"),
		cookies: []*http.Cookie{{Name: cookieRefresh, Value: "rt-u-reader"}}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout = %d", resp.StatusCode)
	}
	if len(h.auth.signOuts) != 1 || h.auth.signOuts[0] != "rt-u-reader" {
		t.Fatalf("auth SignOut calls: %v", h.auth.signOuts)
	}
	if c := cookieNamed(resp, cookieAccess); c == nil || c.MaxAge >= 0 {
		t.Fatalf("access cookie not cleared")
	}
	// Without the CSRF token nothing is revoked.
	resp, _ = h.do(req{method: http.MethodPost, path: "/auth/logout", form: url.Values{}, tok: h.tok("u-reader"),
		cookies: []*http.Cookie{{Name: cookieRefresh, Value: "rt-u-reader"}}})
	if resp.StatusCode != http.StatusForbidden || len(h.auth.signOuts) != 1 {
		t.Fatalf("logout without CSRF = %d, signOuts %d", resp.StatusCode, len(h.auth.signOuts))
	}
}

func TestReadersGetAFriendly403(t *testing.T) {
	h := newHarness(t)
	for _, p := range []string{"/admin", "/admin/articles/new", "/admin/media", "/admin/users"} {
		resp, body := h.do(req{path: p, tok: h.tok("u-reader")})
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("reader at %s = %d", p, resp.StatusCode)
		}
		mustContain(t, body, "only for authors and admins", "sign out and sign in again")
		mustNotContain(t, body, `id="editor"`)
	}
	resp, body := h.do(req{path: "/admin/users", tok: h.tok("u-author")})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("author at /admin/users = %d", resp.StatusCode)
	}
	mustContain(t, body, "Only admins can manage users")
}

func TestCSRFIsRequiredOnEveryStateChange(t *testing.T) {
	h := newHarness(t)
	a := h.articles.add(&articlev1.Article{Title: "Mine", Slug: "mine", AuthorId: "u-author"})
	tok := h.tok("u-author")
	posts := []string{"/admin/articles", "/admin/articles/" + a.Id, "/admin/articles/" + a.Id + "/publish",
		"/admin/articles/" + a.Id + "/unpublish", "/admin/articles/" + a.Id + "/delete", "/admin/media", "/admin/media/m1/delete"}
	for _, p := range posts {
		resp, body := h.do(req{method: http.MethodPost, path: p, tok: tok, form: url.Values{"title": {"x"}}})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s without CSRF = %d", p, resp.StatusCode)
		}
		mustContain(t, body, "form has expired")
		// Wrong token.
		resp, _ = h.do(req{method: http.MethodPost, path: p, tok: tok, form: url.Values{"csrf": {"nope"}}, cookies: []*http.Cookie{{Name: cookieCSRF, Value: csrfTok}}})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s with a wrong CSRF token = %d", p, resp.StatusCode)
		}
	}
	// Right token, foreign Origin.
	resp, body := h.do(req{method: http.MethodPost, path: "/admin/articles", tok: tok, csrf: csrfTok, form: url.Values{"title": {"x"}},
		header: map[string]string{"Origin": "https://evil.example"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin POST = %d", resp.StatusCode)
	}
	mustContain(t, body, "another site")
	if n := h.articles.calls["CreateArticle"] + h.articles.calls["PublishArticle"] + h.articles.calls["DeleteArticle"]; n != 0 {
		t.Fatalf("%d state-changing calls reached the article service", n)
	}
	// Pages with forms carry the token and set the cookie.
	resp, body = h.do(req{path: "/admin/articles/new", tok: tok})
	c := cookieNamed(resp, cookieCSRF)
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
		t.Fatalf("CSRF cookie: %+v", c)
	}
	mustContain(t, body, `name="csrf" value="`+c.Value+`"`)
}

func TestWriteAndPublishAnArticle(t *testing.T) {
	h := newHarness(t)
	h.media.items = []MediaItem{{ID: "m1", Filename: "boat.png", URL: boatPath, ContentType: "image/png", Size: 2048}}
	tok := h.tok("u-author")
	// The public home page is cached before the article exists.
	_, body := h.do(req{path: "/"})
	mustNotContain(t, body, "Harbour lights")

	// Editor offers the media library as covers.
	_, body = h.do(req{path: "/admin/articles/new", tok: tok})
	mustContain(t, body, `value="`+boatPath+`"`, "Save draft", "Preview")

	// Preview renders (sanitized) without saving.
	form := url.Values{"title": {"Harbour lights"}, "summary": {"Night on the quay"}, "body": {"**bold** <script>x()</script>"},
		"cover_media": {boatPath}, "action": {"preview"}}
	resp, body := h.do(req{method: http.MethodPost, path: "/admin/articles", tok: tok, csrf: csrfTok, form: form})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("preview = %d", resp.StatusCode)
	}
	mustContain(t, body, `id="preview"`, "<strong>bold</strong>", `value="Harbour lights"`)
	mustNotContain(t, body, "<script>x()")
	if h.articles.calls["CreateArticle"] != 0 {
		t.Fatal("preview saved the article")
	}

	// Save creates a draft, with the user's token forwarded to the service.
	form.Set("action", "save")
	resp, _ = h.do(req{method: http.MethodPost, path: "/admin/articles", tok: tok, csrf: csrfTok, form: form})
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasSuffix(loc, "/edit?done=created") {
		t.Fatalf("save → %d %q", resp.StatusCode, loc)
	}
	if h.articles.lastTok != tok {
		t.Fatal("the user's token was not forwarded to the article service")
	}
	id := strings.Split(loc, "/")[3]
	_, body = h.do(req{path: loc, tok: tok})
	mustContain(t, body, "Article created as a draft.", `value="harbour-lights"`, `id="publish"`)

	// Publish asks first, then publishes; the cached home page shows it at once.
	_, body = h.do(req{path: "/admin/articles/" + id + "/publish", tok: tok})
	mustContain(t, body, "Publish “Harbour lights”?", `action="/admin/articles/`+id+`/publish"`)
	resp, _ = h.do(req{method: http.MethodPost, path: "/admin/articles/" + id + "/publish", tok: tok, csrf: csrfTok, form: url.Values{}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("publish = %d", resp.StatusCode)
	}
	_, body = h.do(req{path: "/"})
	mustContain(t, body, "Harbour lights", `src="`+boatPath+`"`)

	// Unpublish takes it off the site.
	resp, _ = h.do(req{method: http.MethodPost, path: "/admin/articles/" + id + "/unpublish", tok: tok, csrf: csrfTok, form: url.Values{}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("unpublish = %d", resp.StatusCode)
	}
	_, body = h.do(req{path: "/"})
	mustNotContain(t, body, "Harbour lights")
	resp, _ = h.do(req{path: "/articles/harbour-lights"})
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unpublished article = %d", resp.StatusCode)
	}

	// Delete.
	resp, _ = h.do(req{method: http.MethodPost, path: "/admin/articles/" + id + "/delete", tok: tok, csrf: csrfTok, form: url.Values{}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin/articles?done=deleted" {
		t.Fatalf("delete → %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if len(h.articles.byID) != 0 {
		t.Fatal("article not deleted")
	}
}

func TestServiceRefusalsShowOnTheForm(t *testing.T) {
	h := newHarness(t)
	h.articles.add(&articlev1.Article{Title: "Taken", Slug: "taken", AuthorId: "u-admin"})
	tok := h.tok("u-author")
	resp, body := h.do(req{method: http.MethodPost, path: "/admin/articles", tok: tok, csrf: csrfTok,
		form: url.Values{"title": {"Another"}, "slug": {"taken"}, "body": {"my words"}, "action": {"save"}}})
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("duplicate slug = %d", resp.StatusCode)
	}
	mustContain(t, body, "Not saved: the slug &#34;taken&#34; is taken; choose another.", "my words")

	// Missing title is caught before the call.
	resp, body = h.do(req{method: http.MethodPost, path: "/admin/articles", tok: tok, csrf: csrfTok, form: url.Values{"body": {"x"}, "action": {"save"}}})
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("no title = %d", resp.StatusCode)
	}
	mustContain(t, body, "Please give the article a title.")

	// Someone else's article: the service's rule is enforced and shown.
	other := h.articles.add(&articlev1.Article{Title: "Ada's", Slug: "adas", AuthorId: "u-admin", Status: articlev1.ArticleStatus_ARTICLE_STATUS_PUBLISHED})
	resp, body = h.do(req{method: http.MethodPost, path: "/admin/articles/" + other.Id + "/unpublish", tok: tok, csrf: csrfTok, form: url.Values{}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("unpublish someone else's = %d", resp.StatusCode)
	}
	mustContain(t, body, "you can only change your own articles")
	mustNotContain(t, body, "goroutine", "rpc error")
}

func TestAdminArticleListFiltersByStatus(t *testing.T) {
	h := newHarness(t)
	h.published("Out there", "out-there", "x")
	h.articles.add(&articlev1.Article{Title: "In progress", Slug: "in-progress", AuthorId: "u-author"})
	h.articles.add(&articlev1.Article{Title: "Ada's draft", Slug: "ada-draft", AuthorId: "u-admin"})
	tok := h.tok("u-author")
	_, body := h.do(req{path: "/admin/articles", tok: tok})
	mustContain(t, body, "Out there", "In progress")
	mustNotContain(t, body, "Ada&#39;s draft")
	_, body = h.do(req{path: "/admin/articles?status=draft", tok: tok})
	mustContain(t, body, "In progress")
	mustNotContain(t, body, "Out there")
	_, body = h.do(req{path: "/admin/articles", tok: h.tok("u-admin")})
	mustContain(t, body, "Ada&#39;s draft", "Out there", "In progress", `href="/admin/users"`)
}

func TestMediaLibraryUploadListDelete(t *testing.T) {
	h := newHarness(t)
	tok := h.tok("u-author")
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("csrf", csrfTok)
	hdr := textproto.MIMEHeader{}
	hdr.Set("Content-Disposition", `form-data; name="file"; filename="quay.png"`)
	hdr.Set("Content-Type", "image/png")
	part, _ := mw.CreatePart(hdr)
	png := []byte("\x89PNG\r\n\x1a\n-not-really-but-bytes")
	part.Write(png)
	mw.Close()
	resp, _ := h.do(req{method: http.MethodPost, path: "/admin/media", tok: tok, body: &buf, ctype: mw.FormDataContentType(),
		cookies: []*http.Cookie{{Name: cookieCSRF, Value: csrfTok}}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin/media?done=uploaded" {
		t.Fatalf("upload → %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if len(h.media.uploads) != 1 || !bytes.Equal(h.media.uploads[0], png) {
		t.Fatalf("media service received %d uploads", len(h.media.uploads))
	}
	_, body := h.do(req{path: "/admin/media?done=uploaded", tok: tok})
	mustContain(t, body, "File uploaded.", `src="/media/quay.png"`, `href="/admin/media/m1/delete"`)

	// A refusal from media is shown on the page.
	buf.Reset()
	mw = multipart.NewWriter(&buf)
	_ = mw.WriteField("csrf", csrfTok)
	hdr.Set("Content-Disposition", `form-data; name="file"; filename="notes.txt"`)
	hdr.Set("Content-Type", "text/plain")
	part, _ = mw.CreatePart(hdr)
	part.Write([]byte("hello"))
	mw.Close()
	resp, body = h.do(req{method: http.MethodPost, path: "/admin/media", tok: tok, body: &buf, ctype: mw.FormDataContentType(),
		cookies: []*http.Cookie{{Name: cookieCSRF, Value: csrfTok}}})
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("text upload = %d", resp.StatusCode)
	}
	mustContain(t, body, "Upload refused: only images are accepted")

	resp, _ = h.do(req{method: http.MethodPost, path: "/admin/media/m1/delete", tok: tok, csrf: csrfTok, form: url.Values{}})
	if resp.StatusCode != http.StatusSeeOther || len(h.media.items) != 0 {
		t.Fatalf("delete = %d, items left %d", resp.StatusCode, len(h.media.items))
	}
}

func TestAdminManagesRoles(t *testing.T) {
	h := newHarness(t)
	tok := h.tok("u-admin")
	_, body := h.do(req{path: "/admin/users", tok: tok})
	mustContain(t, body, "rory@example.com", `action="/admin/users/u-reader/roles"`)
	resp, _ := h.do(req{method: http.MethodPost, path: "/admin/users/u-reader/roles", tok: tok, csrf: csrfTok,
		form: url.Values{"roles": {"author", "reader"}}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("set roles = %d", resp.StatusCode)
	}
	if got := strings.Join(h.auth.setRoles["u-reader"], ","); got != "author,reader" {
		t.Fatalf("SetRoles got %q", got)
	}
	_, body = h.do(req{path: "/admin/users?done=roles", tok: tok})
	mustContain(t, body, "Roles saved.")
	// An unknown role is refused by auth, and the page says why.
	resp, body = h.do(req{method: http.MethodPost, path: "/admin/users/u-reader/roles", tok: tok, csrf: csrfTok,
		form: url.Values{"roles": {"superuser"}}})
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad role = %d", resp.StatusCode)
	}
	mustContain(t, body, "superuser")
}

func TestStaticFilesAreCacheable(t *testing.T) {
	h := newHarness(t)
	_, body := h.do(req{path: "/"})
	i := strings.Index(body, "/static/style.css?v=")
	if i < 0 {
		t.Fatal("no versioned stylesheet link")
	}
	resp, css := h.do(req{path: body[i : i+len("/static/style.css?v=")+12]})
	if resp.StatusCode != http.StatusOK || !strings.Contains(css, ".masthead") || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
		t.Fatalf("stylesheet: %d %q", resp.StatusCode, resp.Header.Get("Cache-Control"))
	}
}

func cookieNamed(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// auth rate-limits by the address web passes on: the entry the edge proxy
// added, and only when the peer is that proxy; a client's own
// X-Forwarded-For never chooses it.
func TestClientIPIsTheProxyAddedEntry(t *testing.T) {
	h := newHarness(t)
	xff := map[string]string{"X-Forwarded-For": "6.6.6.6, 203.0.113.9", "Origin": origin}
	h.do(req{method: http.MethodPost, path: "/auth/login", form: url.Values{}, header: xff})
	if h.auth.lastXFF != "203.0.113.9" {
		t.Fatalf("behind the edge: auth saw %q, want the entry the edge added", h.auth.lastXFF)
	}
	_ = h.engine.SetTrustedProxies(nil) // the peer is not the edge
	h.do(req{method: http.MethodPost, path: "/auth/login", form: url.Values{}, header: xff})
	if h.auth.lastXFF != "127.0.0.1" {
		t.Fatalf("from an untrusted peer: auth saw %q, want the peer's address", h.auth.lastXFF)
	}
}

// BenchmarkCachedPages measures web's own cost for a cached anonymous page
// (no network): the part of the platform benchmark this service controls.
func BenchmarkCachedPages(b *testing.B) {
	h := newHarness(b)
	h.published("Tides", "tides", strings.Repeat("## Part\n\nSome *text* here.\n\n", 30))
	e := gin.New()
	h.app.Register(e)
	for _, path := range []string{"/", "/articles/tides"} {
		b.Run(path, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodGet, path, nil)
			for b.Loop() {
				w := httptest.NewRecorder()
				e.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}

func TestPanicsBecomeTheFriendly500Page(t *testing.T) {
	h := newHarness(t)
	e := gin.New()
	h.app.Register(e)
	e.GET("/boom", func(*gin.Context) { panic("secret internal detail") })
	w := httptest.NewRecorder()
	e.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/boom", nil))
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("status %d", w.Code)
	}
	mustContain(t, w.Body.String(), "Something went wrong", `id="problem"`)
	mustNotContain(t, w.Body.String(), "secret internal detail", "goroutine")
	if csp := w.Header().Get("Content-Security-Policy"); csp == "" {
		t.Fatal("error page without security headers")
	}
}

func TestExpiredTokenOnAFormKeepsWhatWasTyped(t *testing.T) {
	h := newHarness(t)
	expired, _ := token.NewSigner(testKey, "pressroom-auth", []string{"pressroom"}, -time.Minute).Sign("u-author", "wren@example.com", "Wren Writer", []string{"author"})
	form := url.Values{"title": {"Long piece"}, "body": {"Twenty minutes of <typing> & \"quotes\""}, "action": {"save"}}
	resp, body := h.do(req{method: http.MethodPost, path: "/admin/articles", tok: expired, csrf: csrfTok, form: form,
		header: map[string]string{"Referer": origin + "/admin/articles/new"}})
	if resp.StatusCode != http.StatusOK || h.articles.calls["CreateArticle"] != 0 {
		t.Fatalf("expired token on save = %d, creates %d", resp.StatusCode, h.articles.calls["CreateArticle"])
	}
	mustContain(t, body, `id="renew"`, `action="/auth/renew?return_to=%2Fadmin%2Farticles&amp;back=%2Fadmin%2Farticles%2Fnew"`,
		`name="body" value="Twenty minutes of &lt;typing&gt; &amp; &#34;quotes&#34;"`, `name="title" value="Long piece"`,
		`name="csrf" value="`+csrfTok+`"`)
	mustNotContain(t, body, `<img src="/auth/renew"`)

	// Continue posts the fields to /auth/renew, which renews the session and
	// hands the same post on (307 keeps the method and the body)...
	renew := "/auth/renew?return_to=%2Fadmin%2Farticles&back=%2Fadmin%2Farticles%2Fnew"
	resp, _ = h.do(req{method: http.MethodPost, path: renew, csrf: csrfTok, form: form,
		cookies: []*http.Cookie{{Name: cookieRefresh, Value: "rt-u-author"}}, header: map[string]string{"Origin": origin}})
	at := cookieNamed(resp, cookieAccess)
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != "/admin/articles" || at == nil || at.Value == "" {
		t.Fatalf("renew = %d to %q, access cookie %+v", resp.StatusCode, resp.Header.Get("Location"), at)
	}
	// ...where the same form arrives again, now signed in.
	resp, _ = h.do(req{method: http.MethodPost, path: "/admin/articles", tok: at.Value, csrf: csrfTok, form: form})
	if resp.StatusCode != http.StatusSeeOther || h.articles.calls["CreateArticle"] != 1 {
		t.Fatalf("continue = %d", resp.StatusCode)
	}

	// A forged post is not echoed back for one more click.
	resp, _ = h.do(req{method: http.MethodPost, path: "/admin/articles", tok: expired, form: url.Values{"csrf": {"forged"}, "title": {"x"}},
		cookies: []*http.Cookie{{Name: cookieCSRF, Value: csrfTok}}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("forged post with expired token = %d", resp.StatusCode)
	}
	// A session that is over: renew clears the cookies and asks for a sign-in.
	resp, _ = h.do(req{method: http.MethodPost, path: renew, csrf: csrfTok, form: form,
		cookies: []*http.Cookie{{Name: cookieRefresh, Value: "rt-revoked"}}, header: map[string]string{"Origin": origin}})
	if c := cookieNamed(resp, cookieAccess); resp.StatusCode != http.StatusSeeOther || c == nil || c.MaxAge >= 0 ||
		resp.Header.Get("Location") != "/login?return_to=%2Fadmin%2Farticles%2Fnew" {
		t.Fatalf("renew of a dead session = %d to %q, %+v", resp.StatusCode, resp.Header.Get("Location"), c)
	}
}

// providerLink is where the sign-in start sends the browser: a page (200,
// no redirect, which the CSP's form-action would stop) whose link
// continue.js follows.
func providerLink(t *testing.T, resp *http.Response, body string) string {
	t.Helper()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Location") != "" {
		t.Fatalf("sign-in start: %d, Location %q; want a page that links on", resp.StatusCode, resp.Header.Get("Location"))
	}
	m := regexp.MustCompile(`<a href="([^"]*)" id="continue"[^>]*data-autofollow`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("sign-in start page has no link to follow:\n%s", body)
	}
	return html.UnescapeString(m[1])
}

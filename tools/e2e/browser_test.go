// Package e2e drives the whole platform (started by devlaunch, exactly as
// `make dev` runs it) in Debian's headless Chromium, as people would use it.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/chromedp"

	"pressroom.dev/tools/devlaunch"
)

const chromiumPath = "/usr/bin/chromium"

// startPlatform launches everything on free ports; logs go to a file that
// the test prints the end of when it fails.
func startPlatform(t testing.TB) *devlaunch.Platform {
	t.Helper()
	root, err := devlaunch.FindRepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	logDir := filepath.Join(root, ".artifacts")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(logDir, "e2e-platform.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	p, err := devlaunch.Start(ctx, devlaunch.Options{
		RepoRoot: root, EdgeAddr: "127.0.0.1:0", Log: logf,
		AdminEmails: []string{"admin@example.com"},
	})
	if err != nil {
		logf.Close()
		t.Fatalf("start the platform: %v\n--- last platform log lines (%s):\n%s", err, logPath, tail(logPath, 60))
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("stop the platform: %v", err)
		}
		logf.Close()
		if t.Failed() {
			t.Logf("--- last platform log lines (%s):\n%s", logPath, tail(logPath, 80))
		}
	})
	return p
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// browser starts a fresh Chromium (own profile, so its own cookies) for one
// person; extra adds flags (e.g. the live node's name mapping).
func browser(t *testing.T, parent context.Context, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s not found: run `make deps` (Debian package chromium); the tests never download a browser", chromiumPath)
	}
	// Not t.TempDir: Chromium's helper processes may still write to the
	// profile for a moment after the browser exits, which fails its cleanup.
	profile, err := os.MkdirTemp("", "pressroom-e2e-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(profile),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	}
	opts = append(opts, extra...)
	actx, cancelA := chromedp.NewExecAllocator(parent, opts...)
	bctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelB()
		cancelA()
		removeWithRetry(t, profile)
	})
	if err := chromedp.Run(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action) {
	t.Helper()
	// Each step gets at most two minutes of the journey's time, so a stuck
	// one fails with its own name and leaves time to see where it stood.
	step, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := chromedp.Run(step, actions...); err != nil {
		// The journey's deadline may be what failed: look with a fresh one.
		look, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		var url, text string
		_ = chromedp.Run(look, chromedp.Location(&url), chromedp.Text("body", &text, chromedp.ByQuery, chromedp.AtLeast(0)))
		if len(text) > 1500 {
			text = text[:1500]
		}
		shot(t, look, "failed-"+strings.ReplaceAll(what, " ", "-"))
		t.Fatalf("%s: %v\n  at %s\n  page text: %s", what, err, url, text)
	}
}

// shot saves a full-page screenshot under .artifacts/screenshots/.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	root, err := devlaunch.FindRepoRoot()
	if err != nil {
		t.Error(err)
		return
	}
	dir := filepath.Join(root, ".artifacts", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Error(err)
		return
	}
	var buf []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&buf, 100)); err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Error(err)
	}
	t.Logf("screenshot: %s", path)
}

// signIn goes through the real OIDC flow: web → auth → the local provider's form → back.
func signIn(t *testing.T, ctx context.Context, base, email, name, returnTo string) {
	t.Helper()
	run(t, ctx, "sign in as "+email,
		chromedp.Navigate(base+"/login?return_to="+returnTo),
		chromedp.WaitVisible("#email", chromedp.ByID),
		chromedp.SetValue("#email", email, chromedp.ByID),
		chromedp.SetValue("#name", name, chromedp.ByID),
		chromedp.Click("#signin", chromedp.ByID),
		chromedp.WaitVisible("#sign-out", chromedp.ByID),
	)
}

func signOut(t *testing.T, ctx context.Context) {
	t.Helper()
	run(t, ctx, "sign out", chromedp.Click("#sign-out", chromedp.ByID), chromedp.WaitVisible("#sign-in", chromedp.ByID))
}

// coverPNG is a real image for the upload: a warm gradient.
func coverPNG(t *testing.T) string {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 960, 540))
	for y := 0; y < 540; y++ {
		for x := 0; x < 960; x++ {
			img.Set(x, y, color.RGBA{R: uint8(150 + x/10), G: uint8(60 + y/6), B: uint8(70 + (x+y)/20), A: 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "harbour-at-dawn.png")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// xssBody carries payloads that must all be inert after rendering.
const xssBody = `The harbour wakes before the town does. Gulls first, then the **diesel** of the early boats.

## What we saw

- nets drying on the quay
- a cat that owns the fish market

<script>window.__xss = "script"</script>
<img src="/nope.png" onerror="window.__xss = 'onerror'">
<a href="javascript:window.__xss='href'" id="evil-link">a tempting link</a>
[another link](javascript:window.__xss='md')
<p style="position:fixed;top:0;left:0;width:100%;height:100%;background:red" onclick="window.__xss='click'">styled</p>
<iframe src="javascript:window.__xss='iframe'"></iframe>

> Every morning is a first edition.
`

func TestBrowserJourney(t *testing.T) {
	if testing.Short() {
		t.Skip("the browser journey starts the whole platform; skipped with -short")
	}
	p := startPlatform(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	journey(t, ctx, site{
		base:     p.URL,
		notified: func(t *testing.T, ctx context.Context, slug string) { waitNotification(t, ctx, p, slug) },
	})
}

// site is where a journey runs: the platform's public URL, the browser
// flags that reach it, and how to see that notification recorded an event.
type site struct {
	base       string
	flags      []chromedp.ExecAllocatorOption
	notified   func(t *testing.T, ctx context.Context, slug string)
	shotPrefix string // "" for make dev's tour pictures
}

// journey is the whole user story: sign in as a reader, be promoted by the
// admin, upload, write and publish with a cover, read it anonymously (with
// hostile Markdown inert), see the notification, unpublish.
func journey(t *testing.T, ctx context.Context, s site) {
	base := s.base
	browser := func(t *testing.T, ctx context.Context) context.Context { return browser(t, ctx, s.flags...) }
	shot := func(t *testing.T, ctx context.Context, name string) { shot(t, ctx, s.shotPrefix+name) }

	// 1. A new person signs in: they are a reader and cannot reach the editor.
	writer := browser(t, ctx)
	signIn(t, writer, base, "writer@example.com", "Wren Writer", "/")
	var problem string
	run(t, writer, "reader opens the editor",
		chromedp.Navigate(base+"/admin/articles/new"),
		chromedp.WaitVisible("#problem", chromedp.ByID),
		chromedp.Text("#problem", &problem, chromedp.ByID),
	)
	if !strings.Contains(problem, "only for authors and admins") {
		t.Fatalf("a reader at /admin should get the friendly 403, got %q", problem)
	}
	var editorNodes []*cdp.Node
	run(t, writer, "no editor for a reader", chromedp.Nodes("#editor", &editorNodes, chromedp.ByID, chromedp.AtLeast(0)))
	if len(editorNodes) != 0 {
		t.Fatal("a reader was shown the editor")
	}
	shot(t, writer, "reader-forbidden")

	// 2. The admin (first of ADMIN_EMAILS) promotes the writer to author.
	admin := browser(t, ctx)
	signIn(t, admin, base, "admin@example.com", "Ada Admin", "/admin")
	row := `tr[data-email="writer@example.com"]`
	run(t, admin, "promote the writer",
		chromedp.Navigate(base+"/admin/users"),
		chromedp.WaitVisible(row, chromedp.ByQuery),
		chromedp.Click(row+` input[value="author"]`, chromedp.ByQuery),
		chromedp.Click(row+` button[type="submit"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#flash", chromedp.ByID),
	)
	var isAuthor bool
	run(t, admin, "roles saved",
		chromedp.Evaluate(`document.querySelector('tr[data-email="writer@example.com"] input[value="author"]').checked`, &isAuthor))
	if !isAuthor {
		t.Fatal("the author role did not stick on the users page")
	}
	shot(t, admin, "admin-users")

	// 3. The writer signs in again (new token, new role) and uploads a cover.
	signOut(t, writer)
	signIn(t, writer, base, "writer@example.com", "Wren Writer", "/admin")
	run(t, writer, "upload an image",
		chromedp.Navigate(base+"/admin/media"),
		chromedp.WaitVisible("#upload-form", chromedp.ByID),
		chromedp.SetUploadFiles("#file", []string{coverPNG(t)}, chromedp.ByID),
		chromedp.Click("#upload", chromedp.ByID),
		chromedp.WaitVisible("#flash", chromedp.ByID),
		chromedp.WaitVisible("#media-list img", chromedp.ByQuery),
	)
	shot(t, writer, "admin-media")

	// 4. Write, preview, save and publish an article with that cover.
	title := fmt.Sprintf("Morning at the harbour %d", time.Now().Unix()%100000)
	var slug, editURL string
	run(t, writer, "write the article",
		chromedp.Navigate(base+"/admin/articles/new"),
		chromedp.WaitVisible("#editor", chromedp.ByID),
		chromedp.SetValue("#title", title, chromedp.ByID),
		chromedp.SetValue("#summary", "Gulls, nets and the first boats out: a morning on the quay.", chromedp.ByID),
		chromedp.SetValue("#body", xssBody, chromedp.ByID),
		chromedp.Click(`input[name="cover_media"][value^="/media/"]`, chromedp.ByQuery),
		chromedp.Click("#preview-button", chromedp.ByID),
		chromedp.WaitVisible("#preview", chromedp.ByID),
	)
	shot(t, writer, "admin-editor")
	run(t, writer, "save the draft",
		chromedp.Click("#save", chromedp.ByID),
		chromedp.WaitVisible("#flash", chromedp.ByID),
		chromedp.Value("#slug", &slug, chromedp.ByID),
		chromedp.Location(&editURL),
	)
	if slug == "" {
		t.Fatal("the saved article has no slug")
	}
	run(t, writer, "publish",
		chromedp.Click("#publish", chromedp.ByID),
		chromedp.WaitVisible("#confirm-button", chromedp.ByID),
		chromedp.Click("#confirm-button", chromedp.ByID),
		chromedp.WaitVisible("#unpublish", chromedp.ByID),
	)

	run(t, writer, "articles list", chromedp.Navigate(base+"/admin/articles"), chromedp.WaitVisible("#article-list", chromedp.ByID))
	shot(t, writer, "admin-articles")

	// 5. An anonymous visitor sees it on the home page and at its slug; the payloads are inert.
	visitor := browser(t, ctx)
	var homeText string
	run(t, visitor, "home page lists the article",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible("#articles", chromedp.ByID),
		chromedp.Text("#articles", &homeText, chromedp.ByID),
	)
	if !strings.Contains(homeText, title) {
		t.Fatalf("home page does not list %q: %s", title, homeText)
	}
	var coverOK bool
	run(t, visitor, "cover image loads",
		chromedp.Poll(`(() => { const i = document.querySelector('#articles .cover img'); return !!i && i.complete && i.naturalWidth > 0; })()`, &coverOK,
			chromedp.WithPollingTimeout(10*time.Second)))
	shot(t, visitor, "home")
	var articleTitle string
	run(t, visitor, "article page",
		chromedp.Navigate(base+"/articles/"+slug),
		chromedp.WaitVisible("#article", chromedp.ByID),
		chromedp.Text("#article h1", &articleTitle, chromedp.ByQuery),
	)
	if articleTitle != title {
		t.Fatalf("article page title = %q, want %q", articleTitle, title)
	}
	var dom struct {
		XSS      any  `json:"xss"`
		Scripts  int  `json:"scripts"`
		Handlers int  `json:"handlers"`
		JSLinks  int  `json:"jsLinks"`
		Styles   int  `json:"styles"`
		Frames   int  `json:"frames"`
		Quote    bool `json:"quote"`
	}
	run(t, visitor, "inspect the live DOM",
		chromedp.Click("#body p:last-of-type", chromedp.ByQuery, chromedp.AtLeast(0)),
		chromedp.Sleep(300*time.Millisecond),
		chromedp.Evaluate(`(() => {
			const body = document.querySelector('#body');
			const all = [...body.querySelectorAll('*')];
			return {
				xss: window.__xss === undefined ? null : window.__xss,
				scripts: document.querySelectorAll('script').length,
				handlers: all.filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length,
				jsLinks: all.filter(e => ['href','src','action','formaction'].some(n => (e.getAttribute(n)||'').trim().toLowerCase().startsWith('javascript:'))).length,
				styles: all.filter(e => e.hasAttribute('style')).length + body.querySelectorAll('style').length,
				frames: body.querySelectorAll('iframe, object, embed').length,
				quote: !!body.querySelector('blockquote'),
			};
		})()`, &dom),
	)
	if dom.XSS != nil || dom.Scripts != 0 || dom.Handlers != 0 || dom.JSLinks != 0 || dom.Styles != 0 || dom.Frames != 0 {
		t.Fatalf("XSS payload survived in the live DOM: %+v", dom)
	}
	if !dom.Quote {
		t.Fatal("the Markdown body was not rendered (no blockquote)")
	}
	shot(t, visitor, "article")
	run(t, visitor, "phone-sized home", chromedp.EmulateViewport(390, 844), chromedp.Navigate(base+"/"), chromedp.WaitVisible("#articles", chromedp.ByID))
	shot(t, visitor, "home-phone")
	run(t, visitor, "back to desktop size", chromedp.EmulateViewport(1280, 900))

	// 6. The notification service recorded the published event.
	s.notified(t, ctx, slug)

	// 7. Unpublish: the article leaves the public site.
	run(t, writer, "unpublish",
		chromedp.Navigate(editURL),
		chromedp.WaitVisible("#unpublish", chromedp.ByID),
		chromedp.Click("#unpublish", chromedp.ByID),
		chromedp.WaitVisible("#confirm-button", chromedp.ByID),
		chromedp.Click("#confirm-button", chromedp.ByID),
		chromedp.WaitVisible("#publish", chromedp.ByID),
	)
	// Each web replica drops its cached pages at once on its own writes;
	// another replica's copy lives at most PAGE_CACHE_TTL (2 s). So with
	// more than one replica (the live node runs two) the visitor may see
	// the old page for that long, never longer.
	gone := func(what, path, selector string, isGone func(text string) bool) {
		t.Helper()
		deadline := time.Now().Add(pageCacheTTL + 3*time.Second)
		for {
			var text string
			run(t, visitor, what, chromedp.Navigate(base+path), chromedp.WaitVisible(selector, chromedp.ByQuery),
				chromedp.Text(selector, &text, chromedp.ByQuery))
			if isGone(text) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: still there %v after unpublishing: %q", what, pageCacheTTL+3*time.Second, text)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	gone("article is gone", "/articles/"+slug, "main", func(text string) bool { return strings.Contains(text, "Page not found") })
	gone("home no longer lists it", "/", "main", func(text string) bool { return !strings.Contains(text, title) })
}

// pageCacheTTL is web's PAGE_CACHE_TTL default: how long another replica
// may serve a page cached before a write.
const pageCacheTTL = 2 * time.Second

// removeWithRetry removes a directory that exiting processes may still be
// writing to, retrying for a few seconds before reporting it.
func removeWithRetry(t *testing.T, dir string) {
	var err error
	for i := 0; i < 50; i++ {
		if err = os.RemoveAll(dir); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("removing the browser profile %s: %v", dir, err)
}

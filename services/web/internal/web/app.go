// Package web is the BFF: the public site and /admin, rendered on the
// server from the auth and article services (Connect) and media (HTTP).
package web

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/sync/singleflight"

	"pressroom.dev/kit/authz"
	"pressroom.dev/kit/ids"
	"pressroom.dev/kit/token"
	"pressroom.dev/proto/gen/article/v1/articlev1connect"
	"pressroom.dev/proto/gen/auth/v1/authv1connect"
)

// Options wires the BFF to its collaborators.
type Options struct {
	Site          Site
	Auth          authv1connect.AuthServiceClient
	Articles      articlev1connect.ArticleServiceClient
	Media         *MediaClient
	Verifier      *token.Verifier
	PageCacheTTL  time.Duration // anonymous pages are served from memory this long; 0 = off
	MediaMaxBytes int64         // upload limit shown on the form and enforced before forwarding
	Logger        *slog.Logger
	Now           func() time.Time
}

// App holds the handlers.
type App struct {
	opt    Options
	tmpl   *renderer
	md     *Markdown
	cache  *pageCache
	builds singleflight.Group // one build per cache key at a time
	log    *slog.Logger
	https  bool
	origin string
}

func New(o Options) (*App, error) {
	if o.Auth == nil || o.Articles == nil || o.Media == nil || o.Verifier == nil {
		return nil, errors.New("web: Auth, Articles, Media and Verifier are required")
	}
	u, err := url.Parse(o.Site.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("web: PUBLIC_URL must be an absolute http(s) URL such as https://example.com")
	}
	o.Site.URL = u.Scheme + "://" + u.Host
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MediaMaxBytes <= 0 {
		o.MediaMaxBytes = 10 << 20
	}
	r, err := newRenderer()
	if err != nil {
		return nil, err
	}
	return &App{opt: o, tmpl: r, md: NewMarkdown(), cache: newPageCache(o.PageCacheTTL, o.Now),
		log: o.Logger, https: u.Scheme == "https", origin: o.Site.URL}, nil
}

// Register mounts every route on the engine (and its 404 page).
func (a *App) Register(e *gin.Engine) {
	e.Use(a.recoverPage, a.securityHeaders, a.limitBody, a.checkParams, a.identify, a.refreshExpired)
	sub, _ := fs.Sub(staticFS, "static")
	static := http.StripPrefix("/static/", http.FileServer(http.FS(sub)))
	e.GET("/static/*file", func(c *gin.Context) {
		c.Header("Cache-Control", "public, max-age=31536000, immutable")
		static.ServeHTTP(c.Writer, c.Request)
	})
	// Public pages answer HEAD too (link checkers, crawlers); net/http drops the body.
	for path, h := range map[string]gin.HandlerFunc{"/": a.home, "/articles/:slug": a.article, "/authors/:id": a.author,
		"/feed.xml": a.feed, "/sitemap.xml": a.sitemap, "/robots.txt": a.robots} {
		e.GET(path, h)
		e.HEAD(path, h)
	}

	// GET and HEAD never change the session: an image in an article or a
	// page elsewhere can make a browser send them. The GETs here render a
	// form whose POST does the change (the callback is the OIDC redirect,
	// bound to this browser's state cookie).
	e.GET("/login", a.login)
	e.GET("/logout", a.logoutPage)
	e.GET("/auth/login", a.authLoginPage)
	e.POST("/auth/login", a.authLogin)
	e.GET("/auth/callback", a.callback)
	e.GET("/auth/refresh", a.refreshPage)
	e.POST("/auth/refresh", a.refresh)
	e.POST("/auth/renew", a.renew)
	e.POST("/auth/logout", a.requireCSRF, a.logout)

	ad := e.Group("/admin", a.requireStaff)
	ad.GET("", func(c *gin.Context) { c.Redirect(http.StatusFound, "/admin/articles") })
	ad.GET("/articles", a.adminArticles)
	ad.GET("/articles/new", a.editorNew)
	ad.POST("/articles", a.requireCSRF, a.editorCreate)
	ad.GET("/articles/:id/edit", a.editorEdit)
	ad.POST("/articles/:id", a.requireCSRF, a.editorUpdate)
	for _, op := range []string{"publish", "unpublish", "delete"} {
		ad.GET("/articles/:id/"+op, a.confirmArticle(op))
		ad.POST("/articles/:id/"+op, a.requireCSRF, a.doArticle(op))
	}
	ad.GET("/media", a.mediaLibrary)
	ad.POST("/media", a.requireCSRF, a.mediaUpload)
	ad.GET("/media/:id/delete", a.mediaConfirmDelete)
	ad.POST("/media/:id/delete", a.requireCSRF, a.mediaDelete)
	ad.GET("/users", a.requireAdmin, a.users)
	ad.POST("/users/:id/roles", a.requireAdmin, a.requireCSRF, a.setRoles)

	e.NoRoute(func(c *gin.Context) { a.problem(c, http.StatusNotFound, "") })
}

// limitBody caps every request body, before anything can parse one (the
// CSRF check, the renew page): uploads get the media limit plus room for the
// multipart envelope, other /admin forms 4 MiB, and the rest (sign-out) 64 KiB.
func (a *App) limitBody(c *gin.Context) {
	n := int64(64 << 10)
	switch p := c.Request.URL.Path; {
	case p == "/admin/media":
		n = a.opt.MediaMaxBytes + 1<<20
	case isAdminPath(p):
		n = 4 << 20
	}
	if c.Request.Body != nil && c.Request.Body != http.NoBody { // a page view has none: no wrapper to allocate
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, n)
	}
	c.Next()
}

// checkParams refuses route parameters and page tokens no service could
// hold (NUL bytes, invalid UTF-8, absurd lengths) before any handler sends
// them on: a protobuf string cannot even carry invalid UTF-8, and Postgres
// refuses NUL. The services check the rest (ids, slugs, tokens) themselves.
func (a *App) checkParams(c *gin.Context) {
	for _, p := range c.Params {
		if !ids.IsText(p.Value) || len(p.Value) > 512 {
			a.problem(c, http.StatusNotFound, "")
			return
		}
	}
	if v, ok := c.GetQuery("after"); ok && (!ids.IsText(v) || len(v) > 1024) {
		a.problem(c, http.StatusBadRequest, "That page link is not valid: start again from the first page.")
		return
	}
	c.Next()
}

// Invalidate drops every cached page (after a write through /admin).
func (a *App) Invalidate() { a.cache.clear() }

const (
	ctxPrincipal = "web.principal"
	ctxToken     = "web.token"
	ctxExpired   = "web.expired"
)

func principal(c *gin.Context) authz.Principal {
	p, _ := c.Get(ctxPrincipal)
	pr, _ := p.(authz.Principal)
	return pr
}

func accessToken(c *gin.Context) string { return c.GetString(ctxToken) }

// recoverPage turns a panic into the friendly 500 page (logged with its stack
// by slog, never shown to the visitor).
func (a *App) recoverPage(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			if r == http.ErrAbortHandler {
				panic(r)
			}
			a.log.ErrorContext(c.Request.Context(), "panic", "path", c.Request.URL.Path, "panic", r, "stack", string(debug.Stack()))
			if !c.Writer.Written() {
				a.problem(c, http.StatusInternalServerError, "")
			}
			c.Abort()
		}
	}()
	c.Next()
}

// securityHeaders sets the headers every response carries.
func (a *App) securityHeaders(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "strict-origin-when-cross-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if a.opt.Site.Build != "" {
		h.Set("X-Pressroom-Build", a.opt.Site.Build)
	}
	if a.https || c.Request.TLS != nil || c.GetHeader("X-Forwarded-Proto") == "https" {
		h.Set("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
	}
	c.Next()
}

// identify turns a valid access-token cookie into the request's Principal.
// A bad or expired token is ignored here: /admin sends the browser to refresh.
func (a *App) identify(c *gin.Context) {
	if ck, err := c.Request.Cookie(cookieAccess); err == nil && ck.Value != "" {
		claims, err := a.opt.Verifier.Verify(ck.Value)
		switch {
		case err == nil:
			if p, err := authz.FromClaims(claims); err == nil {
				c.Set(ctxPrincipal, p)
				c.Set(ctxToken, ck.Value)
			}
		case errors.Is(err, jwt.ErrTokenExpired):
			c.Set(ctxExpired, true)
		}
	}
	c.Next()
}

// refreshExpired: the access cookie outlives its token (it lasts as long as
// the refresh token), so an expired one means "signed in, refresh me". Pages
// go through /auth/refresh and come straight back, signed in again.
func (a *App) refreshExpired(c *gin.Context) {
	if !c.GetBool(ctxExpired) {
		c.Next()
		return
	}
	switch p := c.Request.URL.Path; {
	case strings.HasPrefix(p, "/auth/"), strings.HasPrefix(p, "/static/"), p == "/login", p == "/logout",
		p == "/feed.xml", p == "/sitemap.xml", p == "/robots.txt":
		c.Next()
		return
	}
	a.toRefresh(c)
}

func isAdminPath(p string) bool {
	return p == "/admin" || strings.HasPrefix(p, "/admin/") || strings.HasPrefix(p, "/admin?")
}

// rpcCtx carries the user's token to Connect calls (the kit's ForwardToken interceptor sends it).
func (a *App) rpcCtx(c *gin.Context) context.Context {
	ctx := c.Request.Context()
	if tok := accessToken(c); tok != "" {
		ctx = withToken(ctx, tok)
	}
	return ctx
}

// page renders a full HTML page.
func (a *App) page(c *gin.Context, status int, name string, p *Page) {
	body, err := a.renderPage(c, name, p)
	if err != nil {
		a.log.ErrorContext(c.Request.Context(), "render page", "page", name, "err", err)
		c.Data(http.StatusInternalServerError, "text/plain; charset=utf-8", []byte("Something went wrong on our side. Please try again."))
		return
	}
	if p.Admin != "" || p.User.Authenticated() {
		c.Header("Cache-Control", "private, no-store")
	}
	c.Data(status, "text/html; charset=utf-8", body)
}

func (a *App) renderPage(c *gin.Context, name string, p *Page) ([]byte, error) {
	p.Site = a.opt.Site
	p.User = principal(c)
	p.Path = c.Request.URL.Path
	if p.Description == "" {
		p.Description = a.opt.Site.Description
	}
	if p.User.Authenticated() {
		p.CSRF = a.csrfToken(c)
	}
	return a.tmpl.render(name, p)
}

type problemData struct{ Message, Hint string }

// problem renders a friendly error page; msg overrides the default text.
func (a *App) problem(c *gin.Context, status int, msg string) {
	title, def := "Something went wrong", "Something went wrong on our side. Please try again in a moment."
	hint := ""
	switch status {
	case http.StatusNotFound:
		title, def = "Page not found", "We couldn't find that page. It may have been moved or unpublished."
	case http.StatusForbidden:
		title, def = "Not allowed", "You don't have access to this page."
	case http.StatusBadRequest:
		title, def = "Bad request", "That request didn't make sense to us."
	case http.StatusTooManyRequests:
		title, def = "Too many requests", "Too many requests right now. Please try again in a minute."
	case http.StatusServiceUnavailable:
		title, def = "Temporarily unavailable", "A part of the site is not answering right now. Please try again in a moment."
	}
	if msg == "" {
		msg = def
	}
	if status == http.StatusForbidden && principal(c).Authenticated() && !principal(c).CanAccessAdmin() {
		hint = "If an admin has just given you the author role, sign out and sign in again."
	}
	a.page(c, status, "error", &Page{Title: title, NoIndex: true, Data: problemData{Message: msg, Hint: hint}})
	c.Abort()
}

// fail maps a service error to a page: never a stack trace, always a clear message.
func (a *App) fail(c *gin.Context, err error) {
	switch connect.CodeOf(err) {
	case connect.CodeNotFound:
		a.problem(c, http.StatusNotFound, "")
	case connect.CodePermissionDenied:
		a.problem(c, http.StatusForbidden, "You are not allowed to do that: "+errMessage(err))
	case connect.CodeUnauthenticated:
		a.toRefresh(c)
	case connect.CodeInvalidArgument, connect.CodeAlreadyExists, connect.CodeFailedPrecondition, connect.CodeOutOfRange:
		a.problem(c, http.StatusBadRequest, errMessage(err))
	case connect.CodeUnavailable, connect.CodeDeadlineExceeded:
		a.log.WarnContext(c.Request.Context(), "service unavailable", "err", err)
		a.problem(c, http.StatusServiceUnavailable, "")
	case connect.CodeResourceExhausted:
		a.tooMany(c, err)
	default:
		var me *MediaError
		if errors.As(err, &me) {
			a.mediaFail(c, me)
			return
		}
		a.log.ErrorContext(c.Request.Context(), "request failed", "path", c.Request.URL.Path, "err", err)
		a.problem(c, http.StatusInternalServerError, "")
	}
}

func (a *App) mediaFail(c *gin.Context, me *MediaError) {
	switch me.Status {
	case http.StatusTooManyRequests:
		a.tooMany(c, me)
	case http.StatusNotFound:
		a.problem(c, http.StatusNotFound, "")
	case http.StatusUnauthorized:
		a.toRefresh(c)
	case http.StatusForbidden:
		a.problem(c, http.StatusForbidden, "You are not allowed to do that: "+me.Message)
	default:
		if me.Status >= 500 {
			a.problem(c, http.StatusServiceUnavailable, "")
			return
		}
		a.problem(c, http.StatusBadRequest, me.Message)
	}
}

// tooMany answers a limit a service applied: 429 with when to try again,
// and nothing else changes (no cookie is touched, nothing is logged as an
// error: a limit working is not a failure).
func (a *App) tooMany(c *gin.Context, err error) {
	wait := 60
	var ce *connect.Error
	var me *MediaError
	switch {
	case errors.As(err, &ce):
		if n, perr := strconv.Atoi(ce.Meta().Get("Retry-After")); perr == nil && n > 0 {
			wait = n
		}
	case errors.As(err, &me) && me.RetryAfter > 0:
		wait = me.RetryAfter
	}
	a.log.InfoContext(c.Request.Context(), "refused by a rate limit", "path", c.Request.URL.Path, "retry_after_s", wait)
	c.Header("Retry-After", strconv.Itoa(wait))
	c.Header("Cache-Control", "no-store")
	a.problem(c, http.StatusTooManyRequests, fmt.Sprintf("Too many requests from your network right now. Please try again in %d seconds.", wait))
}

// errMessage is the user-facing part of an error: a Connect message from a
// service's own validation, never an internal error text.
func errMessage(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) {
		switch ce.Code() {
		case connect.CodeInternal, connect.CodeUnknown, connect.CodeDataLoss:
			return "the service failed; please try again"
		}
		if m := strings.TrimSpace(ce.Message()); m != "" {
			return m
		}
		return ce.Code().String()
	}
	var me *MediaError
	if errors.As(err, &me) {
		return me.Message
	}
	return "please try again"
}

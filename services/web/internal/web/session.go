package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/gin-gonic/gin"
	"google.golang.org/protobuf/types/known/timestamppb"

	"pressroom.dev/kit/connectkit"
	"pressroom.dev/kit/redirect"
	authv1 "pressroom.dev/proto/gen/auth/v1"
)

// Cookie names are part of the contract with media, which reads the access cookie.
const (
	cookieAccess  = "pressroom_at"    // access token, Path=/
	cookieRefresh = "pressroom_rt"    // refresh token, Path=/auth: only the refresh/logout handlers see it
	cookieState   = "pressroom_state" // OIDC state bound to this browser, Path=/auth
	cookieCSRF    = "pressroom_csrf"  // double-submit CSRF token, Path=/
)

var withToken = connectkit.WithToken

// fwd builds an auth request carrying the browser's address, which auth rate-limits by.
func fwd[T any](c *gin.Context, msg *T) *connect.Request[T] {
	r := connect.NewRequest(msg)
	r.Header().Set("X-Forwarded-For", c.ClientIP())
	return r
}

func (a *App) setCookie(c *gin.Context, name, value, path string, maxAge int, sameSite http.SameSite) {
	http.SetCookie(c.Writer, &http.Cookie{Name: name, Value: value, Path: path, MaxAge: maxAge,
		HttpOnly: true, Secure: true, SameSite: sameSite})
}

func (a *App) clearSession(c *gin.Context) {
	a.setCookie(c, cookieAccess, "", "/", -1, http.SameSiteLaxMode)
	a.setCookie(c, cookieRefresh, "", "/auth", -1, http.SameSiteLaxMode)
}

func (a *App) storeTokens(c *gin.Context, t *authv1.Tokens) {
	now := a.opt.Now()
	// The access cookie lives as long as the session: once its token expires it
	// still says "refresh me" (see refreshExpired); the token itself is short-lived.
	session := maxAge(t.GetRefreshTokenExpiresAt(), now, 30*24*time.Hour)
	a.setCookie(c, cookieAccess, t.GetAccessToken(), "/", session, http.SameSiteLaxMode)
	a.setCookie(c, cookieRefresh, t.GetRefreshToken(), "/auth", session, http.SameSiteLaxMode)
}

func maxAge(ts *timestamppb.Timestamp, now time.Time, def time.Duration) int {
	d := def
	if ts != nil && ts.IsValid() && ts.AsTime().After(now) {
		d = ts.AsTime().Sub(now)
	}
	return int(d.Seconds())
}

// continueData is a page whose form is sent at once by continue.js (or by
// its button without JavaScript); with Link, a page whose link continue.js
// follows at once.
type continueData struct {
	Message, Action, Button string
	Fields                  []replayField
	Link                    string
}

// sessionPage renders the page that turns a GET into the POST that changes
// the session: a GET (a link, an image in an article, a page elsewhere)
// never changes it by itself.
func (a *App) sessionPage(c *gin.Context, title, msg, action, button, ret string) {
	c.Header("Cache-Control", "no-store")
	a.page(c, http.StatusOK, "continue", &Page{Title: title, NoIndex: true, Data: continueData{
		Message: msg, Action: action, Button: button, Fields: []replayField{{Name: "return_to", Value: ret}}}})
}

// sameOriginPost admits a POST that changes the session only when this site
// sent it: browsers name the sending page's origin on every POST.
func (a *App) sameOriginPost(c *gin.Context) bool {
	o := c.GetHeader("Origin")
	if o == a.origin || (o == "" && c.GetHeader("Sec-Fetch-Site") == "same-origin") {
		return true
	}
	a.problem(c, http.StatusForbidden, "This request was sent from another site, so it was refused.")
	return false
}

// login is the public entry point: a page whose form starts the sign-in.
func (a *App) login(c *gin.Context) {
	ret := signInReturn(c.Query("return_to"))
	if principal(c).Authenticated() {
		c.Redirect(http.StatusFound, ret)
		return
	}
	a.sessionPage(c, "Sign in", "Taking you to the sign-in page…", "/auth/login", "Sign in", ret)
}

func signInReturn(q string) string {
	ret := redirect.LocalPath(q)
	if ret == "/login" || strings.HasPrefix(ret, "/auth/") {
		ret = "/"
	}
	return ret
}

// authLoginPage: old links to /auth/login go through the sign-in page.
func (a *App) authLoginPage(c *gin.Context) {
	c.Redirect(http.StatusFound, "/login?return_to="+url.QueryEscape(signInReturn(c.Query("return_to"))))
}

// authLogin reuses a live session when there is one, else starts OIDC through auth.
func (a *App) authLogin(c *gin.Context) {
	if !a.sameOriginPost(c) {
		return
	}
	ret := signInReturn(c.PostForm("return_to"))
	if rt, err := c.Request.Cookie(cookieRefresh); err == nil && rt.Value != "" {
		res, err := a.opt.Auth.Refresh(c.Request.Context(), fwd(c, &authv1.RefreshRequest{RefreshToken: rt.Value}))
		switch {
		case err == nil:
			a.storeTokens(c, res.Msg.GetTokens())
			c.Redirect(http.StatusSeeOther, ret)
			return
		case connect.CodeOf(err) == connect.CodeResourceExhausted:
			a.tooMany(c, err) // a limit keeps the session
			return
		}
		a.clearSession(c)
	}
	res, err := a.opt.Auth.StartSignIn(c.Request.Context(), fwd(c, &authv1.StartSignInRequest{ReturnTo: ret}))
	if err != nil {
		a.fail(c, err)
		return
	}
	a.setCookie(c, cookieState, res.Msg.GetState(), "/auth", 600, http.SameSiteLaxMode)
	c.Header("Cache-Control", "no-store")
	// A page that links on, not a redirect: browsers hold a form's redirects
	// to the page's CSP form-action ('self'), which the provider is not.
	a.page(c, http.StatusOK, "continue", &Page{Title: "Sign in", NoIndex: true, Data: continueData{
		Message: "Taking you to your sign-in provider…", Button: "Continue to sign in", Link: res.Msg.GetAuthorizationUrl()}})
}

// callback finishes the OIDC flow: the state must match this browser's cookie.
// It is a GET because the provider redirects the browser here; without the
// state this browser started with it changes nothing.
func (a *App) callback(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	if c.Query("error") != "" {
		// The provider's error text is not shown: anyone can put any text in this URL.
		a.problem(c, http.StatusBadRequest, "Sign-in was cancelled or refused by the identity provider. You can try again from the Sign in link.")
		return
	}
	state, code := c.Query("state"), c.Query("code")
	ck, err := c.Request.Cookie(cookieState)
	if code == "" || state == "" || err != nil || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(state)) != 1 {
		a.problem(c, http.StatusBadRequest, "This sign-in link has expired or was started in another browser. Please sign in again.")
		return
	}
	a.setCookie(c, cookieState, "", "/auth", -1, http.SameSiteLaxMode)
	res, err := a.opt.Auth.FinishSignIn(c.Request.Context(), fwd(c, &authv1.FinishSignInRequest{Code: code, State: state}))
	if err != nil {
		switch connect.CodeOf(err) {
		case connect.CodeUnavailable, connect.CodeInternal, connect.CodeUnknown, connect.CodeDeadlineExceeded, connect.CodeResourceExhausted:
			a.fail(c, err)
		default:
			a.problem(c, http.StatusBadRequest, "Sign-in failed: "+errMessage(err)+". Please sign in again.")
		}
		return
	}
	a.storeTokens(c, res.Msg.GetTokens())
	c.Redirect(http.StatusFound, redirect.LocalPath(res.Msg.GetReturnTo()))
}

// refreshPage is where a page whose access token expired sends the browser:
// its form renews the session with a POST and comes back.
func (a *App) refreshPage(c *gin.Context) {
	ret := redirect.LocalPath(c.Query("return_to"))
	if rt, err := c.Request.Cookie(cookieRefresh); err != nil || rt.Value == "" {
		// No session to renew (the refresh cookie reaches every /auth path):
		// only a dead access cookie is forgotten.
		a.signedOutTo(c, ret, http.StatusFound)
		return
	}
	a.sessionPage(c, "Signing you in", "Renewing your sign-in…", "/auth/refresh", "Continue", ret)
}

// refresh rotates the refresh token for a new access token, then goes back.
// When that fails, /admin pages need a sign-in; public pages are simply
// shown signed out, so a reader is never pushed into a sign-in.
func (a *App) refresh(c *gin.Context) {
	if !a.sameOriginPost(c) {
		return
	}
	c.Header("Cache-Control", "no-store")
	ret := redirect.LocalPath(c.PostForm("return_to"))
	rt, err := c.Request.Cookie(cookieRefresh)
	if err != nil || rt.Value == "" {
		a.signedOutTo(c, ret, http.StatusSeeOther)
		return
	}
	res, err := a.opt.Auth.Refresh(c.Request.Context(), fwd(c, &authv1.RefreshRequest{RefreshToken: rt.Value}))
	if err != nil {
		switch connect.CodeOf(err) {
		case connect.CodeResourceExhausted:
			a.tooMany(c, err) // a limit keeps the session for the next try
		case connect.CodeUnavailable, connect.CodeDeadlineExceeded:
			if isAdminPath(ret) {
				a.fail(c, err)
				return
			}
			// Auth is down: keep the session for later, show the public page signed out.
			a.setCookie(c, cookieAccess, "", "/", -1, http.SameSiteLaxMode)
			c.Redirect(http.StatusSeeOther, ret)
		default:
			a.signedOutTo(c, ret, http.StatusSeeOther)
		}
		return
	}
	a.storeTokens(c, res.Msg.GetTokens())
	c.Redirect(http.StatusSeeOther, ret)
}

func (a *App) signedOutTo(c *gin.Context, ret string, status int) {
	a.clearSession(c)
	if isAdminPath(ret) {
		c.Redirect(status, "/login?return_to="+url.QueryEscape(ret))
		return
	}
	c.Redirect(status, ret)
}

// toRefresh sends a browser without a usable access token through
// /auth/refresh. A form post can't survive a redirect, so it gets the renew
// page instead: its Continue renews the session and sends the same form
// again (see replay).
func (a *App) toRefresh(c *gin.Context) {
	if c.Request.Method != http.MethodGet && c.Request.Method != http.MethodHead {
		a.replay(c)
		return
	}
	c.Redirect(http.StatusFound, "/auth/refresh?return_to="+url.QueryEscape(redirect.LocalPath(c.Request.URL.RequestURI())))
	c.Abort()
}

type replayField struct{ Name, Value string }

type replayData struct {
	Action string
	Renew  string // the form's target: renews, then hands the same POST to Action
	Back   string
	Fields []replayField
	Lost   bool // a file upload can't be carried over
}

// replay renders the renew page for a form post whose access token had
// expired: the refresh cookie only reaches /auth, so the page posts the
// same fields to /auth/renew, which renews the session and passes the post
// on to where it was going (307 keeps the method and body). The CSRF token
// must already be right.
func (a *App) replay(c *gin.Context) {
	back := "/admin"
	if ref, err := url.Parse(c.GetHeader("Referer")); err == nil && ref.Path != "" && sameOrigin(ref, a.origin) {
		back = redirect.LocalPath(ref.RequestURI())
	}
	action := redirect.LocalPath(c.Request.URL.RequestURI())
	d := replayData{Action: action, Back: back,
		Renew: "/auth/renew?return_to=" + url.QueryEscape(action) + "&back=" + url.QueryEscape(back)}
	if strings.HasPrefix(c.ContentType(), "multipart/") {
		d.Lost = true
	} else {
		if !a.csrfOK(c) {
			a.problem(c, http.StatusForbidden, "This form has expired. Go back, reload the page and try again.")
			return
		}
		names := make([]string, 0, len(c.Request.PostForm))
		for k := range c.Request.PostForm {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			for _, v := range c.Request.PostForm[k] {
				d.Fields = append(d.Fields, replayField{Name: k, Value: v})
			}
		}
	}
	a.page(c, http.StatusOK, "renew", &Page{Title: "One more click", NoIndex: true, Data: d})
	c.Abort()
}

// renew rotates the session for the renew page's form and hands the same
// POST on to where it was going; its body is never read here.
func (a *App) renew(c *gin.Context) {
	if !a.sameOriginPost(c) {
		return
	}
	c.Header("Cache-Control", "no-store")
	action, back := redirect.LocalPath(c.Query("return_to")), redirect.LocalPath(c.Query("back"))
	rt, err := c.Request.Cookie(cookieRefresh)
	if err != nil || rt.Value == "" {
		a.signedOutTo(c, "/login?return_to="+url.QueryEscape(back), http.StatusSeeOther)
		return
	}
	res, err := a.opt.Auth.Refresh(c.Request.Context(), fwd(c, &authv1.RefreshRequest{RefreshToken: rt.Value}))
	switch code := connect.CodeOf(err); {
	case err == nil:
		a.storeTokens(c, res.Msg.GetTokens())
		c.Redirect(http.StatusTemporaryRedirect, action)
	case code == connect.CodeResourceExhausted:
		a.tooMany(c, err)
	case code == connect.CodeUnavailable || code == connect.CodeDeadlineExceeded:
		a.fail(c, err)
	default:
		a.clearSession(c)
		c.Redirect(http.StatusSeeOther, "/login?return_to="+url.QueryEscape(back))
	}
}

func sameOrigin(u *url.URL, origin string) bool {
	return u.Scheme+"://"+u.Host == origin
}

func (a *App) logoutPage(c *gin.Context) {
	if !principal(c).Authenticated() {
		c.Redirect(http.StatusFound, "/")
		return
	}
	a.page(c, http.StatusOK, "admin_confirm", &Page{Title: "Sign out", NoIndex: true, Data: confirmData{
		Question: "Sign out of " + a.opt.Site.Title + " on this browser?", Action: "/auth/logout",
		Button: "Sign out", Cancel: "/"}})
}

// logout revokes the session at auth and forgets the cookies.
func (a *App) logout(c *gin.Context) {
	if rt, err := c.Request.Cookie(cookieRefresh); err == nil && rt.Value != "" {
		if _, err := a.opt.Auth.SignOut(c.Request.Context(), fwd(c, &authv1.SignOutRequest{RefreshToken: rt.Value})); err != nil {
			a.log.WarnContext(c.Request.Context(), "sign-out at auth failed; cookies cleared anyway", "err", err)
		}
	}
	a.clearSession(c)
	c.Redirect(http.StatusSeeOther, "/")
}

// ---- CSRF: a random per-browser token in a SameSite=Strict cookie, echoed
// in every form, plus an Origin check when the browser sends one.

func (a *App) csrfToken(c *gin.Context) string {
	if v, ok := c.Get(cookieCSRF); ok {
		return v.(string)
	}
	if ck, err := c.Request.Cookie(cookieCSRF); err == nil && len(ck.Value) >= 32 {
		c.Set(cookieCSRF, ck.Value)
		return ck.Value
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	tok := base64.RawURLEncoding.EncodeToString(b)
	a.setCookie(c, cookieCSRF, tok, "/", 0, http.SameSiteStrictMode)
	c.Set(cookieCSRF, tok)
	return tok
}

func (a *App) requireCSRF(c *gin.Context) {
	if o := c.GetHeader("Origin"); o != "" && o != a.origin {
		a.problem(c, http.StatusForbidden, "This form was sent from another site ("+o+"), so it was refused.")
		return
	}
	if !a.csrfOK(c) {
		a.problem(c, http.StatusForbidden, "This form has expired. Go back, reload the page and try again.")
		return
	}
	c.Next()
}

// csrfOK: the form's token equals this browser's cookie (multipart forms too).
func (a *App) csrfOK(c *gin.Context) bool {
	ck, err := c.Request.Cookie(cookieCSRF)
	if err != nil || ck.Value == "" {
		return false // no cookie: nothing to compare, so the body is never parsed
	}
	return subtle.ConstantTimeCompare([]byte(ck.Value), []byte(c.PostForm("csrf"))) == 1
}

// requireStaff guards /admin: anonymous → sign in, readers → a friendly 403.
func (a *App) requireStaff(c *gin.Context) {
	c.Header("Cache-Control", "private, no-store")
	p := principal(c)
	if !p.Authenticated() {
		a.toRefresh(c)
		return
	}
	if !p.CanAccessAdmin() {
		a.problem(c, http.StatusForbidden, "The admin area is only for authors and admins.")
		return
	}
	c.Next()
}

func (a *App) requireAdmin(c *gin.Context) {
	if !principal(c).CanManageUsers() {
		a.problem(c, http.StatusForbidden, "Only admins can manage users.")
		return
	}
	c.Next()
}

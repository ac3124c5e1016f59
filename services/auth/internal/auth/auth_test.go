package auth

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/golang-jwt/jwt/v5"

	"pressroom.dev/kit/token"
	authv1 "pressroom.dev/proto/gen/auth/v1"
	"pressroom.dev/tools/devoidc"
)

func TestSignInCodeFlow(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	res := e.signIn("Ann@Example.com")

	u := res.GetUser()
	if u.GetEmail() != "Ann@Example.com" || !slices.Equal(u.GetRoles(), []string{"reader"}) || u.GetId() == "" {
		t.Fatalf("new user: %+v", u)
	}
	if res.GetReturnTo() != "/admin" {
		t.Fatalf("return_to = %q, want /admin", res.GetReturnTo())
	}
	toks := res.GetTokens()
	if !strings.HasPrefix(toks.GetRefreshToken(), refreshPrefix) {
		t.Fatalf("refresh token %q", toks.GetRefreshToken())
	}
	// The access token is what every other service verifies with the kit.
	c, err := e.verifier.Verify(toks.GetAccessToken())
	if err != nil {
		t.Fatalf("kit verifier rejects the access token: %v", err)
	}
	if c.Subject != u.GetId() || c.Email != u.GetEmail() || !slices.Equal(c.Roles, []string{"reader"}) {
		t.Fatalf("claims: %+v", c)
	}
	ttl := c.ExpiresAt.Sub(c.IssuedAt.Time)
	if ttl != 15*time.Minute || !c.ExpiresAt.Time.Equal(toks.GetAccessTokenExpiresAt().AsTime()) {
		t.Fatalf("access token lifetime %s (exp %v, response says %v)", ttl, c.ExpiresAt, toks.GetAccessTokenExpiresAt().AsTime())
	}
	parsed, _, err := jwt.NewParser().ParseUnverified(toks.GetAccessToken(), &token.Claims{})
	if err != nil || parsed.Header["kid"] == "" || parsed.Header["alg"] != "RS256" {
		t.Fatalf("header: %v %v", parsed.Header, err)
	}

	me, err := e.client.GetCurrentUser(ctx, bearer(toks.GetAccessToken(), &authv1.GetCurrentUserRequest{}))
	if err != nil || me.Msg.GetUser().GetId() != u.GetId() {
		t.Fatalf("GetCurrentUser: %v %v", me, err)
	}
	_, err = e.client.GetCurrentUser(ctx, connect.NewRequest(&authv1.GetCurrentUserRequest{}))
	wantCode(t, err, connect.CodeUnauthenticated, "GetCurrentUser without a token")

	// The same person in another case is the same account, still a reader.
	again := e.signIn("ann@EXAMPLE.com")
	if again.GetUser().GetId() != u.GetId() || e.userCount() != 1 {
		t.Fatalf("case-insensitive e-mail made a second account: %v / %d users", again.GetUser(), e.userCount())
	}

	resp, err := http.Get(e.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `auth_signins_total{result="ok"} 2`) {
		t.Fatalf("/metrics lacks the sign-in counter:\n%s", body)
	}
}

func TestSignInRejections(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()

	t.Run("wrong state", func(t *testing.T) {
		code, _ := e.authorize("a@example.com", "/")
		_, err := e.client.FinishSignIn(ctx, req(e, &authv1.FinishSignInRequest{Code: code, State: "forged"}))
		wantCode(t, err, connect.CodeInvalidArgument, "unknown state")
	})
	t.Run("replayed callback and code", func(t *testing.T) {
		code, state := e.authorize("a@example.com", "/")
		if _, err := e.client.FinishSignIn(ctx, req(e, &authv1.FinishSignInRequest{Code: code, State: state})); err != nil {
			t.Fatal(err)
		}
		_, err := e.client.FinishSignIn(ctx, req(e, &authv1.FinishSignInRequest{Code: code, State: state}))
		wantCode(t, err, connect.CodeInvalidArgument, "replayed state")
		// The same code with a fresh state: the provider refuses the used code.
		_, state2 := e.authorize("a@example.com", "/")
		_, err = e.client.FinishSignIn(ctx, req(e, &authv1.FinishSignInRequest{Code: code, State: state2}))
		wantCode(t, err, connect.CodeUnauthenticated, "replayed code")
	})
	t.Run("missing fields", func(t *testing.T) {
		_, err := e.client.FinishSignIn(ctx, req(e, &authv1.FinishSignInRequest{}))
		wantCode(t, err, connect.CodeInvalidArgument, "empty request")
	})

	before := e.userCount()
	for _, tc := range []struct {
		name string
		q    devoidc.Quirks
		code connect.Code
	}{
		{"wrong nonce", devoidc.Quirks{WrongNonce: true}, connect.CodeUnauthenticated},
		{"wrong audience", devoidc.Quirks{WrongAudience: true}, connect.CodeUnauthenticated},
		{"expired ID token", devoidc.Quirks{Expired: true}, connect.CodeUnauthenticated},
		{"wrong issuer", devoidc.Quirks{WrongIssuer: true}, connect.CodeUnauthenticated},
		{"unknown signing key", devoidc.Quirks{UnknownKey: true}, connect.CodeUnauthenticated},
		{"unverified e-mail", devoidc.Quirks{UnverifiedEmail: true}, connect.CodePermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.oidc.SetQuirks(tc.q)
			defer e.oidc.SetQuirks(devoidc.Quirks{})
			code, state := e.authorize("mallory@example.com", "/")
			_, err := e.client.FinishSignIn(ctx, req(e, &authv1.FinishSignInRequest{Code: code, State: state}))
			wantCode(t, err, tc.code, tc.name)
		})
	}
	if n := e.userCount(); n != before {
		t.Fatalf("a rejected sign-in created a user: %d → %d", before, n)
	}
}

// The return_to a sign-in ends at is a path on this site, whatever the start
// asked for: a browser drops tabs and newlines and reads "\\" as "/", so
// "/\t/evil.example" would be //evil.example.
func TestReturnToIsLocal(t *testing.T) {
	e := newEnv(t, nil)
	for in, want := range map[string]string{
		"/admin": "/admin", "/a?b=c": "/a?b=c", "": "/", "https://evil.example.com/": "/",
		"//evil.example.com": "/", "/\\evil.example.com": "/", "/\t/evil.example.com": "/", "admin": "/",
		"/x\r\nSet-Cookie: a": "/",
	} {
		code, state := e.authorize("ret@example.com", in)
		res, err := e.client.FinishSignIn(context.Background(), req(e, &authv1.FinishSignInRequest{Code: code, State: state}))
		if err != nil {
			t.Fatalf("FinishSignIn: %v", err)
		}
		if got := res.Msg.GetReturnTo(); got != want {
			t.Errorf("sign-in started with return_to %q ends at %q, want %q", in, got, want)
		}
	}
}

func TestSignInDisabled(t *testing.T) {
	e := newEnv(t, map[string]string{"GOOGLE_LOGIN_ENABLED": "false", "GOOGLE_CLIENT_ID": "", "GOOGLE_CLIENT_SECRET": ""})
	_, err := e.client.StartSignIn(context.Background(), req(e, &authv1.StartSignInRequest{}))
	wantCode(t, err, connect.CodeFailedPrecondition, "StartSignIn while disabled")
	if !strings.Contains(err.Error(), "GOOGLE_LOGIN_ENABLED") {
		t.Fatalf("error does not say how to enable sign-in: %v", err)
	}
}

func TestAdminEmailsBootstrapAndPromotion(t *testing.T) {
	e := newEnv(t, map[string]string{"ADMIN_EMAILS": " Boss@Example.com , other@example.com"})
	ctx := context.Background()

	boss := e.signIn("boss@EXAMPLE.com").GetUser()
	if !slices.Equal(boss.GetRoles(), []string{"admin"}) {
		t.Fatalf("ADMIN_EMAILS user got %v", boss.GetRoles())
	}
	later := e.signIn("later@example.com").GetUser()
	if !slices.Equal(later.GetRoles(), []string{"reader"}) {
		t.Fatalf("default role %v", later.GetRoles())
	}

	// The operator fixes ADMIN_EMAILS; the next sign-in promotes.
	e.restart(map[string]string{"ADMIN_EMAILS": "boss@example.com,LATER@example.com"})
	promoted := e.signIn("later@example.com")
	if !slices.Contains(promoted.GetUser().GetRoles(), "admin") || promoted.GetUser().GetId() != later.GetId() {
		t.Fatalf("not promoted: %v", promoted.GetUser())
	}
	c, err := e.verifier.Verify(promoted.GetTokens().GetAccessToken())
	if err != nil || !slices.Contains(c.Roles, "admin") {
		t.Fatalf("promoted token roles: %v %v", c, err)
	}
	trail, err := e.app.Store.RoleAudit(ctx, later.GetId())
	if err != nil || len(trail) != 1 || trail[0].ActorEmail != "ADMIN_EMAILS" || trail[0].ActorID != "" ||
		!slices.Equal(trail[0].Before, []string{"reader"}) || !slices.Contains(trail[0].After, "admin") {
		t.Fatalf("promotion audit: %+v %v", trail, err)
	}

	// Removing an address never demotes.
	e.restart(map[string]string{"ADMIN_EMAILS": ""})
	if again := e.signIn("later@example.com").GetUser(); !slices.Contains(again.GetRoles(), "admin") {
		t.Fatalf("removal from ADMIN_EMAILS demoted: %v", again.GetRoles())
	}
	if trail, _ := e.app.Store.RoleAudit(ctx, later.GetId()); len(trail) != 1 {
		t.Fatalf("unchanged roles were audited again: %+v", trail)
	}
}

func TestRefreshRotationAndReuse(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	s := e.signIn("r@example.com")
	rt1 := s.GetTokens().GetRefreshToken()

	r2, err := e.client.Refresh(ctx, req(e, &authv1.RefreshRequest{RefreshToken: rt1}))
	if err != nil {
		t.Fatal(err)
	}
	rt2 := r2.Msg.GetTokens().GetRefreshToken()
	if rt2 == rt1 || rt2 == "" {
		t.Fatal("refresh did not rotate the token")
	}
	if _, err := e.verifier.Verify(r2.Msg.GetTokens().GetAccessToken()); err != nil {
		t.Fatalf("refreshed access token: %v", err)
	}
	r3, err := e.client.Refresh(ctx, req(e, &authv1.RefreshRequest{RefreshToken: rt2}))
	if err != nil {
		t.Fatal(err)
	}
	rt3 := r3.Msg.GetTokens().GetRefreshToken()

	// rt1 was stolen and replayed: the whole family dies, including rt3.
	_, err = e.client.Refresh(ctx, req(e, &authv1.RefreshRequest{RefreshToken: rt1}))
	wantCode(t, err, connect.CodeUnauthenticated, "reuse of a rotated token")
	_, err = e.client.Refresh(ctx, req(e, &authv1.RefreshRequest{RefreshToken: rt3}))
	wantCode(t, err, connect.CodeUnauthenticated, "newest token after reuse")
	var reason string
	if err := e.pool.QueryRow(ctx, `SELECT revoke_reason FROM sessions`).Scan(&reason); err != nil || reason != "refresh token reuse" {
		t.Fatalf("session not revoked for reuse: %q %v", reason, err)
	}
	// Postgres is the truth: with the Redis cache emptied the family stays dead.
	sid, _ := parseRefreshToken(rt3)
	e.redisClient().Del(ctx, keySession+sid.String())
	_, err = e.client.Refresh(ctx, req(e, &authv1.RefreshRequest{RefreshToken: rt3}))
	wantCode(t, err, connect.CodeUnauthenticated, "revoked family without cache")

	// Another sign-in is unaffected.
	other := e.signIn("r@example.com").GetTokens().GetRefreshToken()
	if _, err := e.client.Refresh(ctx, req(e, &authv1.RefreshRequest{RefreshToken: other})); err != nil {
		t.Fatalf("new session: %v", err)
	}
	for _, bad := range []string{"", "garbage", refreshPrefix + strings.Repeat("A", 64)} {
		_, err = e.client.Refresh(ctx, req(e, &authv1.RefreshRequest{RefreshToken: bad}))
		wantCode(t, err, connect.CodeUnauthenticated, "refresh with "+bad)
	}
}

// Several tabs (or a restored browser) refresh with the same token at once:
// every one of them gets the same new token, and the session lives on.
func TestConcurrentRefreshesShareOneSuccessor(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	rt := e.signIn("c@example.com").GetTokens().GetRefreshToken()
	const n = 6
	type result struct {
		tok string
		err error
	}
	results := make(chan result, n)
	for range n {
		go func() {
			res, err := e.client.Refresh(ctx, req(e, &authv1.RefreshRequest{RefreshToken: rt}))
			if err != nil {
				results <- result{err: err}
				return
			}
			results <- result{res.Msg.GetTokens().GetRefreshToken(), nil}
		}()
	}
	tokens := map[string]bool{}
	for range n {
		r := <-results
		if r.err != nil {
			t.Fatalf("a concurrent refresh failed: %v", r.err)
		}
		tokens[r.tok] = true
	}
	if len(tokens) != 1 || tokens[rt] {
		t.Fatalf("concurrent refreshes got %d different tokens (want one new one)", len(tokens))
	}
	var revoked int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM sessions WHERE revoked_at IS NOT NULL`).Scan(&revoked); err != nil || revoked != 0 {
		t.Fatalf("%d sessions revoked (%v)", revoked, err)
	}
	var next string
	for tok := range tokens {
		next = tok
	}
	if _, err := e.client.Refresh(ctx, req(e, &authv1.RefreshRequest{RefreshToken: next})); err != nil {
		t.Fatalf("the shared successor does not refresh: %v", err)
	}
}

// Past the grace window a rotated token is a copied one: the session dies.
func TestReuseAfterTheGraceWindowRevokes(t *testing.T) {
	e := newEnv(t, nil)
	e.app.Service.set.RefreshGrace = 300 * time.Millisecond
	ctx := context.Background()
	rt := e.signIn("g@example.com").GetTokens().GetRefreshToken()
	r2, err := e.client.Refresh(ctx, req(e, &authv1.RefreshRequest{RefreshToken: rt}))
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.client.Refresh(ctx, req(e, &authv1.RefreshRequest{RefreshToken: rt}))
	if err != nil || again.Msg.GetTokens().GetRefreshToken() != r2.Msg.GetTokens().GetRefreshToken() {
		t.Fatalf("a repeat inside the grace window: %v (same token: %v)", err, err == nil)
	}
	time.Sleep(400 * time.Millisecond)
	_, err = e.client.Refresh(ctx, req(e, &authv1.RefreshRequest{RefreshToken: rt}))
	wantCode(t, err, connect.CodeUnauthenticated, "reuse after the grace window")
	_, err = e.client.Refresh(ctx, req(e, &authv1.RefreshRequest{RefreshToken: r2.Msg.GetTokens().GetRefreshToken()}))
	wantCode(t, err, connect.CodeUnauthenticated, "the successor after reuse")
}

func TestSignOut(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	keep := e.signIn("s@example.com").GetTokens().GetRefreshToken()
	rt := e.signIn("s@example.com").GetTokens().GetRefreshToken()
	if _, err := e.client.SignOut(ctx, req(e, &authv1.SignOutRequest{RefreshToken: rt})); err != nil {
		t.Fatal(err)
	}
	_, err := e.client.Refresh(ctx, req(e, &authv1.RefreshRequest{RefreshToken: rt}))
	wantCode(t, err, connect.CodeUnauthenticated, "refresh after sign-out")
	sid, _ := parseRefreshToken(rt)
	cs, ok, err := e.app.Service.cache.Session(ctx, sid)
	if err != nil || !ok || !cs.Revoked {
		t.Fatalf("session cache after sign-out: %+v %v %v", cs, ok, err)
	}
	e.redisClient().Del(ctx, keySession+sid.String())
	_, err = e.client.Refresh(ctx, req(e, &authv1.RefreshRequest{RefreshToken: rt}))
	wantCode(t, err, connect.CodeUnauthenticated, "refresh after sign-out, cache empty")
	// Signing out twice, or with junk, is harmless.
	for _, tok := range []string{rt, "junk", ""} {
		if _, err := e.client.SignOut(ctx, req(e, &authv1.SignOutRequest{RefreshToken: tok})); err != nil {
			t.Fatalf("SignOut(%q): %v", tok, err)
		}
	}
	// The other session of the same user lives on.
	if _, err := e.client.Refresh(ctx, req(e, &authv1.RefreshRequest{RefreshToken: keep})); err != nil {
		t.Fatalf("other session: %v", err)
	}
}

func TestExpiredAccessTokenRejected(t *testing.T) {
	e := newEnv(t, nil)
	u := e.signIn("x@example.com").GetUser()
	signer := token.NewSigner(e.keys.Private, "pressroom-auth", []string{"pressroom"}, 15*time.Minute)
	past := time.Now().Add(-time.Hour)
	tok, err := signer.SignClaims(token.Claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject: u.GetId(), IssuedAt: jwt.NewNumericDate(past), ExpiresAt: jwt.NewNumericDate(past.Add(15 * time.Minute)),
	}, Email: u.GetEmail(), Roles: []string{"admin"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.verifier.Verify(tok); !errors.Is(err, token.ErrInvalidToken) {
		t.Fatalf("kit verifier accepted an expired token: %v", err)
	}
	_, err = e.client.GetCurrentUser(context.Background(), bearer(tok, &authv1.GetCurrentUserRequest{}))
	wantCode(t, err, connect.CodeUnauthenticated, "expired access token")
	_, err = e.client.ListUsers(context.Background(), bearer(tok, &authv1.ListUsersRequest{}))
	wantCode(t, err, connect.CodeUnauthenticated, "expired admin token")
}

func TestSetRoles(t *testing.T) {
	e := newEnv(t, map[string]string{"ADMIN_EMAILS": "root@example.com"})
	ctx := context.Background()
	root := e.signIn("root@example.com")
	rootAT := root.GetTokens().GetAccessToken()
	bob := e.signIn("bob@example.com")
	carol := e.signIn("carol@example.com")

	setRoles := func(at, id string, roles ...string) (*authv1.User, error) {
		res, err := e.client.SetRoles(ctx, bearer(at, &authv1.SetRolesRequest{UserId: id, Roles: roles}))
		if err != nil {
			return nil, err
		}
		return res.Msg.GetUser(), nil
	}

	// Admin makes bob an author; bob's next refresh carries it.
	u, err := setRoles(rootAT, bob.GetUser().GetId(), "author", " Reader ")
	if err != nil || !slices.Equal(u.GetRoles(), []string{"author", "reader"}) {
		t.Fatalf("SetRoles: %v %v", u, err)
	}
	ref, err := e.client.Refresh(ctx, req(e, &authv1.RefreshRequest{RefreshToken: bob.GetTokens().GetRefreshToken()}))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := e.verifier.Verify(ref.Msg.GetTokens().GetAccessToken())
	if c == nil || !slices.Contains(c.Roles, "author") {
		t.Fatalf("refreshed token lacks the new role: %+v", c)
	}
	bobAT := ref.Msg.GetTokens().GetAccessToken()

	// Readers and authors may not manage roles.
	_, err = setRoles(carol.GetTokens().GetAccessToken(), carol.GetUser().GetId(), "admin")
	wantCode(t, err, connect.CodePermissionDenied, "reader calls SetRoles")
	_, err = setRoles(bobAT, bob.GetUser().GetId(), "admin")
	wantCode(t, err, connect.CodePermissionDenied, "author calls SetRoles")
	_, err = e.client.ListUsers(ctx, bearer(bobAT, &authv1.ListUsersRequest{}))
	wantCode(t, err, connect.CodePermissionDenied, "author calls ListUsers")

	// Bad input says what is wrong.
	_, err = setRoles(rootAT, bob.GetUser().GetId(), "superuser")
	wantCode(t, err, connect.CodeInvalidArgument, "unknown role")
	_, err = setRoles(rootAT, bob.GetUser().GetId())
	wantCode(t, err, connect.CodeInvalidArgument, "no roles")
	_, err = setRoles(rootAT, "not-a-uuid", "reader")
	wantCode(t, err, connect.CodeInvalidArgument, "bad user id")
	_, err = setRoles(rootAT, "6a1f4b5e-0000-4000-8000-000000000000", "reader")
	wantCode(t, err, connect.CodeNotFound, "unknown user")

	// The last admin cannot drop admin.
	_, err = setRoles(rootAT, root.GetUser().GetId(), "reader")
	wantCode(t, err, connect.CodeFailedPrecondition, "last admin demotes self")
	// With a second admin, root may step down; carol (admin now) then holds the guard.
	if _, err := setRoles(rootAT, carol.GetUser().GetId(), "admin"); err != nil {
		t.Fatal(err)
	}
	// root is in ADMIN_EMAILS, which would make it admin again at its next
	// sign-in: refused until the operator takes it off the list.
	_, err = setRoles(rootAT, root.GetUser().GetId(), "author")
	wantCode(t, err, connect.CodeFailedPrecondition, "ADMIN_EMAILS admin steps down")
	e.restart(map[string]string{"ADMIN_EMAILS": ""})
	if _, err := setRoles(rootAT, root.GetUser().GetId(), "author"); err != nil {
		t.Fatalf("admin steps down while another admin exists: %v", err)
	}
	// root's token still says admin, but the database does not: denied.
	_, err = setRoles(rootAT, bob.GetUser().GetId(), "reader")
	wantCode(t, err, connect.CodePermissionDenied, "stale admin token")
	carolAT := e.signIn("carol@example.com").GetTokens().GetAccessToken()
	_, err = setRoles(carolAT, carol.GetUser().GetId(), "reader")
	wantCode(t, err, connect.CodeFailedPrecondition, "new last admin demotes self")

	// Every change is audited: who, whom, before, after, when.
	trail, err := e.app.Store.RoleAudit(ctx, bob.GetUser().GetId())
	if err != nil || len(trail) != 1 {
		t.Fatalf("bob's audit: %+v %v", trail, err)
	}
	a := trail[0]
	if a.ActorID != root.GetUser().GetId() || a.ActorEmail != "root@example.com" || a.TargetEmail != "bob@example.com" ||
		!slices.Equal(a.Before, []string{"reader"}) || !slices.Equal(a.After, []string{"author", "reader"}) || time.Since(a.At) > time.Minute {
		t.Fatalf("audit row: %+v", a)
	}
	var total int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM role_audit`).Scan(&total); err != nil || total != 3 {
		t.Fatalf("audit rows = %d (%v), want 3 (bob, carol, root)", total, err)
	}
}

func TestListUsers(t *testing.T) {
	e := newEnv(t, map[string]string{"ADMIN_EMAILS": "admin@example.com"})
	ctx := context.Background()
	at := e.signIn("admin@example.com").GetTokens().GetAccessToken()
	for _, m := range []string{"b@example.com", "C@example.com", "d_x@other.example", "a@example.com", "dx@other.example"} {
		e.signIn(m)
	}
	list := func(size int32, token, q string) ([]string, string, error) {
		res, err := e.client.ListUsers(ctx, bearer(at, &authv1.ListUsersRequest{PageSize: size, PageToken: token, EmailQuery: q}))
		if err != nil {
			return nil, "", err
		}
		var out []string
		for _, u := range res.Msg.GetUsers() {
			out = append(out, u.GetEmail())
		}
		return out, res.Msg.GetNextPageToken(), nil
	}
	var all []string
	tok := ""
	for page := 0; ; page++ {
		got, next, err := list(2, tok, "")
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, got...)
		if next == "" {
			break
		}
		if page > 5 {
			t.Fatal("paging does not end")
		}
		tok = next
	}
	want := []string{"a@example.com", "admin@example.com", "b@example.com", "C@example.com", "d_x@other.example", "dx@other.example"}
	if !slices.Equal(all, want) {
		t.Fatalf("pages = %v, want %v", all, want)
	}
	// Search is a case-insensitive substring; LIKE wildcards are literal.
	if got, _, _ := list(0, "", "OTHER"); len(got) != 2 {
		t.Fatalf("search OTHER = %v", got)
	}
	if got, _, _ := list(0, "", "d_"); !slices.Equal(got, []string{"d_x@other.example"}) {
		t.Fatalf("search d_ = %v", got)
	}
	_, _, err := list(101, "", "")
	wantCode(t, err, connect.CodeInvalidArgument, "page_size 101")
	_, _, err = list(0, "bogus!", "")
	wantCode(t, err, connect.CodeInvalidArgument, "bad page token")
}

// A demoted admin's access token still says admin until it expires, but
// ListUsers checks the database, as SetRoles does.
func TestListUsersDeniedToDemotedAdmin(t *testing.T) {
	e := newEnv(t, map[string]string{"ADMIN_EMAILS": "ann@example.com"})
	ctx := context.Background()
	ann := e.signIn("ann@example.com")
	annAT := ann.GetTokens().GetAccessToken()
	ben := e.signIn("ben@example.com").GetUser()

	if _, err := e.client.SetRoles(ctx, bearer(annAT, &authv1.SetRolesRequest{UserId: ben.GetId(), Roles: []string{"admin"}})); err != nil {
		t.Fatalf("make ben admin: %v", err)
	}
	benAT := e.signIn("ben@example.com").GetTokens().GetAccessToken()
	if c, err := e.verifier.Verify(benAT); err != nil || !slices.Contains(c.Roles, "admin") {
		t.Fatalf("ben's token after promotion: %+v %v", c, err)
	}
	if _, err := e.client.ListUsers(ctx, bearer(benAT, &authv1.ListUsersRequest{})); err != nil {
		t.Fatalf("admin ben lists users: %v", err)
	}

	if _, err := e.client.SetRoles(ctx, bearer(annAT, &authv1.SetRolesRequest{UserId: ben.GetId(), Roles: []string{"reader"}})); err != nil {
		t.Fatalf("demote ben: %v", err)
	}
	// ben's token still says admin and has not expired.
	if c, err := e.verifier.Verify(benAT); err != nil || !slices.Contains(c.Roles, "admin") {
		t.Fatalf("ben's old token: %+v %v", c, err)
	}
	res, err := e.client.ListUsers(ctx, bearer(benAT, &authv1.ListUsersRequest{}))
	wantCode(t, err, connect.CodePermissionDenied, "ListUsers with a demoted admin's old token")
	if res != nil {
		t.Fatalf("a demoted admin got %d users", len(res.Msg.GetUsers()))
	}
	_, err = e.client.SetRoles(ctx, bearer(benAT, &authv1.SetRolesRequest{UserId: ben.GetId(), Roles: []string{"admin"}}))
	wantCode(t, err, connect.CodePermissionDenied, "SetRoles with a demoted admin's old token")
	// The admin who is still one is unaffected.
	if _, err := e.client.ListUsers(ctx, bearer(annAT, &authv1.ListUsersRequest{})); err != nil {
		t.Fatalf("admin ann lists users: %v", err)
	}
}

// Every sign-in of an ADMIN_EMAILS address makes it admin, so SetRoles refuses
// to take admin away from one (it would come back silently) and says what to do.
func TestSetRolesKeepsAdminEmailsAdmin(t *testing.T) {
	e := newEnv(t, map[string]string{"ADMIN_EMAILS": "boss@example.com, Deputy@Example.com"})
	ctx := context.Background()
	bossAT := e.signIn("boss@example.com").GetTokens().GetAccessToken()
	deputy := e.signIn("deputy@EXAMPLE.com").GetUser()
	plain := e.signIn("plain@example.com").GetUser()
	if !slices.Equal(deputy.GetRoles(), []string{"admin"}) {
		t.Fatalf("ADMIN_EMAILS user signed in as %v", deputy.GetRoles())
	}
	setRoles := func(id string, roles ...string) (*authv1.User, error) {
		res, err := e.client.SetRoles(ctx, bearer(bossAT, &authv1.SetRolesRequest{UserId: id, Roles: roles}))
		if err != nil {
			return nil, err
		}
		return res.Msg.GetUser(), nil
	}
	auditRows := func() int {
		var n int
		if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM role_audit`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// Three admins, so the last-admin guard is not what refuses.
	if _, err := setRoles(plain.GetId(), "admin"); err != nil {
		t.Fatalf("make plain admin: %v", err)
	}
	before := auditRows()
	for _, roles := range [][]string{{"reader"}, {"author", "reader"}} {
		_, err := setRoles(deputy.GetId(), roles...)
		wantCode(t, err, connect.CodeFailedPrecondition, "remove admin from an ADMIN_EMAILS user")
		want := "deputy@EXAMPLE.com is listed in ADMIN_EMAILS, which makes it admin at every sign-in: " +
			"remove it from ADMIN_EMAILS (stack setting app.adminEmails) and redeploy first"
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error does not say what to do: %v", err)
		}
	}
	if got, err := e.app.Store.UserByID(ctx, deputy.GetId()); err != nil || !slices.Equal(got.Roles, []string{"admin"}) {
		t.Fatalf("refused change changed deputy: %+v %v", got, err)
	}
	if n := auditRows(); n != before {
		t.Fatalf("refused change was audited: %d → %d rows", before, n)
	}
	// Adding roles next to admin is fine.
	if u, err := setRoles(deputy.GetId(), "admin", "author"); err != nil || !slices.Contains(u.GetRoles(), "admin") {
		t.Fatalf("add author to ADMIN_EMAILS admin: %v %v", u, err)
	}
	// An admin who is not listed can still be demoted, and stays demoted.
	if u, err := setRoles(plain.GetId(), "reader"); err != nil || !slices.Equal(u.GetRoles(), []string{"reader"}) {
		t.Fatalf("demote non-listed admin: %v %v", u, err)
	}
	if again := e.signIn("plain@example.com").GetUser(); !slices.Equal(again.GetRoles(), []string{"reader"}) {
		t.Fatalf("demoted non-listed admin after sign-in: %v", again.GetRoles())
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, map[string]string{"RATE_LIMIT_SIGNIN_PER_MINUTE": "2", "RATE_LIMIT_REFRESH_PER_MINUTE": "1"})
	ctx := context.Background()
	for i := range 2 {
		if _, err := e.client.StartSignIn(ctx, req(e, &authv1.StartSignInRequest{})); err != nil {
			t.Fatalf("start %d: %v", i, err)
		}
	}
	_, err := e.client.StartSignIn(ctx, req(e, &authv1.StartSignInRequest{}))
	wantCode(t, err, connect.CodeResourceExhausted, "third StartSignIn in a minute")
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Meta().Get("Retry-After") == "" {
		t.Fatalf("no Retry-After on %v", err)
	}
	// Plain HTTP sees 429 with Retry-After.
	hr, _ := http.NewRequest("POST", e.url+"/auth.v1.AuthService/StartSignIn", strings.NewReader("{}"))
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("X-Forwarded-For", "203.0.113.9, "+e.ip)
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("HTTP %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// Another address is not affected.
	other := connect.NewRequest(&authv1.StartSignInRequest{})
	other.Header().Set("X-Forwarded-For", "198.51.100.7")
	if _, err := e.client.StartSignIn(ctx, other); err != nil {
		t.Fatalf("other IP: %v", err)
	}
	// Refresh has its own bucket.
	rr := connect.NewRequest(&authv1.RefreshRequest{RefreshToken: "x"})
	rr.Header().Set("X-Forwarded-For", "198.51.100.8")
	_, err = e.client.Refresh(ctx, rr)
	wantCode(t, err, connect.CodeUnauthenticated, "first refresh")
	_, err = e.client.Refresh(ctx, rr)
	wantCode(t, err, connect.CodeResourceExhausted, "second refresh in a minute")
}

func TestClientIP(t *testing.T) {
	for _, tc := range []struct{ xff, peer, want string }{
		{"", "192.0.2.1:5555", "192.0.2.1"},
		{"203.0.113.5", "10.0.0.1:1", "203.0.113.5"},
		{"1.1.1.1, 203.0.113.5", "10.0.0.1:1", "203.0.113.5"},
		{"garbage", "10.0.0.1:1", "10.0.0.1"},
		{"2001:db8::1", "", "2001:db8::1"},
	} {
		if got := ClientIP(tc.xff, tc.peer); got != tc.want {
			t.Errorf("ClientIP(%q, %q) = %q, want %q", tc.xff, tc.peer, got, tc.want)
		}
	}
}

func TestConfig(t *testing.T) {
	_, err := LoadConfig(map[string]string{})
	if err == nil || !strings.Contains(err.Error(), "DATABASE_URL") || !strings.Contains(err.Error(), "REDIS_ADDR") ||
		!strings.Contains(err.Error(), "GOOGLE_CLIENT_ID") {
		t.Fatalf("missing settings not all named at once: %v", err)
	}
	base := map[string]string{"DATABASE_URL": "postgres://x", "REDIS_ADDR": "127.0.0.1:1"}
	_, err = LoadConfig(base)
	if err == nil || !strings.Contains(err.Error(), "GOOGLE_CLIENT_ID") || !strings.Contains(err.Error(), "GOOGLE_LOGIN_ENABLED=false") {
		t.Fatalf("enabled sign-in without a client: %v", err)
	}
	base["GOOGLE_LOGIN_ENABLED"] = "false"
	base["ADMIN_EMAILS"] = "ops@example.com, nobody"
	_, err = LoadConfig(base)
	if err == nil || !strings.Contains(err.Error(), `"nobody"`) {
		t.Fatalf("bad ADMIN_EMAILS entry: %v", err)
	}
	base["ADMIN_EMAILS"] = "ops@example.com"
	base["PUBLIC_URL"] = "https://news.example.com/"
	cfg, err := LoadConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OIDCRedirectURL != "https://news.example.com/auth/callback" || cfg.HTTPAddr != ":8081" ||
		cfg.AccessTokenTTL != 15*time.Minute || cfg.OIDCIssuerURL != "https://accounts.google.com" ||
		cfg.JWTPrivateKeyPath != "/keys/jwt_private.pem" {
		t.Fatalf("defaults: %+v", cfg)
	}
}

func TestReadiness(t *testing.T) {
	e := newEnv(t, nil)
	resp, err := http.Get(e.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/readyz = %d with Postgres and Redis up", resp.StatusCode)
	}
}

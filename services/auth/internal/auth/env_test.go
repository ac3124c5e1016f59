package auth

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"pressroom.dev/kit/testkit"
	"pressroom.dev/kit/token"
	authv1 "pressroom.dev/proto/gen/auth/v1"
	"pressroom.dev/proto/gen/auth/v1/authv1connect"
	"pressroom.dev/tools/devoidc"
)

func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }

const (
	testClientID = "pressroom-test"
	testSecret   = "test-secret"
	testRedirect = "http://127.0.0.1:9/auth/callback" // never followed: tests read the Location
)

// env is one auth service on loopback with its own database, the shared
// Redis, fresh JWT keys and its own devoidc provider.
type env struct {
	t        testing.TB
	dsn      string
	redis    *testkit.RedisServer
	keys     testkit.KeyFiles
	oidc     *devoidc.Server
	app      *App
	url      string
	client   authv1connect.AuthServiceClient
	verifier *token.Verifier
	pool     *pgxpool.Pool
	ip       string // X-Forwarded-For this env's requests carry
	vars     map[string]string
}

var ipCounter atomic.Int32

// startProvider serves a local OIDC provider for the test client; closed at cleanup.
func startProvider(t testing.TB) *devoidc.Server {
	t.Helper()
	p, err := devoidc.New(devoidc.Options{ClientID: testClientID, ClientSecret: testSecret, RedirectURIs: []string{testRedirect}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// newEnv starts the service with extra overriding the default test settings.
func newEnv(t testing.TB, extra map[string]string) *env {
	t.Helper()
	e := &env{t: t, dsn: testkit.Postgres(t), redis: testkit.Redis(t), keys: testkit.JWTKeys(t)}
	p := startProvider(t)
	e.oidc = p
	n := ipCounter.Add(1)
	e.ip = fmt.Sprintf("10.%d.%d.%d", n/65536%256, n/256%256, n%256)
	e.vars = map[string]string{
		"DATABASE_URL": e.dsn, "REDIS_ADDR": e.redis.Addr, "REDIS_PASSWORD": e.redis.Password,
		"JWT_PRIVATE_KEY_PATH": e.keys.PrivatePath, "JWT_PUBLIC_KEY_PATH": e.keys.PublicPath,
		"OIDC_ISSUER_URL": p.Issuer(), "GOOGLE_CLIENT_ID": testClientID, "GOOGLE_CLIENT_SECRET": testSecret,
		"OIDC_REDIRECT_URL": testRedirect, "HTTP_ADDR": "127.0.0.1:0", "SHUTDOWN_TIMEOUT": "5s",
	}
	for k, v := range extra {
		e.vars[k] = v
	}
	e.start()
	pool, err := pgxpool.New(context.Background(), e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	e.pool = pool
	e.verifier, err = token.LoadVerifier(e.keys.PublicPath, "pressroom-auth", "pressroom")
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// start (re)builds the app from e.vars and serves it; stopped at cleanup.
func (e *env) start() {
	t := e.t
	t.Helper()
	cfg, err := LoadConfig(e.vars)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	app, err := NewApp(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("auth server did not shut down")
		}
	})
	e.app = app
	e.url = "http://" + ln.Addr().String()
	e.client = authv1connect.NewAuthServiceClient(http.DefaultClient, e.url)
}

// restart replaces the running app with one built from vars (same DB/Redis).
func (e *env) restart(vars map[string]string) {
	for k, v := range vars {
		e.vars[k] = v
	}
	e.start()
}

func req[T any](e *env, msg *T) *connect.Request[T] {
	r := connect.NewRequest(msg)
	r.Header().Set("X-Forwarded-For", e.ip)
	return r
}

func bearer[T any](tok string, msg *T) *connect.Request[T] {
	r := connect.NewRequest(msg)
	r.Header().Set("Authorization", "Bearer "+tok)
	return r
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// authorize starts a sign-in and fills in devoidc's form as email, returning
// the callback's code and state.
func (e *env) authorize(email, returnTo string) (code, state string) {
	t := e.t
	t.Helper()
	ctx := context.Background()
	start, err := e.client.StartSignIn(ctx, req(e, &authv1.StartSignInRequest{ReturnTo: returnTo}))
	if err != nil {
		t.Fatalf("StartSignIn: %v", err)
	}
	au, err := url.Parse(start.Msg.GetAuthorizationUrl())
	if err != nil || !strings.HasPrefix(au.String(), e.oidc.Issuer()+"/authorize") {
		t.Fatalf("authorization URL %q is not the provider's", start.Msg.GetAuthorizationUrl())
	}
	q := au.Query()
	if q.Get("state") != start.Msg.GetState() || q.Get("nonce") == "" || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
		t.Fatalf("authorization URL lacks state/nonce/PKCE: %s", au)
	}
	page, err := http.Get(au.String())
	if err != nil {
		t.Fatal(err)
	}
	page.Body.Close()
	if page.StatusCode != 200 {
		t.Fatalf("provider sign-in page: %d", page.StatusCode)
	}
	q.Set("email", email)
	resp, err := noRedirect.PostForm(e.oidc.Issuer()+"/authorize", q)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cb, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(cb.String(), testRedirect) {
		t.Fatalf("provider did not redirect to the callback: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return cb.Query().Get("code"), cb.Query().Get("state")
}

// signIn runs the whole flow and returns the result.
func (e *env) signIn(email string) *authv1.FinishSignInResponse {
	e.t.Helper()
	code, state := e.authorize(email, "/admin")
	res, err := e.client.FinishSignIn(context.Background(), req(e, &authv1.FinishSignInRequest{Code: code, State: state}))
	if err != nil {
		e.t.Fatalf("FinishSignIn(%s): %v", email, err)
	}
	return res.Msg
}

func wantCode(t testing.TB, err error, code connect.Code, what string) {
	t.Helper()
	if connect.CodeOf(err) != code {
		t.Fatalf("%s: want %v, got %v", what, code, err)
	}
}

func (e *env) userCount() int {
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM users`).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) redisClient() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: e.redis.Addr, Password: e.redis.Password})
	e.t.Cleanup(func() { _ = c.Close() })
	return c
}

// newBenchEnv is newEnv without rate limits (a benchmark is one client).
func newBenchEnv(b *testing.B) *env {
	return newEnv(b, map[string]string{"RATE_LIMIT_REFRESH_PER_MINUTE": "0", "RATE_LIMIT_SIGNIN_PER_MINUTE": "0"})
}

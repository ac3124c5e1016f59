package article

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5/pgxpool"

	"pressroom.dev/kit/authz"
	"pressroom.dev/kit/connectkit"
	"pressroom.dev/kit/pg"
	"pressroom.dev/kit/testkit"
	"pressroom.dev/kit/token"
	"pressroom.dev/proto/gen/article/v1/articlev1connect"
)

func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }

const (
	testIssuer   = "pressroom-auth"
	testAudience = "pressroom"
	testURL      = "https://example.com"
)

// env is one test's article service on a fresh database, served over
// Connect with real JWT verification.
type env struct {
	pool   *pgxpool.Pool
	svc    *Service
	client articlev1connect.ArticleServiceClient
	signer *token.Signer
	url    string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	pool, err := pg.Open(ctx, testkit.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := pg.Migrate(ctx, pool, Migrations); err != nil {
		t.Fatal(err)
	}
	keys := testkit.JWTKeys(t)
	verifier, err := token.LoadVerifier(keys.PublicPath, testIssuer, testAudience)
	if err != nil {
		t.Fatal(err)
	}
	svc := NewService(NewStore(pool), testURL)
	mux := http.NewServeMux()
	mux.Handle(articlev1connect.NewArticleServiceHandler(NewHandler(svc), connect.WithInterceptors(
		connectkit.AuthInterceptor(verifier, connectkit.AllowAnonymous(AnonymousProcedures...)))))
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return &env{pool: pool, svc: svc, url: hs.URL, signer: token.NewSigner(keys.Private, testIssuer, []string{testAudience}, time.Hour),
		client: articlev1connect.NewArticleServiceClient(hs.Client(), hs.URL)}
}

// caller is a test identity; an empty id is anonymous.
type caller struct {
	name  string
	id    string
	roles []string
}

var (
	anonymous = caller{name: "anonymous"}
	reader    = caller{name: "reader", id: "00000000-0000-4000-8000-00000000000a", roles: []string{"reader"}}
	authorA   = caller{name: "author-own", id: "00000000-0000-4000-8000-00000000000b", roles: []string{"author"}}
	authorB   = caller{name: "author-other", id: "00000000-0000-4000-8000-00000000000c", roles: []string{"author"}}
	admin     = caller{name: "admin", id: "00000000-0000-4000-8000-00000000000d", roles: []string{"admin"}}
	callers   = []caller{anonymous, reader, authorA, authorB, admin}
)

func (c caller) principal() authz.Principal {
	roles, _ := authz.ParseRoles(c.roles)
	return authz.Principal{UserID: c.id, Email: c.id + "@example.com", Name: "Name " + c.id, Roles: roles}
}

// req wraps msg with c's bearer token.
func req[T any](t *testing.T, e *env, c caller, msg *T) *connect.Request[T] {
	t.Helper()
	r := connect.NewRequest(msg)
	if c.id != "" {
		tok, err := e.signer.Sign(c.id, c.id+"@example.com", "Name "+c.id, c.roles)
		if err != nil {
			t.Fatal(err)
		}
		r.Header().Set("Authorization", "Bearer "+tok)
	}
	return r
}

func (e *env) outboxCount(t *testing.T, where string, args ...any) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox WHERE `+where, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func ptr(s string) *string { return &s }

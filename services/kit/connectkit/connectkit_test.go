package connectkit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"pressroom.dev/kit/authz"
	"pressroom.dev/kit/testkit"
	"pressroom.dev/kit/token"
)

func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }

const (
	iss       = "https://auth.example.com"
	aud       = "pressroom"
	whoami    = "/test.v1.Back/Whoami"
	public    = "/test.v1.Back/Public"
	count     = "/test.v1.Back/Count"
	front     = "/test.v1.Front/Relay"
	adminOnly = "/test.v1.Back/AdminOnly"
)

type (
	str  = wrapperspb.StringValue
	resp = connect.Response[wrapperspb.StringValue]
	req  = connect.Request[wrapperspb.StringValue]
)

func describe(ctx context.Context) string {
	p, ok := authz.FromContext(ctx)
	if !ok {
		return "anonymous"
	}
	return p.UserID + ":" + strings.Join(authz.Strings(p.Roles), ",")
}

// backend is a real Connect server with the auth interceptor.
func backend(t *testing.T, v *token.Verifier) string {
	opts := connect.WithInterceptors(AuthInterceptor(v, AllowAnonymous(public)))
	mux := http.NewServeMux()
	mux.Handle(whoami, connect.NewUnaryHandler(whoami, func(ctx context.Context, _ *req) (*resp, error) {
		if _, err := RequirePrincipal(ctx); err != nil {
			return nil, err
		}
		return connect.NewResponse(wrapperspb.String(describe(ctx))), nil
	}, opts))
	mux.Handle(public, connect.NewUnaryHandler(public, func(ctx context.Context, _ *req) (*resp, error) {
		return connect.NewResponse(wrapperspb.String(describe(ctx))), nil
	}, opts))
	mux.Handle(adminOnly, connect.NewUnaryHandler(adminOnly, func(ctx context.Context, _ *req) (*resp, error) {
		if p, _ := authz.FromContext(ctx); !p.CanManageUsers() {
			return nil, PermissionDenied("only admins manage users")
		}
		return connect.NewResponse(wrapperspb.String("ok")), nil
	}, opts))
	mux.Handle(count, connect.NewServerStreamHandler(count, func(ctx context.Context, _ *req, s *connect.ServerStream[str]) error {
		for i := range 3 {
			if err := s.Send(wrapperspb.String(fmt.Sprintf("%s#%d", describe(ctx), i))); err != nil {
				return err
			}
		}
		return nil
	}, opts))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func call(t *testing.T, base, proc, tok string) (string, error) {
	t.Helper()
	c := connect.NewClient[str, str](http.DefaultClient, base+proc)
	r := connect.NewRequest(wrapperspb.String(""))
	if tok != "" {
		r.Header().Set("Authorization", tok)
	}
	res, err := c.CallUnary(context.Background(), r)
	if err != nil {
		return "", err
	}
	return res.Msg.GetValue(), nil
}

func setup(t *testing.T) (*token.Signer, *token.Verifier) {
	k := testkit.JWTKeys(t)
	s, err := token.LoadSigner(k.PrivatePath, iss, []string{aud}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.LoadVerifier(k.PublicPath, iss, aud)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

func TestAuthInterceptor(t *testing.T) {
	s, v := setup(t)
	base := backend(t, v)
	author, _ := s.Sign("u1", "a@example.com", "Ann", []string{"author"})
	admin, _ := s.Sign("u2", "b@example.com", "Bo", []string{"admin"})
	badRole, _ := s.Sign("u3", "", "", []string{"superuser"})
	other, _ := token.NewSigner(testkit.JWTKeys(t).Private, iss, []string{aud}, time.Hour).Sign("u9", "", "", []string{"admin"})

	cases := []struct {
		name, proc, auth, want string
		code                   connect.Code
	}{
		{"author on required", whoami, "Bearer " + author, "u1:author", 0},
		{"scheme is case-insensitive", whoami, "bearer " + author, "u1:author", 0},
		{"no token on required", whoami, "", "", connect.CodeUnauthenticated},
		{"no token on anonymous", public, "", "anonymous", 0},
		{"token on anonymous", public, "Bearer " + admin, "u2:admin", 0},
		{"bad token on anonymous", public, "Bearer " + other, "", connect.CodeUnauthenticated},
		{"basic auth", whoami, "Basic dTpw", "", connect.CodeUnauthenticated},
		{"bearer without token", whoami, "Bearer ", "", connect.CodeUnauthenticated},
		{"unknown role", whoami, "Bearer " + badRole, "", connect.CodeUnauthenticated},
		{"author not admin", adminOnly, "Bearer " + author, "", connect.CodePermissionDenied},
		{"admin", adminOnly, "Bearer " + admin, "ok", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := call(t, base, c.proc, c.auth)
			if c.code != 0 {
				if connect.CodeOf(err) != c.code {
					t.Fatalf("got %q, %v; want code %v", got, err, c.code)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %q, %v; want %q", got, err, c.want)
			}
		})
	}

	// Streaming handlers are guarded too.
	sc := connect.NewClient[str, str](http.DefaultClient, base+count)
	stream, err := sc.CallServerStream(context.Background(), connect.NewRequest(wrapperspb.String("")))
	if err != nil {
		t.Fatal(err)
	}
	if stream.Receive() || connect.CodeOf(stream.Err()) != connect.CodeUnauthenticated {
		t.Errorf("anonymous stream: %v", stream.Err())
	}
	stream.Close()
	ctx := WithToken(context.Background(), author)
	sc = connect.NewClient[str, str](http.DefaultClient, base+count, connect.WithInterceptors(ForwardToken()))
	stream, err = sc.CallServerStream(ctx, connect.NewRequest(wrapperspb.String("")))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for stream.Receive() {
		got = append(got, stream.Msg().GetValue())
	}
	if stream.Err() != nil || strings.Join(got, " ") != "u1:author#0 u1:author#1 u1:author#2" {
		t.Errorf("stream got %v, %v", got, stream.Err())
	}
	stream.Close()
}

// A front service forwards its caller's token to the back service.
func TestForwardTokenAcrossServices(t *testing.T) {
	s, v := setup(t)
	back := connect.NewClient[str, str](http.DefaultClient, backend(t, v)+whoami, connect.WithInterceptors(ForwardToken()))
	mux := http.NewServeMux()
	mux.Handle(front, connect.NewUnaryHandler(front, func(ctx context.Context, r *req) (*resp, error) {
		res, err := back.CallUnary(ctx, connect.NewRequest(wrapperspb.String("")))
		if err != nil {
			return nil, err
		}
		return connect.NewResponse(wrapperspb.String("front saw " + describe(ctx) + ", back saw " + res.Msg.GetValue())), nil
	}, connect.WithInterceptors(AuthInterceptor(v, AllowAnonymous(front)))))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	reader, _ := s.Sign("u7", "", "", []string{"reader"})
	got, err := call(t, srv.URL, front, "Bearer "+reader)
	if err != nil || got != "front saw u7:reader, back saw u7:reader" {
		t.Fatalf("got %q, %v", got, err)
	}
	// Anonymous at the front stays anonymous at the back (which requires sign-in).
	if _, err := call(t, srv.URL, front, ""); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("anonymous relay: %v", err)
	}
}

func TestErrorFromRealPostgresErrors(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testkit.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `
		CREATE TABLE authors (id int PRIMARY KEY);
		CREATE TABLE posts (slug text CONSTRAINT posts_slug_key UNIQUE, author int REFERENCES authors(id),
		                    title text NOT NULL CHECK (title <> ''));
		INSERT INTO authors VALUES (1);
		INSERT INTO posts VALUES ('a', 1, 't');`); err != nil {
		t.Fatal(err)
	}
	_, dup := pool.Exec(ctx, `INSERT INTO posts VALUES ('a', 1, 't')`)
	_, fk := pool.Exec(ctx, `INSERT INTO posts VALUES ('b', 99, 't')`)
	_, check := pool.Exec(ctx, `INSERT INTO posts VALUES ('c', 1, '')`)
	var s string
	none := pool.QueryRow(ctx, `SELECT slug FROM posts WHERE slug = 'zzz'`).Scan(&s)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, canceled := pool.Exec(cctx, `SELECT 1`)

	for _, c := range []struct {
		err  error
		code connect.Code
		msg  string
	}{
		{fmt.Errorf("create: %w", dup), connect.CodeAlreadyExists, "posts_slug_key"},
		{fk, connect.CodeFailedPrecondition, "posts_author_fkey"},
		{check, connect.CodeInvalidArgument, "posts_title_check"},
		{fmt.Errorf("get: %w", none), connect.CodeNotFound, "not found"},
		{canceled, connect.CodeCanceled, "canceled"},
		{context.DeadlineExceeded, connect.CodeDeadlineExceeded, "timed out"},
		{errors.New("disk on fire at /var/secret"), connect.CodeInternal, "internal error"},
		{PermissionDenied("nope"), connect.CodePermissionDenied, "nope"},
	} {
		got := ErrorFrom(c.err)
		if connect.CodeOf(got) != c.code || !strings.Contains(got.Error(), c.msg) {
			t.Errorf("ErrorFrom(%v) = %v; want %v containing %q", c.err, got, c.code, c.msg)
		}
	}
	if ErrorFrom(nil) != nil {
		t.Error("ErrorFrom(nil) != nil")
	}
	if strings.Contains(ErrorFrom(errors.New("secret")).Error(), "secret") {
		t.Error("internal details leaked")
	}
}

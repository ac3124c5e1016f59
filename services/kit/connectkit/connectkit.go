// Package connectkit carries the caller's identity through Connect RPCs: the
// server interceptor turns a bearer JWT into an authz.Principal in the
// context; the client interceptor forwards the caller's token to the next
// service. It also maps domain and database errors to Connect codes.
package connectkit

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"pressroom.dev/kit/authz"
	"pressroom.dev/kit/token"
)

// AuthOption configures AuthInterceptor.
type AuthOption func(*authInterceptor)

// AllowAnonymous lets callers without a token reach these procedures
// (e.g. "/pressroom.article.v1.ArticleService/GetArticle"); the handler then
// decides what an anonymous caller may see.
func AllowAnonymous(procedures ...string) AuthOption {
	return func(a *authInterceptor) {
		for _, p := range procedures {
			a.anonymous[p] = true
		}
	}
}

// AuthInterceptor verifies "Authorization: Bearer <jwt>" on every incoming
// call and puts the Principal and the raw token in the context. A missing
// token is CodeUnauthenticated unless the procedure allows anonymous callers;
// a bad token is always rejected.
func AuthInterceptor(v *token.Verifier, opts ...AuthOption) connect.Interceptor {
	a := &authInterceptor{v: v, anonymous: map[string]bool{}}
	for _, o := range opts {
		o(a)
	}
	return a
}

type authInterceptor struct {
	v         *token.Verifier
	anonymous map[string]bool
}

func (a *authInterceptor) authenticate(ctx context.Context, procedure string, h http.Header) (context.Context, error) {
	raw := h.Get("Authorization")
	if raw == "" {
		if a.anonymous[procedure] {
			return ctx, nil
		}
		return nil, Unauthenticated("sign-in required: send Authorization: Bearer <token>")
	}
	scheme, tok, ok := strings.Cut(raw, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return nil, Unauthenticated("Authorization header must be \"Bearer <token>\"")
	}
	tok = strings.TrimSpace(tok)
	claims, err := a.v.Verify(tok)
	if err != nil {
		return nil, Unauthenticated("invalid or expired token; sign in again")
	}
	p, err := authz.FromClaims(claims)
	if err != nil {
		return nil, Unauthenticated("token carries an unknown role; sign in again")
	}
	return WithToken(authz.WithPrincipal(ctx, p), tok), nil
}

func (a *authInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		ctx, err := a.authenticate(ctx, req.Spec().Procedure, req.Header())
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (a *authInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (a *authInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := a.authenticate(ctx, conn.Spec().Procedure, conn.RequestHeader())
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

type tokenKey struct{}

// WithToken returns ctx carrying the caller's raw JWT, for ForwardToken.
func WithToken(ctx context.Context, tok string) context.Context {
	return context.WithValue(ctx, tokenKey{}, tok)
}

// TokenFromContext returns the raw JWT set by WithToken or AuthInterceptor.
func TokenFromContext(ctx context.Context) (string, bool) {
	tok, ok := ctx.Value(tokenKey{}).(string)
	return tok, ok && tok != ""
}

// ForwardToken is a client interceptor sending the context's token as a
// bearer, so the next service sees the original caller.
func ForwardToken() connect.Interceptor { return forwardToken{} }

type forwardToken struct{}

func setBearer(ctx context.Context, h http.Header) {
	if tok, ok := TokenFromContext(ctx); ok && h.Get("Authorization") == "" {
		h.Set("Authorization", "Bearer "+tok)
	}
}

func (forwardToken) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			setBearer(ctx, req.Header())
		}
		return next(ctx, req)
	}
}

func (forwardToken) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		setBearer(ctx, conn.RequestHeader())
		return conn
	}
}

func (forwardToken) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// RequirePrincipal returns the caller, or CodeUnauthenticated for anonymous callers.
func RequirePrincipal(ctx context.Context) (authz.Principal, error) {
	p, ok := authz.FromContext(ctx)
	if !ok {
		return authz.Principal{}, Unauthenticated("sign-in required")
	}
	return p, nil
}

// Unauthenticated: the caller must sign in (again).
func Unauthenticated(msg string) *connect.Error {
	return connect.NewError(connect.CodeUnauthenticated, errors.New(msg))
}

// PermissionDenied: the caller is known but may not do this.
func PermissionDenied(msg string) *connect.Error {
	return connect.NewError(connect.CodePermissionDenied, errors.New(msg))
}

// NotFound: the thing asked for does not exist (or is hidden from the caller).
func NotFound(msg string) *connect.Error {
	return connect.NewError(connect.CodeNotFound, errors.New(msg))
}

// InvalidArgument: the request itself is wrong; say which field and how to fix it.
func InvalidArgument(msg string) *connect.Error {
	return connect.NewError(connect.CodeInvalidArgument, errors.New(msg))
}

// AlreadyExists: a unique thing (slug, e-mail) is taken.
func AlreadyExists(msg string) *connect.Error {
	return connect.NewError(connect.CodeAlreadyExists, errors.New(msg))
}

// FailedPrecondition: the request is valid but the current state forbids it.
func FailedPrecondition(msg string) *connect.Error {
	return connect.NewError(connect.CodeFailedPrecondition, errors.New(msg))
}

// ErrorFrom maps err to a Connect error: *connect.Error unchanged,
// pgx.ErrNoRows → NotFound, unique violation → AlreadyExists, foreign-key
// violation → FailedPrecondition, check/not-null violation → InvalidArgument,
// context errors → Canceled/DeadlineExceeded, anything else → Internal with
// its details hidden from the caller (log them before mapping).
func ErrorFrom(err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return NotFound("not found")
	}
	if errors.Is(err, context.Canceled) {
		return connect.NewError(connect.CodeCanceled, errors.New("request canceled"))
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return connect.NewError(connect.CodeDeadlineExceeded, errors.New("request timed out"))
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505":
			return AlreadyExists("already exists: " + constraintHint(pgErr))
		case "23503":
			return FailedPrecondition("refers to something that does not exist: " + constraintHint(pgErr))
		case "23514", "23502", "22001":
			return InvalidArgument("invalid value: " + constraintHint(pgErr))
		}
	}
	return connect.NewError(connect.CodeInternal, errors.New("internal error"))
}

func constraintHint(e *pgconn.PgError) string {
	if e.ConstraintName != "" {
		return e.ConstraintName
	}
	if e.ColumnName != "" {
		return e.ColumnName
	}
	return e.TableName
}

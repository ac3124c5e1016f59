package auth

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"

	"pressroom.dev/kit/connectkit"
	authv1 "pressroom.dev/proto/gen/auth/v1"
	"pressroom.dev/proto/gen/auth/v1/authv1connect"
)

// Handler is the Connect transport of AuthService.
type Handler struct {
	svc       *Service
	log       *slog.Logger
	signIns   *prometheus.CounterVec
	refreshes *prometheus.CounterVec
}

var _ authv1connect.AuthServiceHandler = (*Handler)(nil)

// NewHandler wraps the domain service; reg (may be nil) gets the counters
// auth_signins_total and auth_refreshes_total by result (ok or error code).
func NewHandler(svc *Service, log *slog.Logger, reg prometheus.Registerer) *Handler {
	if log == nil {
		log = slog.Default()
	}
	h := &Handler{svc: svc, log: log,
		signIns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auth_signins_total",
			Help: "Finished sign-ins by result (ok or the Connect error code)."}, []string{"result"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auth_refreshes_total",
			Help: "Refresh calls by result (ok or the Connect error code)."}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(h.signIns, h.refreshes)
	}
	return h
}

func count(c *prometheus.CounterVec, err error) {
	result := "ok"
	if err != nil {
		result = connect.CodeOf(err).String()
	}
	c.WithLabelValues(result).Inc()
}

// AnonymousProcedures need no bearer token: the sign-in flow and the
// refresh-token calls authenticate with their own secrets.
var AnonymousProcedures = []string{
	authv1connect.AuthServiceStartSignInProcedure,
	authv1connect.AuthServiceFinishSignInProcedure,
	authv1connect.AuthServiceRefreshProcedure,
	authv1connect.AuthServiceSignOutProcedure,
}

// ClientIP is the browser's address: the right-most X-Forwarded-For entry
// (the one the web BFF added; only web can reach auth), else the peer.
func ClientIP(xff, peer string) string {
	if xff != "" {
		parts := strings.Split(xff, ",")
		if ip := net.ParseIP(strings.TrimSpace(parts[len(parts)-1])); ip != nil {
			return ip.String()
		}
	}
	if host, _, err := net.SplitHostPort(peer); err == nil {
		return host
	}
	if peer == "" {
		return "unknown"
	}
	return peer
}

func clientIP[T any](req *connect.Request[T]) string {
	return ClientIP(req.Header().Get("X-Forwarded-For"), req.Peer().Addr)
}

func (h *Handler) StartSignIn(ctx context.Context, req *connect.Request[authv1.StartSignInRequest]) (*connect.Response[authv1.StartSignInResponse], error) {
	u, state, err := h.svc.StartSignIn(ctx, clientIP(req), req.Msg.GetReturnTo())
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&authv1.StartSignInResponse{AuthorizationUrl: u, State: state}), nil
}

func (h *Handler) FinishSignIn(ctx context.Context, req *connect.Request[authv1.FinishSignInRequest]) (*connect.Response[authv1.FinishSignInResponse], error) {
	if req.Msg.GetCode() == "" || req.Msg.GetState() == "" {
		return nil, connectkit.InvalidArgument("code and state are required: pass the query parameters the provider sent to the callback")
	}
	out, err := h.svc.FinishSignIn(ctx, req.Msg.GetCode(), req.Msg.GetState())
	if err != nil {
		err = h.toConnect(ctx, err)
		count(h.signIns, err)
		return nil, err
	}
	count(h.signIns, nil)
	return connect.NewResponse(&authv1.FinishSignInResponse{
		User: toProto(out.User), Tokens: tokensProto(out.Tokens), ReturnTo: out.ReturnTo,
	}), nil
}

func (h *Handler) Refresh(ctx context.Context, req *connect.Request[authv1.RefreshRequest]) (*connect.Response[authv1.RefreshResponse], error) {
	if req.Msg.GetRefreshToken() == "" {
		return nil, connectkit.Unauthenticated("refresh_token is required: sign in first")
	}
	u, toks, err := h.svc.Refresh(ctx, clientIP(req), req.Msg.GetRefreshToken())
	if err != nil {
		err = h.toConnect(ctx, err)
		count(h.refreshes, err)
		return nil, err
	}
	count(h.refreshes, nil)
	return connect.NewResponse(&authv1.RefreshResponse{User: toProto(u), Tokens: tokensProto(toks)}), nil
}

func (h *Handler) SignOut(ctx context.Context, req *connect.Request[authv1.SignOutRequest]) (*connect.Response[authv1.SignOutResponse], error) {
	if err := h.svc.SignOut(ctx, req.Msg.GetRefreshToken()); err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&authv1.SignOutResponse{}), nil
}

func (h *Handler) GetCurrentUser(ctx context.Context, _ *connect.Request[authv1.GetCurrentUserRequest]) (*connect.Response[authv1.GetCurrentUserResponse], error) {
	p, err := connectkit.RequirePrincipal(ctx)
	if err != nil {
		return nil, err
	}
	u, err := h.svc.CurrentUser(ctx, p)
	if errors.Is(err, ErrNotFound) {
		return nil, connectkit.Unauthenticated("the signed-in user no longer exists: sign in again")
	}
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&authv1.GetCurrentUserResponse{User: toProto(u)}), nil
}

func (h *Handler) ListUsers(ctx context.Context, req *connect.Request[authv1.ListUsersRequest]) (*connect.Response[authv1.ListUsersResponse], error) {
	p, err := connectkit.RequirePrincipal(ctx)
	if err != nil {
		return nil, err
	}
	users, next, err := h.svc.ListUsers(ctx, p, int(req.Msg.GetPageSize()), req.Msg.GetPageToken(), req.Msg.GetEmailQuery())
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	resp := &authv1.ListUsersResponse{NextPageToken: next}
	for _, u := range users {
		resp.Users = append(resp.Users, toProto(u))
	}
	return connect.NewResponse(resp), nil
}

func (h *Handler) SetRoles(ctx context.Context, req *connect.Request[authv1.SetRolesRequest]) (*connect.Response[authv1.SetRolesResponse], error) {
	p, err := connectkit.RequirePrincipal(ctx)
	if err != nil {
		return nil, err
	}
	u, err := h.svc.SetRoles(ctx, p, req.Msg.GetUserId(), req.Msg.GetRoles())
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&authv1.SetRolesResponse{User: toProto(u)}), nil
}

// toConnect maps domain errors to Connect codes with messages that say what
// to do; anything unexpected is logged and hidden behind Internal.
func (h *Handler) toConnect(ctx context.Context, err error) error {
	var rl *RateLimitError
	switch {
	case errors.As(err, &rl):
		ce := connect.NewError(connect.CodeResourceExhausted, err) // HTTP 429
		ce.Meta().Set("Retry-After", retryAfterSeconds(rl.RetryAfter))
		return ce
	case errors.Is(err, ErrSignInDisabled):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	case errors.Is(err, ErrBadState), errors.Is(err, ErrInvalidArgument):
		return connect.NewError(connect.CodeInvalidArgument, err)
	case errors.Is(err, ErrInvalidRefresh), errors.Is(err, ErrCodeRejected),
		errors.Is(err, ErrIDTokenInvalid), errors.Is(err, ErrNonceMismatch):
		h.log.InfoContext(ctx, "authentication refused", "err", err)
		return connect.NewError(connect.CodeUnauthenticated, err)
	case errors.Is(err, ErrEmailUnverified), errors.Is(err, ErrNotAdmin), errors.Is(err, ErrIdentityMismatch):
		return connect.NewError(connect.CodePermissionDenied, err)
	case errors.Is(err, ErrEmailTaken):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	case errors.Is(err, ErrSignInRace):
		return connect.NewError(connect.CodeAborted, err)
	case errors.Is(err, ErrLastAdmin):
		return connectkit.FailedPrecondition("this user is the last admin: make another user admin first")
	case errors.Is(err, ErrAdminEmail):
		return connectkit.FailedPrecondition(err.Error())
	case errors.Is(err, ErrNotFound):
		return connectkit.NotFound("no such user")
	case errors.Is(err, ErrProviderUnusable):
		h.log.ErrorContext(ctx, "OIDC provider unusable", "err", err)
		return connect.NewError(connect.CodeUnavailable, errors.New("the sign-in provider cannot be reached right now; try again shortly"))
	}
	var ce *connect.Error
	if !errors.As(err, &ce) && ctx.Err() == nil {
		h.log.ErrorContext(ctx, "request failed", "err", err)
	}
	return connectkit.ErrorFrom(err)
}

func toProto(u User) *authv1.User {
	return &authv1.User{
		Id: u.ID, Email: u.Email, Name: u.Name, AvatarUrl: u.AvatarURL, Roles: u.Roles,
		CreatedAt: timestamppb.New(u.CreatedAt), UpdatedAt: timestamppb.New(u.UpdatedAt),
	}
}

func tokensProto(t Tokens) *authv1.Tokens {
	return &authv1.Tokens{
		AccessToken: t.Access, AccessTokenExpiresAt: timestamppb.New(t.AccessExpires),
		RefreshToken: t.Refresh, RefreshTokenExpiresAt: timestamppb.New(t.RefreshExpires),
	}
}

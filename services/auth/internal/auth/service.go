package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"pressroom.dev/kit/authz"
	"pressroom.dev/kit/ids"
	"pressroom.dev/kit/redirect"
	"pressroom.dev/kit/token"
)

// Settings are the domain's knobs (from the service's Config).
type Settings struct {
	AdminEmails    []string      // granted admin at sign-up, promoted at next sign-in
	AccessTTL      time.Duration // access token lifetime (15m)
	RefreshTTL     time.Duration // each refresh token's lifetime (sliding)
	SessionMaxAge  time.Duration // a session's absolute lifetime
	SignInStateTTL time.Duration // how long a started sign-in may take
	SignInPerMin   int           // StartSignIn per client IP per minute (0 = off)
	RefreshPerMin  int           // Refresh per client IP per minute (0 = off)
	// RefreshGrace: a refresh token rotated less than this ago is answered
	// with the token its rotation issued (concurrent refreshes of one token,
	// e.g. tabs restored together), not taken as stolen. 0 = DefaultRefreshGrace.
	RefreshGrace time.Duration
}

// DefaultRefreshGrace is long enough for a browser's concurrent requests,
// short enough that a copied token is still caught.
const DefaultRefreshGrace = 10 * time.Second

// Service is the domain layer: sign-in, sessions, users and roles.
type Service struct {
	store    *Store
	cache    *Cache
	provider *Provider // nil when GOOGLE_LOGIN_ENABLED=false
	signer   *token.Signer
	set      Settings
	admins   map[string]bool
	log      *slog.Logger
}

// NewService wires the layers. provider may be nil (sign-in disabled).
func NewService(store *Store, cache *Cache, provider *Provider, signer *token.Signer, set Settings, log *slog.Logger) *Service {
	admins := map[string]bool{}
	for _, e := range set.AdminEmails {
		if e = strings.ToLower(strings.TrimSpace(e)); e != "" {
			admins[e] = true
		}
	}
	if log == nil {
		log = slog.Default()
	}
	if set.RefreshGrace == 0 {
		set.RefreshGrace = DefaultRefreshGrace
	}
	return &Service{store: store, cache: cache, provider: provider, signer: signer, set: set, admins: admins, log: log}
}

// adminEmail reports whether email is in ADMIN_EMAILS (case-insensitive).
func (s *Service) adminEmail(email string) bool {
	return s.admins[strings.ToLower(strings.TrimSpace(email))]
}

// Domain errors (the transport maps them to Connect codes).
var (
	ErrSignInDisabled = errors.New("sign-in is turned off (GOOGLE_LOGIN_ENABLED=false); set GOOGLE_LOGIN_ENABLED=true with the OIDC client settings to enable it")
	ErrBadState       = errors.New("sign-in state is unknown, expired or already used: start signing in again")
	ErrInvalidRefresh = errors.New("refresh token is invalid, expired or revoked: sign in again")
	ErrRateLimited    = errors.New("too many requests from this address")
	ErrNoRoles        = errors.New(`roles must not be empty: give at least "reader"`)
)

// RateLimitError says how long to wait.
type RateLimitError struct{ RetryAfter time.Duration }

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("%v: retry in %s", ErrRateLimited, e.RetryAfter.Round(time.Second))
}
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

// Tokens are what a sign-in or refresh hands to the BFF.
type Tokens struct {
	Access         string
	AccessExpires  time.Time
	Refresh        string
	RefreshExpires time.Time
}

func (s *Service) limit(ctx context.Context, name, ip string, perMin int) error {
	ok, wait, err := s.cache.Allow(ctx, name, ip, perMin)
	if err != nil {
		// Redis trouble must not lock everyone out of signing in; log it.
		s.log.WarnContext(ctx, "rate limiter unavailable, allowing request", "err", err)
		return nil
	}
	if !ok {
		return &RateLimitError{RetryAfter: wait}
	}
	return nil
}

// StartSignIn creates state, nonce and PKCE verifier, keeps them in Redis
// for SignInStateTTL, and returns the provider URL.
func (s *Service) StartSignIn(ctx context.Context, clientIP, returnTo string) (authURL, state string, err error) {
	if s.provider == nil {
		return "", "", ErrSignInDisabled
	}
	if err := s.limit(ctx, "signin", clientIP, s.set.SignInPerMin); err != nil {
		return "", "", err
	}
	state, nonce, verifier := randomToken(24), randomToken(24), randomToken(48)
	if err := s.cache.PutSignIn(ctx, state, signInState{Nonce: nonce, Verifier: verifier, ReturnTo: redirect.LocalPath(returnTo)}, s.set.SignInStateTTL); err != nil {
		return "", "", err
	}
	authURL, err = s.provider.AuthURL(ctx, state, nonce, verifier)
	return authURL, state, err
}

// SignInOutcome is a finished sign-in.
type SignInOutcome struct {
	User     User
	Tokens   Tokens
	ReturnTo string
}

// FinishSignIn consumes the state (once), redeems the code, verifies the ID
// token, creates or updates the user and opens a session.
func (s *Service) FinishSignIn(ctx context.Context, code, state string) (SignInOutcome, error) {
	var out SignInOutcome
	if s.provider == nil {
		return out, ErrSignInDisabled
	}
	st, err := s.cache.TakeSignIn(ctx, state)
	if errors.Is(err, errNoState) {
		return out, ErrBadState
	} else if err != nil {
		return out, err
	}
	id, err := s.provider.Exchange(ctx, code, st.Verifier, st.Nonce)
	if err != nil {
		return out, err
	}
	res, err := s.store.UpsertOnSignIn(ctx, id, s.adminEmail(id.Email))
	var mismatch *IdentityMismatchError
	var taken *EmailTakenError
	switch {
	case errors.As(err, &mismatch):
		s.log.WarnContext(ctx, "sign-in refused: the account with this e-mail is bound to another person at the provider "+
			"(recycled address?); an admin must release it", "user_id", mismatch.UserID, "issuer", id.Issuer)
		return out, err
	case errors.As(err, &taken):
		s.log.WarnContext(ctx, "sign-in refused: the provider gives this account an e-mail another account holds",
			"user_id", taken.UserID, "other_user_id", taken.OtherID, "issuer", id.Issuer)
		return out, err
	case err != nil:
		return out, err
	}
	if res.Created {
		s.log.InfoContext(ctx, "user created", "user_id", res.User.ID, "roles", res.User.Roles)
	}
	if res.Bound {
		s.log.InfoContext(ctx, "user bound to the provider's identity", "user_id", res.User.ID,
			"issuer", id.Issuer, "previous_issuer", res.PreviousIssuer)
	}
	if res.EmailChanged {
		s.log.InfoContext(ctx, "user's e-mail changed at the provider", "user_id", res.User.ID)
	}
	if res.Promoted {
		s.log.InfoContext(ctx, "user promoted to admin by ADMIN_EMAILS", "user_id", res.User.ID)
	}
	toks, err := s.openSession(ctx, res.User)
	if err != nil {
		return out, err
	}
	return SignInOutcome{User: res.User, Tokens: toks, ReturnTo: st.ReturnTo}, nil
}

func (s *Service) openSession(ctx context.Context, u User) (Tokens, error) {
	now := time.Now()
	sid := uuid.New()
	rt, err := newRefreshToken(sid)
	if err != nil {
		return Tokens{}, err
	}
	sessionEnd := now.Add(s.set.SessionMaxAge)
	rtExp := minTime(now.Add(s.set.RefreshTTL), sessionEnd)
	if err := s.store.CreateSession(ctx, u.ID, sid, hashToken(rt), rtExp, sessionEnd); err != nil {
		return Tokens{}, err
	}
	s.cacheSession(ctx, sid, cachedSession{UserID: u.ID}, sessionEnd)
	at, atExp, err := s.accessToken(u, now)
	if err != nil {
		return Tokens{}, err
	}
	return Tokens{Access: at, AccessExpires: atExp, Refresh: rt, RefreshExpires: rtExp}, nil
}

// AccessToken signs a token for u with the roles stored now.
func (s *Service) accessToken(u User, now time.Time) (string, time.Time, error) {
	exp := now.Add(s.set.AccessTTL).Truncate(time.Second)
	tok, err := s.signer.SignClaims(token.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject: u.ID, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(exp),
			ID: uuid.NewString(),
		},
		Email: u.Email, Name: u.Name, Roles: u.Roles,
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign access token: %w", err)
	}
	return tok, exp, nil
}

func (s *Service) cacheSession(ctx context.Context, sid uuid.UUID, cs cachedSession, until time.Time) {
	if err := s.cache.PutSession(ctx, sid, cs, until); err != nil {
		s.log.WarnContext(ctx, "session cache write failed", "err", err)
	}
}

// Refresh rotates the refresh token and signs a new access token carrying
// the user's current roles (so role changes apply at the next refresh).
func (s *Service) Refresh(ctx context.Context, clientIP, refreshToken string) (User, Tokens, error) {
	if err := s.limit(ctx, "refresh", clientIP, s.set.RefreshPerMin); err != nil {
		return User{}, Tokens{}, err
	}
	sid, err := parseRefreshToken(refreshToken)
	if err != nil {
		return User{}, Tokens{}, ErrInvalidRefresh
	}
	// Fast path: a session the cache knows is revoked needs no database work.
	if cs, ok, err := s.cache.Session(ctx, sid); err == nil && ok && cs.Revoked {
		return User{}, Tokens{}, ErrInvalidRefresh
	}
	now := time.Now()
	next, err := newRefreshToken(sid)
	if err != nil {
		return User{}, Tokens{}, err
	}
	rot, err := s.store.Rotate(ctx, refreshToken, next, now.Add(s.set.RefreshTTL), s.set.RefreshGrace)
	switch {
	case errors.Is(err, ErrTokenReused):
		s.log.WarnContext(ctx, "refresh token reuse: session revoked", "session_id", sid, "user_id", rot.UserID, "client_ip", clientIP)
		s.cacheSession(ctx, sid, cachedSession{UserID: rot.UserID, Revoked: true}, rot.SessionExpires)
		return User{}, Tokens{}, ErrInvalidRefresh
	case errors.Is(err, ErrSessionRevoked):
		s.cacheSession(ctx, sid, cachedSession{UserID: rot.UserID, Revoked: true}, rot.SessionExpires)
		return User{}, Tokens{}, ErrInvalidRefresh
	case errors.Is(err, ErrTokenUnknown), errors.Is(err, ErrTokenExpired):
		return User{}, Tokens{}, ErrInvalidRefresh
	case err != nil:
		return User{}, Tokens{}, err
	}
	u, err := s.store.UserByID(ctx, rot.UserID)
	if err != nil {
		return User{}, Tokens{}, err
	}
	at, atExp, err := s.accessToken(u, now)
	if err != nil {
		return User{}, Tokens{}, err
	}
	s.cacheSession(ctx, sid, cachedSession{UserID: u.ID}, rot.SessionExpires)
	return u, Tokens{Access: at, AccessExpires: atExp, Refresh: rot.Refresh, RefreshExpires: rot.RefreshExpires}, nil
}

// SignOut revokes the session of the refresh token. Unknown or malformed
// tokens revoke nothing and are not an error: the caller is signed out either way.
func (s *Service) SignOut(ctx context.Context, refreshToken string) error {
	if _, err := parseRefreshToken(refreshToken); err != nil {
		return nil
	}
	sid, err := s.store.RevokeByToken(ctx, hashToken(refreshToken), "sign-out")
	if errors.Is(err, ErrTokenUnknown) {
		return nil
	}
	if err != nil {
		return err
	}
	st, err := s.store.Session(ctx, sid)
	if err == nil {
		s.cacheSession(ctx, sid, cachedSession{UserID: st.UserID, Revoked: true}, st.Expires)
	}
	return nil
}

// CurrentUser loads the caller.
func (s *Service) CurrentUser(ctx context.Context, p authz.Principal) (User, error) {
	return s.store.UserByID(ctx, p.UserID)
}

// Page sizes of ListUsers.
const (
	DefaultPageSize = 50
	MaxPageSize     = 100
)

// ErrNotAdmin: the caller may not manage users.
var ErrNotAdmin = errors.New("only admins can list users and change roles")

// ListUsers pages through users (admin only). The caller must be an admin in
// the database too, not just in a token that may be ACCESS_TOKEN_TTL old.
func (s *Service) ListUsers(ctx context.Context, p authz.Principal, pageSize int, pageToken, emailQuery string) ([]User, string, error) {
	if !p.CanManageUsers() {
		return nil, "", ErrNotAdmin
	}
	caller, err := s.store.UserByID(ctx, p.UserID)
	if errors.Is(err, ErrNotFound) || (err == nil && !caller.IsAdmin()) {
		return nil, "", ErrNotAdmin
	} else if err != nil {
		return nil, "", fmt.Errorf("load caller: %w", err)
	}
	if pageSize < 0 || pageSize > MaxPageSize {
		return nil, "", fmt.Errorf("%w: page_size must be between 1 and %d (0 means %d), got %d", ErrInvalidArgument, MaxPageSize, DefaultPageSize, pageSize)
	}
	if pageSize == 0 {
		pageSize = DefaultPageSize
	}
	if !ids.IsText(emailQuery) {
		return nil, "", fmt.Errorf("%w: email_query must be text without NUL characters", ErrInvalidArgument)
	}
	if len(emailQuery) > 320 {
		return nil, "", fmt.Errorf("%w: email_query is longer than an e-mail address can be (320)", ErrInvalidArgument)
	}
	var after *pageCursor
	if pageToken != "" {
		c, err := decodeCursor(pageToken)
		if err != nil {
			return nil, "", fmt.Errorf("%w: %v", ErrInvalidArgument, err)
		}
		after = &c
	}
	users, more, err := s.store.ListUsers(ctx, strings.TrimSpace(emailQuery), after, pageSize)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if more {
		last := users[len(users)-1]
		next = encodeCursor(pageCursor{Email: strings.ToLower(last.Email), ID: last.ID})
	}
	return users, next, nil
}

// ErrInvalidArgument wraps every bad-input error.
var ErrInvalidArgument = errors.New("invalid argument")

// SetRoles replaces a user's roles (admin only, audited, last-admin guard).
// Admin cannot be taken from an ADMIN_EMAILS address: its next sign-in would
// silently give it back.
func (s *Service) SetRoles(ctx context.Context, p authz.Principal, userID string, roles []string) (User, error) {
	if !p.CanManageUsers() {
		return User{}, ErrNotAdmin
	}
	parsed, err := authz.ParseRoles(roles)
	if err != nil {
		return User{}, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	if len(parsed) == 0 {
		return User{}, fmt.Errorf("%w: %v", ErrInvalidArgument, ErrNoRoles)
	}
	if !ids.IsUUID(userID) {
		return User{}, fmt.Errorf("%w: user_id %q is not a user id (a UUID from ListUsers)", ErrInvalidArgument, userID)
	}
	u, err := s.store.SetRoles(ctx, p.UserID, userID, authz.Strings(parsed), s.adminEmail)
	if errors.Is(err, ErrActorNotAdmin) {
		return User{}, ErrNotAdmin
	}
	if err == nil {
		s.log.InfoContext(ctx, "roles changed", "actor_id", p.UserID, "user_id", u.ID, "roles", u.Roles)
	}
	return u, err
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

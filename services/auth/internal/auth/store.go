package auth

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"pressroom.dev/kit/ids"
)

// Migrations are applied by the kit's pg.Migrate at start-up.
//
//go:embed migrations/*.sql
var Migrations embed.FS

// User is a row of auth_db.users.
type User struct {
	ID        string
	Email     string
	Name      string
	AvatarURL string
	Roles     []string
	CreatedAt time.Time
	UpdatedAt time.Time
	// OIDCIssuer and OIDCSubject are the provider's identity of the person
	// (iss + sub) the account is bound to; both "" until its first sign-in
	// since identities are stored.
	OIDCIssuer  string
	OIDCSubject string
}

// IsAdmin reports whether the stored roles include admin.
func (u User) IsAdmin() bool { return slices.Contains(u.Roles, "admin") }

// Store errors the domain layer turns into API errors.
var (
	ErrNotFound       = errors.New("not found")
	ErrTokenUnknown   = errors.New("refresh token unknown")
	ErrTokenExpired   = errors.New("refresh token expired")
	ErrSessionRevoked = errors.New("session revoked")
	ErrTokenReused    = errors.New("refresh token reused: session revoked")
	ErrLastAdmin      = errors.New("last admin")
	ErrActorNotAdmin  = errors.New("actor is not an admin")
	ErrAdminEmail     = errors.New("e-mail is listed in ADMIN_EMAILS")

	// ErrIdentityMismatch: the e-mail's account is bound to another person
	// (another subject at the same provider), e.g. a recycled address.
	ErrIdentityMismatch = errors.New("this e-mail address now belongs to a different account at the sign-in provider; " +
		"an admin must release the old account before it can sign in")
	// ErrEmailTaken: the provider now gives the signing-in account an e-mail
	// address another account holds.
	ErrEmailTaken = errors.New("the sign-in provider now gives this account an e-mail address that another account uses; " +
		"an admin must change or remove the other account before this one can sign in")
	// ErrSignInRace: the e-mail's account kept changing address under a
	// sign-in (three times); signing in again settles it.
	ErrSignInRace = errors.New("this e-mail address changed hands during the sign-in; please sign in again")
)

// IdentityMismatchError is ErrIdentityMismatch with the account it concerns
// (for the log; the message shown to the person does not name it).
type IdentityMismatchError struct{ UserID string }

func (e *IdentityMismatchError) Error() string { return ErrIdentityMismatch.Error() }
func (e *IdentityMismatchError) Unwrap() error { return ErrIdentityMismatch }

// EmailTakenError is ErrEmailTaken with the accounts it concerns: UserID
// signed in, OtherID holds the address ("" when not known).
type EmailTakenError struct{ UserID, OtherID string }

func (e *EmailTakenError) Error() string { return ErrEmailTaken.Error() }
func (e *EmailTakenError) Unwrap() error { return ErrEmailTaken }

// AdminEmailError: SetRoles would take admin from a user whose e-mail is in
// ADMIN_EMAILS, which would give it back at their next sign-in.
type AdminEmailError struct{ Email string }

func (e *AdminEmailError) Error() string {
	return e.Email + " is listed in ADMIN_EMAILS, which makes it admin at every sign-in: " +
		"remove it from ADMIN_EMAILS (stack setting app.adminEmails) and redeploy first"
}
func (e *AdminEmailError) Unwrap() error { return ErrAdminEmail }

// Store is the Postgres layer; Postgres is the source of truth for users,
// sessions and refresh tokens.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore wraps a pool whose database has been migrated with Migrations.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

const userCols = `id::text, email, name, avatar_url, roles, created_at, updated_at,
	coalesce(oidc_issuer, ''), coalesce(oidc_subject, '')`

func scanUser(row pgx.Row) (User, error) {
	var u User
	err := row.Scan(&u.ID, &u.Email, &u.Name, &u.AvatarURL, &u.Roles, &u.CreatedAt, &u.UpdatedAt, &u.OIDCIssuer, &u.OIDCSubject)
	if errors.Is(err, pgx.ErrNoRows) {
		return u, ErrNotFound
	}
	return u, err
}

// SignInResult says what happened to the account at sign-in.
type SignInResult struct {
	User     User
	Created  bool // first sign-in
	Promoted bool // an existing account gained admin through ADMIN_EMAILS
	// Bound: an existing account found by its e-mail was bound to the
	// identity; PreviousIssuer is the provider it was bound to before ("" when
	// it had none, i.e. it was made before identities were stored).
	Bound          bool
	PreviousIssuer string
	EmailChanged   bool // the account, found by its identity, took the provider's new e-mail
}

// UpsertOnSignIn finds the account of the person the provider vouched for,
// or creates it (admin when adminEmail, else reader), and refreshes its
// name and avatar. The account is the one bound to id's issuer and subject
// (OpenID Connect: iss + sub identify a user; an e-mail address can be
// handed to someone else):
//   - bound to the identity: that account, whatever e-mail it had; it takes
//     the provider's e-mail unless another account holds that address
//     (*EmailTakenError, nothing changes);
//   - else the account with the e-mail: bound to the identity when it has
//     none yet (made before identities were stored) or one of another issuer
//     (the operator switched providers); one bound to another subject of
//     this issuer belongs to someone else: *IdentityMismatchError, nothing
//     changes;
//   - else a new account bound to the identity.
//
// An existing user whose e-mail is now in ADMIN_EMAILS gains admin (audited);
// removal from the list never demotes anyone, so the list cannot lock admins
// out by accident.
func (s *Store) UpsertOnSignIn(ctx context.Context, id Identity, adminEmail bool) (SignInResult, error) {
	if id.Issuer == "" || id.Subject == "" {
		return SignInResult{}, errors.New("sign-in identity lacks the issuer or the subject")
	}
	var res SignInResult
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		res = SignInResult{}
		// One sign-in of an identity at a time: a second, concurrent first
		// sign-in of the same person waits here, then finds the account the
		// first bound or created. So no two transactions ever write the same
		// identity, and users_oidc_identity_unique cannot fail a sign-in.
		// (The two-key advisory lock space is apart from SetRoles' one-key lock.)
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('pressroom.auth.identity'), hashtext($1))`,
			id.Issuer+" "+id.Subject); err != nil {
			return fmt.Errorf("lock identity: %w", err)
		}
		email := id.Email
		u, err := scanUser(tx.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE oidc_issuer = $1 AND oidc_subject = $2 FOR UPDATE`,
			id.Issuer, id.Subject))
		switch {
		case err == nil:
			// Compared as users_email_unique compares: lower().
			var other string
			if err := tx.QueryRow(ctx, `
				SELECT lower($1) <> lower($2),
					coalesce((SELECT id::text FROM users WHERE lower(email) = lower($1) AND id <> $3 LIMIT 1), '')`,
				email, u.Email, u.ID).Scan(&res.EmailChanged, &other); err != nil {
				return fmt.Errorf("look up e-mail: %w", err)
			}
			if other != "" {
				return &EmailTakenError{UserID: u.ID, OtherID: other}
			}
			if !res.EmailChanged {
				email = u.Email // keep the stored spelling, as for accounts found by e-mail
			}
		case errors.Is(err, ErrNotFound):
			u, res.Created, err = insertOrLockByEmail(ctx, tx, id, adminEmail)
			if err != nil || res.Created {
				res.User = u
				return err
			}
			switch {
			case u.OIDCSubject == "" || u.OIDCIssuer != id.Issuer:
				res.Bound, res.PreviousIssuer = true, u.OIDCIssuer
			case u.OIDCSubject != id.Subject:
				return &IdentityMismatchError{UserID: u.ID}
			}
			email = u.Email
		default:
			return fmt.Errorf("load user by identity: %w", err)
		}

		before := u.Roles
		after := before
		if adminEmail && !u.IsAdmin() {
			after = append(slices.Clone(before), "admin")
			res.Promoted = true
		}
		// Keep what the provider last said, but never blank out what we had.
		name, avatar := id.Name, id.Picture
		if name == "" {
			name = u.Name
		}
		if avatar == "" {
			avatar = u.AvatarURL
		}
		uid := u.ID
		u, err = scanUser(tx.QueryRow(ctx, `
			UPDATE users SET email = $2, name = $3, avatar_url = $4, roles = $5,
				oidc_issuer = $6, oidc_subject = $7, updated_at = now()
			WHERE id = $1 RETURNING `+userCols, u.ID, email, name, avatar, after, id.Issuer, id.Subject))
		if isUniqueViolation(err, "users_email_unique") {
			// Another account took the address after the check above.
			return &EmailTakenError{UserID: uid}
		} else if err != nil {
			return fmt.Errorf("update user: %w", err)
		}
		if res.Promoted {
			if err := audit(ctx, tx, "", "ADMIN_EMAILS", u, before, after, "promoted at sign-in: e-mail is in ADMIN_EMAILS"); err != nil {
				return err
			}
		}
		res.User = u
		return nil
	})
	if err != nil {
		return SignInResult{}, err
	}
	return res, nil
}

// insertOrLockByEmail creates the account of id (created = true), or locks
// and returns the one that holds id's e-mail.
func insertOrLockByEmail(ctx context.Context, tx pgx.Tx, id Identity, adminEmail bool) (u User, created bool, err error) {
	roles := []string{"reader"}
	if adminEmail {
		roles = []string{"admin"}
	}
	for attempt := 1; ; attempt++ {
		u, err = scanUser(tx.QueryRow(ctx, `
			INSERT INTO users (email, name, avatar_url, roles, oidc_issuer, oidc_subject) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (lower(email)) DO NOTHING
			RETURNING `+userCols, id.Email, id.Name, id.Picture, roles, id.Issuer, id.Subject))
		if err == nil {
			return u, true, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return u, false, fmt.Errorf("insert user: %w", err)
		}
		u, err = scanUser(tx.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE lower(email) = lower($1) FOR UPDATE`, id.Email))
		// ErrNotFound: the account that held the address took another one (its
		// owner signed in with a new e-mail) after the insert saw it; try again.
		switch {
		case err == nil:
			return u, false, nil
		case !errors.Is(err, ErrNotFound):
			return u, false, fmt.Errorf("load user: %w", err)
		case attempt == 3:
			return u, false, ErrSignInRace // not "no such user"
		}
	}
}

func isUniqueViolation(err error, constraint string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == constraint
}

func audit(ctx context.Context, tx pgx.Tx, actorID, actorEmail string, target User, before, after []string, reason string) error {
	var actor any
	if actorID != "" {
		actor = actorID
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO role_audit (actor_id, actor_email, target_id, target_email, roles_before, roles_after, reason)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, actor, actorEmail, target.ID, target.Email, before, after, reason)
	if err != nil {
		return fmt.Errorf("write role audit: %w", err)
	}
	return nil
}

// UserByID loads one user; ErrNotFound when there is none (or id is not a UUID).
func (s *Store) UserByID(ctx context.Context, id string) (User, error) {
	if !ids.IsUUID(id) {
		return User{}, ErrNotFound
	}
	return scanUser(s.pool.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE id = $1`, id))
}

// ListUsers returns up to limit users ordered by e-mail, after the cursor,
// whose e-mail contains query (case-insensitive). more says if a next page exists.
func (s *Store) ListUsers(ctx context.Context, query string, after *pageCursor, limit int) (users []User, more bool, err error) {
	pattern := "%" + likeEscaper.Replace(strings.ToLower(query)) + "%"
	afterEmail, afterID := "", uuid.Nil.String()
	useCursor := after != nil
	if useCursor {
		afterEmail, afterID = after.Email, after.ID
	}
	rows, err := s.pool.Query(ctx, `
		SELECT `+userCols+` FROM users
		WHERE lower(email) LIKE $1 ESCAPE '\'
		  AND (NOT $2 OR (lower(email), id) > ($3, $4::uuid))
		ORDER BY lower(email), id
		LIMIT $5`, pattern, useCursor, afterEmail, afterID, limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("list users: %w", err)
	}
	users, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (User, error) { return scanUser(r) })
	if err != nil {
		return nil, false, fmt.Errorf("list users: %w", err)
	}
	if len(users) > limit {
		return users[:limit], true, nil
	}
	return users, false, nil
}

var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// SetRoles replaces the target's roles on behalf of actorID and audits it.
// The actor must be an admin in the database (not just in a token that may
// be 15 minutes old), the last admin cannot lose the admin role, and neither
// can a user whose e-mail adminEmail reports as listed in ADMIN_EMAILS
// (*AdminEmailError). A refused change writes nothing.
func (s *Store) SetRoles(ctx context.Context, actorID, targetID string, roles []string, adminEmail func(email string) bool) (User, error) {
	if !ids.IsUUID(targetID) || !ids.IsUUID(actorID) {
		return User{}, ErrNotFound
	}
	var out User
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Serialise role changes so two admins demoting each other at once
		// cannot both pass the last-admin check.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('pressroom.auth.roles'))`); err != nil {
			return fmt.Errorf("lock roles: %w", err)
		}
		actor, err := scanUser(tx.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE id = $1`, actorID))
		if errors.Is(err, ErrNotFound) || (err == nil && !actor.IsAdmin()) {
			return ErrActorNotAdmin
		} else if err != nil {
			return fmt.Errorf("load actor: %w", err)
		}
		target, err := scanUser(tx.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE id = $1 FOR UPDATE`, targetID))
		if err != nil {
			return err
		}
		if target.IsAdmin() && !slices.Contains(roles, "admin") {
			var admins int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM users WHERE 'admin' = ANY(roles)`).Scan(&admins); err != nil {
				return fmt.Errorf("count admins: %w", err)
			}
			if admins <= 1 {
				return ErrLastAdmin
			}
			if adminEmail != nil && adminEmail(target.Email) {
				return &AdminEmailError{Email: target.Email}
			}
		}
		out, err = scanUser(tx.QueryRow(ctx, `UPDATE users SET roles = $2, updated_at = now() WHERE id = $1 RETURNING `+userCols, targetID, roles))
		if err != nil {
			return fmt.Errorf("update roles: %w", err)
		}
		return audit(ctx, tx, actor.ID, actor.Email, out, target.Roles, roles, "SetRoles")
	})
	return out, err
}

// AuditEntry is one row of role_audit.
type AuditEntry struct {
	ActorID, ActorEmail, TargetID, TargetEmail string
	Before, After                              []string
	Reason                                     string
	At                                         time.Time
}

// RoleAudit returns the audit trail of one user, oldest first.
func (s *Store) RoleAudit(ctx context.Context, targetID string) ([]AuditEntry, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT coalesce(actor_id::text, ''), actor_email, target_id::text, target_email, roles_before, roles_after, reason, created_at
		FROM role_audit WHERE target_id = $1 ORDER BY id`, targetID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditEntry, error) {
		var a AuditEntry
		err := r.Scan(&a.ActorID, &a.ActorEmail, &a.TargetID, &a.TargetEmail, &a.Before, &a.After, &a.Reason, &a.At)
		return a, err
	})
}

// CreateSession opens a session with its first refresh token.
func (s *Store) CreateSession(ctx context.Context, userID string, sessionID uuid.UUID, tokenHash []byte, tokenExpires, sessionExpires time.Time) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO sessions (id, user_id, expires_at) VALUES ($1, $2, $3)`,
			sessionID, userID, sessionExpires); err != nil {
			return fmt.Errorf("create session: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, $3)`,
			tokenHash, sessionID, tokenExpires); err != nil {
			return fmt.Errorf("store refresh token: %w", err)
		}
		return nil
	})
}

// Rotation is the outcome of a successful Rotate.
type Rotation struct {
	UserID         string
	SessionID      uuid.UUID
	SessionExpires time.Time
	Refresh        string    // the refresh token to hand out
	RefreshExpires time.Time // when it expires
}

// Rotate spends the refresh token old and stores next in its place, expiring
// at min(newExpires, the session's end). Presenting a token that was already
// rotated means it was copied: the whole session is revoked (and that
// revocation is committed) before ErrTokenReused is returned. The exception
// is a token rotated less than grace ago whose successor is still unspent:
// that is a concurrent refresh of the same token (several tabs at once), and
// it gets the same successor, not a revocation.
func (s *Store) Rotate(ctx context.Context, old, next string, newExpires time.Time, grace time.Duration) (Rotation, error) {
	var rot Rotation
	var reused bool
	oldHash := hashToken(old)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var expires time.Time
		var rotatedAt, revokedAt *time.Time
		var inGrace bool
		var sealed []byte
		// FOR UPDATE: two concurrent uses of one token must not both rotate it.
		err := tx.QueryRow(ctx, `
			SELECT t.session_id, t.expires_at, t.rotated_at, s.user_id::text, s.expires_at, s.revoked_at,
				coalesce(t.rotated_at > clock_timestamp() - $2 * interval '1 microsecond', false), t.successor_sealed
			FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
			WHERE t.token_hash = $1
			FOR UPDATE OF t, s`, oldHash, grace.Microseconds()).
			Scan(&rot.SessionID, &expires, &rotatedAt, &rot.UserID, &rot.SessionExpires, &revokedAt, &inGrace, &sealed)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return ErrTokenUnknown
		case err != nil:
			return fmt.Errorf("load refresh token: %w", err)
		case revokedAt != nil:
			return ErrSessionRevoked
		case rotatedAt != nil:
			if inGrace && sealed != nil {
				ok, err := s.unspentSuccessor(ctx, tx, old, sealed, &rot)
				if err != nil || ok {
					return err
				}
			}
			reused = true
			_, err := tx.Exec(ctx, `UPDATE sessions SET revoked_at = now(), revoke_reason = 'refresh token reuse' WHERE id = $1`, rot.SessionID)
			return err // commit the revocation
		case !time.Now().Before(expires) || !time.Now().Before(rot.SessionExpires):
			return ErrTokenExpired
		}
		sealedNext, err := sealSuccessor(old, next)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE refresh_tokens SET rotated_at = clock_timestamp(), successor_sealed = $2 WHERE token_hash = $1`,
			oldHash, sealedNext); err != nil {
			return fmt.Errorf("rotate refresh token: %w", err)
		}
		if newExpires.After(rot.SessionExpires) {
			newExpires = rot.SessionExpires
		}
		if _, err := tx.Exec(ctx, `INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, $3)`,
			hashToken(next), rot.SessionID, newExpires); err != nil {
			return fmt.Errorf("store refresh token: %w", err)
		}
		rot.Refresh, rot.RefreshExpires = next, newExpires
		return nil
	})
	if err == nil && reused {
		return rot, ErrTokenReused
	}
	return rot, err
}

// unspentSuccessor fills rot with the token a recent rotation of old issued,
// when that token is still live and unspent.
func (s *Store) unspentSuccessor(ctx context.Context, tx pgx.Tx, old string, sealed []byte, rot *Rotation) (bool, error) {
	succ, err := openSuccessor(old, sealed)
	if err != nil {
		return false, nil // not ours to open: treat as reuse
	}
	var expires time.Time
	err = tx.QueryRow(ctx, `SELECT expires_at FROM refresh_tokens
		WHERE token_hash = $1 AND session_id = $2 AND rotated_at IS NULL AND expires_at > now()`,
		hashToken(succ), rot.SessionID).Scan(&expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("load successor token: %w", err)
	}
	rot.Refresh, rot.RefreshExpires = succ, expires
	return true, nil
}

// RevokeByToken revokes the session the token belongs to (sign-out). A token
// that is unknown revokes nothing and returns ErrTokenUnknown.
func (s *Store) RevokeByToken(ctx context.Context, tokenHash []byte, reason string) (uuid.UUID, error) {
	var sid uuid.UUID
	err := s.pool.QueryRow(ctx, `
		UPDATE sessions SET revoked_at = coalesce(revoked_at, now()), revoke_reason = coalesce(revoke_reason, $2)
		WHERE id = (SELECT session_id FROM refresh_tokens WHERE token_hash = $1)
		RETURNING id`, tokenHash, reason).Scan(&sid)
	if errors.Is(err, pgx.ErrNoRows) {
		return uuid.Nil, ErrTokenUnknown
	}
	return sid, err
}

// SessionState is what the Redis cache mirrors.
type SessionState struct {
	UserID  string
	Expires time.Time
	Revoked bool
}

// Session loads a session's state; ErrNotFound when absent.
func (s *Store) Session(ctx context.Context, id uuid.UUID) (SessionState, error) {
	var st SessionState
	var revoked *time.Time
	err := s.pool.QueryRow(ctx, `SELECT user_id::text, expires_at, revoked_at FROM sessions WHERE id = $1`, id).
		Scan(&st.UserID, &st.Expires, &revoked)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, ErrNotFound
	}
	st.Revoked = revoked != nil
	return st, err
}

// PruneResult counts what Prune deleted.
type PruneResult struct {
	Tokens   int64
	Sessions int64
}

// Prune deletes refresh tokens that expired, were rotated, or belong to a
// revoked session, when that happened before cutoff; then sessions that are
// revoked or expired before cutoff and have no tokens left. Each statement is
// short and touches only dead rows, so it is safe while the service serves.
func (s *Store) Prune(ctx context.Context, cutoff time.Time) (PruneResult, error) {
	var r PruneResult
	tag, err := s.pool.Exec(ctx, `
		DELETE FROM refresh_tokens t
		WHERE t.expires_at < $1
		   OR t.rotated_at < $1
		   OR EXISTS (SELECT 1 FROM sessions s WHERE s.id = t.session_id AND s.revoked_at < $1)`, cutoff)
	if err != nil {
		return r, fmt.Errorf("prune refresh tokens: %w", err)
	}
	r.Tokens = tag.RowsAffected()
	tag, err = s.pool.Exec(ctx, `
		DELETE FROM sessions s
		WHERE (s.revoked_at < $1 OR s.expires_at < $1)
		  AND NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.session_id = s.id)`, cutoff)
	if err != nil {
		return r, fmt.Errorf("prune sessions: %w", err)
	}
	r.Sessions = tag.RowsAffected()
	return r, nil
}

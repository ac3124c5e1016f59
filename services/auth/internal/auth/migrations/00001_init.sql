-- +goose Up
CREATE TABLE users (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email      text NOT NULL CHECK (email <> ''),
    name       text NOT NULL DEFAULT '',
    avatar_url text NOT NULL DEFAULT '',
    roles      text[] NOT NULL DEFAULT '{reader}'
               CHECK (cardinality(roles) > 0 AND roles <@ ARRAY['admin','author','reader']),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- One account per e-mail whatever its case; also serves ListUsers' order.
CREATE INDEX users_email_order_idx ON users (lower(email), id);
CREATE UNIQUE INDEX users_email_unique ON users (lower(email));

-- A session is one sign-in: the family of refresh tokens rotated from it.
CREATE TABLE sessions (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz,
    revoke_reason text
);
CREATE INDEX sessions_user_idx ON sessions (user_id);

-- Refresh tokens are stored only as SHA-256 hashes.
CREATE TABLE refresh_tokens (
    token_hash bytea PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    rotated_at timestamptz
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);
CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at);

-- Every role change: who changed whose roles, from what to what, when.
-- actor_id is NULL for automatic changes (ADMIN_EMAILS promotion).
CREATE TABLE role_audit (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor_id     uuid,
    actor_email  text NOT NULL,
    target_id    uuid NOT NULL,
    target_email text NOT NULL,
    roles_before text[] NOT NULL,
    roles_after  text[] NOT NULL,
    reason       text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX role_audit_target_idx ON role_audit (target_id, created_at);

-- +goose Down
DROP TABLE role_audit;
DROP TABLE refresh_tokens;
DROP TABLE sessions;
DROP TABLE users;

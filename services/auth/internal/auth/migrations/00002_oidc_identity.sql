-- +goose Up
-- The provider's identity of the person (OpenID Connect iss + sub), which an
-- e-mail address is not: a mailbox can be handed to someone else. NULL until
-- the account's first sign-in after this migration binds it.
ALTER TABLE users
    ADD COLUMN oidc_issuer  text,
    ADD COLUMN oidc_subject text,
    ADD CONSTRAINT users_oidc_identity_check
        CHECK ((oidc_issuer IS NULL) = (oidc_subject IS NULL) AND oidc_issuer <> '' AND oidc_subject <> '');
-- One account per identity at a provider.
CREATE UNIQUE INDEX users_oidc_identity_unique ON users (oidc_issuer, oidc_subject)
    WHERE oidc_subject IS NOT NULL;

-- +goose Down
DROP INDEX users_oidc_identity_unique;
ALTER TABLE users
    DROP CONSTRAINT users_oidc_identity_check,
    DROP COLUMN oidc_subject,
    DROP COLUMN oidc_issuer;

// Package authz holds the platform's roles and the permission rules every
// service applies: admin manages everything, an author writes and deletes
// their own articles and uploads media, a reader reads published work.
package authz

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"pressroom.dev/kit/token"
)

// Role is one of Admin, Author, Reader.
type Role string

const (
	Admin  Role = "admin"
	Author Role = "author"
	Reader Role = "reader"
)

// AllRoles lists the valid roles, most powerful first.
var AllRoles = []Role{Admin, Author, Reader}

// Principal is the authenticated caller. The zero value is an anonymous visitor.
type Principal struct {
	UserID string
	Email  string
	Name   string
	Roles  []Role
}

// Authenticated reports whether the caller signed in.
func (p Principal) Authenticated() bool { return p.UserID != "" }

// Has reports whether p holds role r.
func (p Principal) Has(r Role) bool { return p.Authenticated() && slices.Contains(p.Roles, r) }

// IsAdmin reports whether p is an admin.
func (p Principal) IsAdmin() bool { return p.Has(Admin) }

// IsStaff reports whether p is an admin or an author.
func (p Principal) IsStaff() bool { return p.IsAdmin() || p.Has(Author) }

// owns reports whether p is the user identified by ownerID.
func (p Principal) owns(ownerID string) bool {
	return p.Authenticated() && ownerID != "" && ownerID == p.UserID
}

// CanCreateArticle: staff write articles.
func (p Principal) CanCreateArticle() bool { return p.IsStaff() }

// CanEditArticle: admins edit any article; authors edit their own.
func (p Principal) CanEditArticle(authorID string) bool {
	return p.IsAdmin() || (p.Has(Author) && p.owns(authorID))
}

// CanDeleteArticle: admins delete any article; authors delete their own.
func (p Principal) CanDeleteArticle(authorID string) bool { return p.CanEditArticle(authorID) }

// CanPublishArticle: whoever may edit an article may publish or unpublish it.
func (p Principal) CanPublishArticle(authorID string) bool { return p.CanEditArticle(authorID) }

// CanReadArticle: everyone reads published articles; drafts only admins and their author.
func (p Principal) CanReadArticle(published bool, authorID string) bool {
	return published || p.CanEditArticle(authorID)
}

// CanUploadMedia: staff upload media.
func (p Principal) CanUploadMedia() bool { return p.IsStaff() }

// CanDeleteMedia: admins delete any media; authors delete what they uploaded.
func (p Principal) CanDeleteMedia(ownerID string) bool {
	return p.IsAdmin() || (p.Has(Author) && p.owns(ownerID))
}

// CanManageUsers: only admins list users and change roles.
func (p Principal) CanManageUsers() bool { return p.IsAdmin() }

// CanAccessAdmin: staff may open the /admin UI.
func (p Principal) CanAccessAdmin() bool { return p.IsStaff() }

// ParseRoles validates role names (trimmed, case-insensitive) and removes duplicates.
func ParseRoles(in []string) ([]Role, error) {
	out := make([]Role, 0, len(in))
	var bad []string
	for _, s := range in {
		r := Role(strings.ToLower(strings.TrimSpace(s)))
		if !slices.Contains(AllRoles, r) {
			bad = append(bad, fmt.Sprintf("%q", s))
			continue
		}
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("unknown role %s: valid roles are admin, author, reader", strings.Join(bad, ", "))
	}
	return out, nil
}

// Strings converts roles to their names.
func Strings(roles []Role) []string {
	out := make([]string, len(roles))
	for i, r := range roles {
		out[i] = string(r)
	}
	return out
}

// FromClaims builds the Principal a verified token describes.
func FromClaims(c *token.Claims) (Principal, error) {
	if c == nil || c.Subject == "" {
		return Principal{}, errors.New("authz: token has no subject")
	}
	roles, err := ParseRoles(c.Roles)
	if err != nil {
		return Principal{}, fmt.Errorf("authz: token roles: %w", err)
	}
	return Principal{UserID: c.Subject, Email: c.Email, Name: c.Name, Roles: roles}, nil
}

type ctxKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the caller; ok is false (and p anonymous) when none was set.
func FromContext(ctx context.Context) (p Principal, ok bool) {
	p, ok = ctx.Value(ctxKey{}).(Principal)
	return p, ok && p.Authenticated()
}

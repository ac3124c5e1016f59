package authz

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"pressroom.dev/kit/token"
)

func TestPermissionTable(t *testing.T) {
	admin := Principal{UserID: "adm", Roles: []Role{Admin}}
	author := Principal{UserID: "ann", Roles: []Role{Author, Reader}}
	other := Principal{UserID: "bob", Roles: []Role{Author}}
	reader := Principal{UserID: "rita", Roles: []Role{Reader}}
	anon := Principal{}
	// A token-less principal must not gain roles by carrying them.
	forged := Principal{Roles: []Role{Admin}}

	type row struct {
		name                                            string
		p                                               Principal
		create, editOwn, editOther, readDraft, readPub  bool
		upload, delMediaOwn, delMediaOther, users, admn bool
	}
	rows := []row{
		{"admin", admin, true, true, true, true, true, true, true, true, true, true},
		{"author", author, true, true, false, true, true, true, true, false, false, true},
		{"other author", other, true, false, false, false, true, true, false, false, false, true},
		{"reader", reader, false, false, false, false, true, false, false, false, false, false},
		{"anonymous", anon, false, false, false, false, true, false, false, false, false, false},
		{"roles without user", forged, false, false, false, false, true, false, false, false, false, false},
	}
	// "own" below means owned by ann; other articles belong to zed.
	for _, r := range rows {
		got := []bool{
			r.p.CanCreateArticle(),
			r.p.CanEditArticle("ann") && r.p.CanDeleteArticle("ann") && r.p.CanPublishArticle("ann"),
			r.p.CanEditArticle("zed") || r.p.CanDeleteArticle("zed"),
			r.p.CanReadArticle(false, "ann"),
			r.p.CanReadArticle(true, "zed"),
			r.p.CanUploadMedia(),
			r.p.CanDeleteMedia("ann"),
			r.p.CanDeleteMedia("zed"),
			r.p.CanManageUsers(),
			r.p.CanAccessAdmin(),
		}
		want := []bool{r.create, r.editOwn, r.editOther, r.readDraft, r.readPub, r.upload, r.delMediaOwn, r.delMediaOther, r.users, r.admn}
		if !slices.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", r.name, got, want)
		}
	}
	if author.CanEditArticle("") {
		t.Error("an article with no author must not count as owned")
	}
}

func TestParseRoles(t *testing.T) {
	got, err := ParseRoles([]string{" Admin", "reader", "admin"})
	if err != nil || !slices.Equal(got, []Role{Admin, Reader}) {
		t.Errorf("got %v %v", got, err)
	}
	_, err = ParseRoles([]string{"author", "owner", "root"})
	if err == nil || !strings.Contains(err.Error(), `"owner", "root"`) || !strings.Contains(err.Error(), "valid roles are") {
		t.Errorf("err = %v", err)
	}
	if s := Strings([]Role{Author, Reader}); !slices.Equal(s, []string{"author", "reader"}) {
		t.Errorf("Strings = %v", s)
	}
}

func TestContextAndClaims(t *testing.T) {
	if _, ok := FromContext(context.Background()); ok {
		t.Error("empty context has a principal")
	}
	p, err := FromClaims(&token.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "u1"}, Email: "e@example.com", Roles: []string{"author"}})
	if err != nil {
		t.Fatal(err)
	}
	got, ok := FromContext(WithPrincipal(context.Background(), p))
	if !ok || got.UserID != "u1" || !got.IsStaff() || got.IsAdmin() {
		t.Errorf("got %+v %v", got, ok)
	}
	if _, err := FromClaims(&token.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "u1"}, Roles: []string{"god"}}); err == nil {
		t.Error("unknown role in token accepted")
	}
	if _, err := FromClaims(&token.Claims{}); err == nil {
		t.Error("token without subject accepted")
	}
}

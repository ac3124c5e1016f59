package article

import (
	"strings"
	"testing"
	"time"

	"pressroom.dev/kit/ids"
)

// FuzzDecodeCursorIDIsAUUID: a page token from a URL is refused or yields an id
// Postgres reads as a uuid; never a panic.
func FuzzDecodeCursorIDIsAUUID(f *testing.F) {
	f.Add(cursor{SortAt: time.Unix(1700000000, 0).UTC(), ID: "6ba7b810-9dad-11d1-80b4-00c04fd430c8"}.encode())
	f.Add("garbage")
	f.Add("eyJ0IjoiMjAyNi0wMS0wMVQwMDowMDowMFoiLCJpIjoieCJ9")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodeCursor(s)
		if err != nil {
			return
		}
		if !ids.IsUUID(c.ID) || c.SortAt.IsZero() {
			t.Fatalf("accepted %q as %+v", s, c)
		}
	})
}

// FuzzValidateSlug: a slug from a URL that passes is one Postgres stores
// and a URL path carries as it is.
func FuzzValidateSlug(f *testing.F) {
	f.Add("my-first-article")
	f.Add("a\x00b")
	f.Add("../x")
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateSlug(s) != nil {
			return
		}
		if s == "" || len(s) > MaxSlugLen || strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" ||
			strings.HasPrefix(s, "-") || strings.HasSuffix(s, "-") || strings.Contains(s, "--") {
			t.Fatalf("accepted %q", s)
		}
	})
}

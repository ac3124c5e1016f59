package media

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"pressroom.dev/kit/ids"
)

// A page token's time must be one Postgres can compare with: a made-up one
// far outside its range failed the query (22008) instead of being refused.
func TestDecodeCursorRefusesTimesPostgresCannotHold(t *testing.T) {
	id := "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
	tok := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, bad := range []string{tok("9223372036854775807," + id), tok("-9223372036854775808," + id), tok("-1," + id),
		tok("1," + id + "\x00"), tok("1,urn:uuid:" + id)} {
		if _, err := decodeCursor(bad); err == nil {
			t.Errorf("decodeCursor accepted %q", bad)
		}
	}
	c := Cursor{CreatedAt: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), ID: id}
	got, err := decodeCursor(encodeCursor(c))
	if err != nil || !got.CreatedAt.Equal(c.CreatedAt) || got.ID != id {
		t.Fatalf("round trip: %+v %v", got, err)
	}
}

// FuzzDecodeCursor: any page token is refused or gives a canonical id and a
// time inside the range Postgres holds; never a panic.
func FuzzDecodeCursor(f *testing.F) {
	f.Add(encodeCursor(Cursor{CreatedAt: time.Unix(1700000000, 0), ID: "6ba7b810-9dad-11d1-80b4-00c04fd430c8"}))
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodeCursor(s)
		if err != nil {
			return
		}
		if !ids.IsUUID(c.ID) || strings.ContainsRune(c.ID, 0) || c.CreatedAt.Before(time.Unix(0, 0)) || c.CreatedAt.Year() > 9999 {
			t.Fatalf("accepted %q as %+v", s, c)
		}
	})
}

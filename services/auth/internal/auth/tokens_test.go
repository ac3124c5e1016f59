package auth

import (
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestRefreshTokenRoundTrip(t *testing.T) {
	sid := uuid.New()
	a, err := newRefreshToken(sid)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newRefreshToken(sid)
	if a == b {
		t.Fatal("two tokens for one session are equal")
	}
	got, err := parseRefreshToken(a)
	if err != nil || got != sid {
		t.Fatalf("parse(%q) = %v, %v; want %v", a, got, err, sid)
	}
	for _, bad := range []string{"", "prt_", a[:len(a)-1], a + "A", strings.Replace(a, "prt_", "xxx_", 1),
		refreshPrefix + strings.Repeat("A", 64), refreshPrefix + strings.Repeat("*", 64)} {
		if _, err := parseRefreshToken(bad); err == nil {
			t.Errorf("parse(%q) accepted", bad)
		}
	}
}

// FuzzParseRefreshToken: any input either fails cleanly or yields a session
// id that re-encodes into the same token shape.
func FuzzParseRefreshToken(f *testing.F) {
	tok, _ := newRefreshToken(uuid.New())
	for _, s := range []string{tok, "", "prt_", "prt_" + strings.Repeat("A", 64), "prt_" + strings.Repeat("_", 64), "garbage"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := parseRefreshToken(s)
		if err != nil {
			if id != uuid.Nil {
				t.Fatalf("error with id %v", id)
			}
			return
		}
		if id == uuid.Nil || !strings.HasPrefix(s, refreshPrefix) || len(s) != len(tok) {
			t.Fatalf("accepted %q as session %v", s, id)
		}
	})
}

func TestCursorRoundTrip(t *testing.T) {
	c := pageCursor{Email: "a@example.com", ID: uuid.NewString()}
	got, err := decodeCursor(encodeCursor(c))
	if err != nil || got != c {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for _, bad := range []string{"!!", "e30", encodeCursor(pageCursor{Email: "x", ID: "nope"}), strings.Repeat("A", 2000)} {
		if _, err := decodeCursor(bad); err == nil {
			t.Errorf("decodeCursor(%q) accepted", bad)
		}
	}
}

// FuzzDecodeCursor: arbitrary page tokens never panic, and whatever is
// accepted carries a valid UUID and re-encodes to an equivalent cursor.
func FuzzDecodeCursor(f *testing.F) {
	f.Add(encodeCursor(pageCursor{Email: "a@example.com", ID: uuid.NewString()}))
	f.Add("")
	f.Add("e30")
	f.Add("eyJlIjoiIiwiaSI6IiJ9")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodeCursor(s)
		if err != nil {
			return
		}
		if _, err := uuid.Parse(c.ID); err != nil {
			t.Fatalf("accepted cursor with id %q", c.ID)
		}
		again, err := decodeCursor(encodeCursor(c))
		if err != nil || again != c {
			t.Fatalf("re-encode: %+v vs %+v (%v)", again, c, err)
		}
	})
}

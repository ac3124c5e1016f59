package ids

import (
	"strings"
	"testing"
)

const hash = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestIsUUID(t *testing.T) {
	for s, want := range map[string]bool{
		"6ba7b810-9dad-11d1-80b4-00c04fd430c8":          true,
		"6BA7B810-9DAD-11D1-80B4-00C04FD430C8":          true,
		"urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8": false,
		"{6ba7b810-9dad-11d1-80b4-00c04fd430c8}":        false,
		"6ba7b8109dad11d180b400c04fd430c8":              false,
		"6ba7b810-9dad-11d1-80b4-00c04fd430c\x00":       false,
		"": false,
	} {
		if IsUUID(s) != want {
			t.Errorf("IsUUID(%q) = %v", s, !want)
		}
	}
}

func TestIsMediaFilePath(t *testing.T) {
	for p, want := range map[string]bool{
		"/media/" + hash + ".png":                    true,
		"/media/" + hash + ".avif":                   true,
		"/media/../auth/renew":                       false,
		"/media/" + hash + ".png?x=1":                false,
		"/media/" + hash + ".png/../x":               false,
		"/media/" + strings.ToUpper(hash) + ".png":   false,
		"/media/" + hash + ".svg":                    false,
		"/media/api/items":                           false,
		"/media/upload":                              false,
		"https://example.com/media/" + hash + ".png": false,
	} {
		if IsMediaFilePath(p) != want {
			t.Errorf("IsMediaFilePath(%q) = %v", p, !want)
		}
	}
}

func TestIsText(t *testing.T) {
	if !IsText("crème") || IsText("a\x00b") || IsText("\xff") {
		t.Error("IsText")
	}
}

// FuzzIsMediaFilePath: whatever passes is exactly "/media/<hash>.<ext>", a
// path that stays under /media/ however a browser resolves it.
func FuzzIsMediaFilePath(f *testing.F) {
	f.Add("/media/" + hash + ".png")
	f.Add("/media/../auth/renew")
	f.Add("/media/%2e%2e/auth")
	f.Fuzz(func(t *testing.T, p string) {
		if !IsMediaFilePath(p) {
			return
		}
		rest := strings.TrimPrefix(p, "/media/")
		if len(rest) < 66 || strings.Trim(rest[:64], "0123456789abcdef") != "" || rest[64] != '.' ||
			strings.ContainsAny(rest[65:], "/?#%\\.\x00") {
			t.Fatalf("accepted %q", p)
		}
	})
}

// FuzzIsUUID: whatever passes has the canonical shape Postgres reads.
func FuzzIsUUID(f *testing.F) {
	f.Add("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
	f.Add("urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8")
	f.Fuzz(func(t *testing.T, s string) {
		if !IsUUID(s) {
			return
		}
		if len(s) != 36 || strings.Count(s, "-") != 4 || strings.Trim(strings.ToLower(s), "0123456789abcdef-") != "" {
			t.Fatalf("accepted %q", s)
		}
	})
}

package article

import (
	"regexp"
	"strings"
	"testing"
)

func TestSlugify(t *testing.T) {
	cases := map[string]string{
		"Hello, World!":                "hello-world",
		"  Crème Brûlée, 2nd try! ":    "creme-brulee-2nd-try",
		"Ünïcödé—dashes – and  spaces": "unicode-dashes-and-spaces",
		"!!!":                          "",
		"日本語":                          "",
		"already-a-slug":               "already-a-slug",
	}
	for in, want := range cases {
		if got := Slugify(in); got != want {
			t.Errorf("Slugify(%q) = %q, want %q", in, got, want)
		}
	}
	long := Slugify(strings.Repeat("word ", 100))
	if len(long) > MaxSlugLen || strings.HasSuffix(long, "-") {
		t.Errorf("long slug %q (%d) is too long or ends in a dash", long, len(long))
	}
}

func TestValidateSlug(t *testing.T) {
	for _, ok := range []string{"a", "my-first-article", "2026-plans"} {
		if err := ValidateSlug(ok); err != nil {
			t.Errorf("ValidateSlug(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "a-", "a--b", "A", "a b", "é", strings.Repeat("a", MaxSlugLen+1)} {
		if err := ValidateSlug(bad); err == nil {
			t.Errorf("ValidateSlug(%q) = nil, want an error", bad)
		}
	}
}

func TestWithSuffix(t *testing.T) {
	if got := withSuffix("title", 3); got != "title-3" {
		t.Errorf("withSuffix = %q", got)
	}
	long := strings.Repeat("a", MaxSlugLen)
	if got := withSuffix(long, 12); len(got) > MaxSlugLen || ValidateSlug(got) != nil {
		t.Errorf("withSuffix(long) = %q: too long or invalid", got)
	}
}

func TestWithRandomSuffix(t *testing.T) {
	counted := regexp.MustCompile(`-[0-9]{1,6}$`) // what freeSlugSQL counts
	for _, base := range []string{"title", strings.Repeat("a", MaxSlugLen-8)} {
		for range 100 {
			got, err := withRandomSuffix(base)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) > MaxSlugLen || ValidateSlug(got) != nil || !isSuffixOf(got, base) || counted.MatchString(got) {
				t.Fatalf("withRandomSuffix(%q) = %q: too long, invalid, not base-digits, or counted by the lookup", base, got)
			}
		}
	}
}

// FuzzSlugify: any title yields "" or a slug that passes ValidateSlug.
func FuzzSlugify(f *testing.F) {
	for _, s := range []string{"Hello, World!", "Crème Brûlée", "", "---", "a\u0301b", strings.Repeat("x-", 80), "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, title string) {
		s := Slugify(title)
		if s == "" {
			return
		}
		if err := ValidateSlug(s); err != nil {
			t.Fatalf("Slugify(%q) = %q, which is invalid: %v", title, s, err)
		}
		if Slugify(s) != s {
			t.Fatalf("Slugify is not idempotent on %q", s)
		}
	})
}

func TestCursorRoundTrip(t *testing.T) {
	if _, err := decodeCursor("not-base64!"); err == nil {
		t.Fatal("decodeCursor accepted garbage")
	}
	if _, err := decodeCursor("e30"); err == nil { // "{}"
		t.Fatal("decodeCursor accepted an empty cursor")
	}
}

// FuzzDecodeCursor: arbitrary tokens never panic and valid ones round-trip.
func FuzzDecodeCursor(f *testing.F) {
	f.Add("")
	f.Add("eyJ0IjoiMjAyNi0wMS0wMlQwMzowNDowNVoiLCJpIjoieCJ9")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := decodeCursor(tok)
		if err != nil {
			return
		}
		c2, err := decodeCursor(c.encode())
		if err != nil || !c2.SortAt.Equal(c.SortAt) || c2.ID != c.ID {
			t.Fatalf("cursor %q does not round-trip", tok)
		}
	})
}

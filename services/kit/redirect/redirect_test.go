package redirect

import (
	"strings"
	"testing"
)

func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{
		"/": "/", "/admin": "/admin", "/admin/articles?status=draft": "/admin/articles?status=draft",
		"/a?b=c#d": "/a?b=c#d", "/articles/caf%C3%A9": "/articles/caf%C3%A9",
		"": "/", "admin": "/", "https://evil.example/": "/", "javascript:alert(1)": "/",
		"//evil.example": "/", "/\\evil.example": "/", "/a\\b": "/",
		"/\t/evil.example": "/", "/\n/evil.example": "/", "/\r/evil.example": "/", "\t//evil.example": "/",
		" //evil.example": "/", "/ok\r\nSet-Cookie: a=b": "/", "/\x00x": "/", "/\x7fx": "/",
	} {
		if got := LocalPath(in); got != want {
			t.Errorf("LocalPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// browserReference is how a browser reads a Location header's value before
// resolving it (WHATWG URL: strip leading and trailing C0 controls and
// spaces, remove every tab and newline, read "\" as "/" in http(s) URLs).
func browserReference(loc string) string {
	s := strings.TrimFunc(loc, func(r rune) bool { return r <= 0x20 })
	s = strings.NewReplacer("\t", "", "\n", "", "\r", "").Replace(s)
	return strings.ReplaceAll(s, "\\", "/")
}

// staysOnSite: a reference resolved against https://site.example/ keeps its
// host when it is a path-absolute reference ("/x", never "//x") and carries
// no scheme.
func staysOnSite(loc string) bool {
	ref := browserReference(loc)
	return strings.HasPrefix(ref, "/") && !strings.HasPrefix(ref, "//")
}

func TestBrowserModelCatchesTheKnownEscapes(t *testing.T) {
	// The oracle must see what the old web check missed, or the fuzz proves nothing.
	for _, loc := range []string{"/\t/evil.example", "/\\evil.example", "\\/evil.example", " //evil.example", "/\n/evil.example"} {
		if staysOnSite(loc) {
			t.Errorf("browser model thinks %q stays on the site", loc)
		}
	}
}

func FuzzLocalPath(f *testing.F) {
	for _, s := range []string{"/", "/admin", "//evil.example", "/\\evil", "https://x", "/a?b=c", "\t/x", "/\t/evil.example", "/%2F/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := LocalPath(in)
		if !staysOnSite(out) || strings.ContainsAny(out, "\r\n") {
			t.Fatalf("LocalPath(%q) = %q: a browser following it leaves the site", in, out)
		}
		if out != in && out != "/" {
			t.Fatalf("LocalPath(%q) = %q: a path is kept as it is or replaced by /", in, out)
		}
	})
}

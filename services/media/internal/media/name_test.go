package media

import (
	"path/filepath"
	"strings"
	"testing"

	"pressroom.dev/kit/ids"
)

func TestParseName(t *testing.T) {
	h := strings.Repeat("ab", 32)
	for _, ok := range []string{h + ".png", h + ".jpg", h + ".gif", h + ".webp", h + ".avif"} {
		n, err := ParseName(ok)
		if err != nil || n.String() != ok {
			t.Errorf("ParseName(%q) = %v, %v", ok, n, err)
		}
	}
	for _, bad := range []string{"", ".png", h, h + ".", h + ".svg", h + ".PNG", strings.ToUpper(h) + ".png",
		h[:63] + ".png", h + "a.png", h + ".png.png", h + ".png\x00", "../" + h[3:] + ".png", h[:62] + "/..png",
		h + ".jpeg", " " + h[1:] + ".png", h[:63] + "g.png", "/" + h[1:] + ".png", h + ".pn\\g"} {
		if _, err := ParseName(bad); err == nil {
			t.Errorf("ParseName(%q) accepted", bad)
		}
	}
}

func TestIsUUID(t *testing.T) {
	if !ids.IsUUID("0b5c0c3e-3f4a-4c1e-9d8f-2a6b7c8d9e0f") || !ids.IsUUID("0B5C0C3E-3F4A-4C1E-9D8F-2A6B7C8D9E0F") {
		t.Fatal("canonical UUIDs refused")
	}
	for _, bad := range []string{"", "0b5c0c3e3f4a4c1e9d8f2a6b7c8d9e0f", "0b5c0c3e-3f4a-4c1e-9d8f-2a6b7c8d9e0", "../../../../../../../../etc/passwd00",
		"0b5c0c3e-3f4a-4c1e-9d8f-2a6b7c8d9e0g", "0b5c0c3e-3f4a-4c1e-9d8f-2a6b7c8d9e\x000"} {
		if ids.IsUUID(bad) {
			t.Errorf("ids.IsUUID(%q)", bad)
		}
	}
}

// FuzzParseName: whatever the input, an accepted name round-trips exactly
// and its path stays inside the media directory's shard for its hash.
func FuzzParseName(f *testing.F) {
	h := strings.Repeat("0f", 32)
	for _, s := range []string{h + ".png", h + ".avif", "../../etc/passwd", h + "/../x.png", h + ".png\x00.jpg",
		"..%2f" + h + ".png", "/etc/passwd", "C:\\windows\\" + h + ".gif", h + ".webp/", ".tmp/upload-1"} {
		f.Add(s)
	}
	files := &Files{root: "/srv/media", tmp: "/srv/media/.tmp"}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseName(s)
		if err != nil {
			return
		}
		if n.String() != s {
			t.Fatalf("%q parsed as %q", s, n.String())
		}
		p := files.Path(n)
		if filepath.Clean(p) != p || filepath.Dir(p) != filepath.Join(files.root, s[:2]) || filepath.Base(p) != s {
			t.Fatalf("%q maps to %q", s, p)
		}
		if strings.ContainsAny(s, "/\\\x00") || strings.Contains(s, "..") {
			t.Fatalf("accepted %q", s)
		}
	})
}

func TestCleanFilename(t *testing.T) {
	for in, want := range map[string]string{
		"photo.jpg":                     "photo.jpg",
		"C:\\Users\\me\\cat.png":        "cat.png",
		"../../etc/passwd":              "passwd",
		"a\x00b\r\nc.png":               "abc.png",
		"  spaced name.gif  ":           "spaced name.gif",
		"bad\xffutf8.png":               "badutf8.png",
		"..":                            "",
		"":                              "",
		"<script>alert(1)</script>.png": "script>.png",
		strings.Repeat("é", 300):        strings.Repeat("é", MaxFilename),
	} {
		if got := CleanFilename(in); got != want {
			t.Errorf("CleanFilename(%q) = %q, want %q", in, got, want)
		}
	}
}

package imaging

import (
	"bytes"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"slices"
	"testing"

	"golang.org/x/image/webp"

	"pressroom.dev/kit/ids"
)

func testImage(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.NRGBA{uint8(x * 7), uint8(y * 3), uint8(x ^ y), 255})
		}
	}
	return img
}

func encode(t testing.TB, f Format, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	img := testImage(w, h)
	var err error
	switch f {
	case JPEG:
		err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 80})
	case PNG:
		err = png.Encode(&buf, img)
	case GIF:
		err = gif.Encode(&buf, img, nil)
	default:
		t.Fatalf("no encoder for %s", f.Name)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type sample struct {
	name string
	data []byte
	f    Format
	w, h int
}

func samples(t testing.TB) []sample {
	return []sample{
		{"jpeg", encode(t, JPEG, 40, 30), JPEG, 40, 30},
		{"png", encode(t, PNG, 33, 17), PNG, 33, 17},
		{"gif", encode(t, GIF, 20, 10), GIF, 20, 10},
		{"webp-lossy", readFixture(t, "sample.webp"), WebP, 64, 48},
		{"webp-lossless", readFixture(t, "sample-lossless.webp"), WebP, 64, 48},
		{"avif", readFixture(t, "sample.avif"), AVIF, 64, 48},
	}
}

func inspect(b []byte) (Info, error) { return Inspect(bytes.NewReader(b), int64(len(b))) }

func TestInspectAcceptsEveryFormat(t *testing.T) {
	for _, s := range samples(t) {
		t.Run(s.name, func(t *testing.T) {
			info, err := inspect(s.data)
			if err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			if info.Format != s.f || info.Width != s.w || info.Height != s.h {
				t.Fatalf("got %+v, want %s %dx%d", info, s.f.Name, s.w, s.h)
			}
		})
	}
}

func TestWebPFixturesReallyDecode(t *testing.T) {
	// The fixtures were made with cwebp; make sure they are real images.
	for _, n := range []string{"sample.webp", "sample-lossless.webp"} {
		if _, err := webp.Decode(bytes.NewReader(readFixture(t, n))); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
	}
}

func TestInspectRejectsEveryTruncation(t *testing.T) {
	for _, s := range samples(t) {
		t.Run(s.name, func(t *testing.T) {
			// Every cut point past the sniffable header must be refused.
			for cut := 40; cut < len(s.data); cut++ { // 40: past every format's magic (avif's ftyp is 32 bytes)
				_, err := inspect(s.data[:cut])
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("cut at %d of %d: got %v, want ErrCorrupt", cut, len(s.data), err)
				}
			}
		})
	}
}

func TestInspectRejectsNonImages(t *testing.T) {
	cases := map[string][]byte{
		"html":         []byte("<!doctype html><html><body><script>alert(1)</script></body></html>"),
		"svg":          []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>`),
		"svg-xml":      []byte(`<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>`),
		"exe":          append([]byte("MZ\x90\x00"), make([]byte, 100)...),
		"pdf":          []byte("%PDF-1.7\n1 0 obj\n"),
		"heic":         append([]byte("\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"), make([]byte, 64)...),
		"text":         []byte("hello"),
		"one-byte":     {0xFF},
		"riff-not-web": append([]byte("RIFF\x10\x00\x00\x00WAVEfmt "), make([]byte, 16)...),
	}
	for name, b := range cases {
		if _, err := inspect(b); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: got %v, want ErrUnsupported", name, err)
		}
	}
	if _, err := inspect(nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("empty: got %v, want ErrCorrupt", err)
	}
}

func TestInspectRejectsDamage(t *testing.T) {
	p := encode(t, PNG, 10, 10)
	bad := bytes.Clone(p)
	bad[len(bad)-20] ^= 0xFF // inside IDAT: its CRC no longer matches
	if _, err := inspect(bad); !errors.Is(err, ErrCorrupt) {
		t.Errorf("png with a flipped byte: %v", err)
	}
	// A PNG whose header claims an enormous size.
	huge := encode(t, PNG, 1, 1)
	copy(huge[16:24], []byte{0, 1, 0, 0, 0, 0, 0, 1}) // width 65536
	fixCRC(huge, 8)
	if _, err := inspect(huge); !errors.Is(err, ErrCorrupt) {
		t.Errorf("png 65536 wide: %v", err)
	}
	// HTML appended to nothing: a JPEG header followed by markup.
	if _, err := inspect([]byte("\xFF\xD8\xFF<html><script>alert(1)</script>")); !errors.Is(err, ErrCorrupt) {
		t.Errorf("jpeg header + html: %v", err)
	}
	// An AVIF whose item data points past the end of the file.
	a := readFixture(t, "sample.avif")
	i := bytes.Index(a, []byte("iloc"))
	// iloc v0, sizes 0x4400, 1 item: id, ref, 1 extent, offset(4), length(4).
	copy(a[i+4+4+2+2+2+2+4:], []byte{0, 0, 0xFF, 0xFF})
	if _, err := inspect(a); !errors.Is(err, ErrCorrupt) {
		t.Errorf("short avif: %v", err)
	}
}

// fixCRC recomputes the CRC of the PNG chunk starting at off.
func fixCRC(b []byte, off int) {
	n := int(b[off])<<24 | int(b[off+1])<<16 | int(b[off+2])<<8 | int(b[off+3])
	sum := crc32.ChecksumIEEE(b[off+4 : off+8+n])
	copy(b[off+8+n:], []byte{byte(sum >> 24), byte(sum >> 16), byte(sum >> 8), byte(sum)})
}

func TestSniffIgnoresNothingButContent(t *testing.T) {
	for _, s := range samples(t) {
		f, ok := Sniff(s.data[:min(len(s.data), SniffLen)])
		if !ok || f != s.f {
			t.Errorf("%s sniffed as %v %v", s.name, f, ok)
		}
	}
	for _, f := range Formats {
		if g, ok := FormatByExt(f.Ext); !ok || g != f {
			t.Errorf("FormatByExt(%q) = %v %v", f.Ext, g, ok)
		}
	}
	if _, ok := FormatByExt("svg"); ok {
		t.Error("svg must not be a format")
	}
}

func FuzzInspect(f *testing.F) {
	for _, s := range samples(f) {
		f.Add(s.data)
	}
	f.Add([]byte("\x00\x00\x00\x10ftypavif\x00\x00\x00\x00"))
	f.Add([]byte("RIFF\x04\x00\x00\x00WEBP"))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := inspect(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if info.Width <= 0 || info.Height <= 0 || info.Width > MaxSide || info.Height > MaxSide || info.Width*info.Height > MaxPixels {
			t.Fatalf("accepted impossible size %+v", info)
		}
		if f, ok := Sniff(b[:min(len(b), SniffLen)]); !ok || f != info.Format {
			t.Fatalf("Inspect says %v, Sniff says %v", info.Format, f)
		}
	})
}

// Bytes after an image's end (a script or another file glued on) make the
// upload something other than the image it claims to be: every format
// refuses them.
func TestInspectRejectsBytesAfterTheEnd(t *testing.T) {
	for _, s := range samples(t) {
		t.Run(s.name, func(t *testing.T) {
			for _, tail := range [][]byte{{0}, []byte("<script>alert(1)</script>"), bytes.Repeat([]byte{0xFF}, 100)} {
				b := append(append([]byte(nil), s.data...), tail...)
				if _, err := inspect(b); !errors.Is(err, ErrCorrupt) {
					t.Errorf("%d bytes after the end: %v, want ErrCorrupt", len(tail), err)
				}
			}
		})
	}
}

// The kit's media path check (what covers and body images may name) knows
// exactly the extensions this package stores.
func TestKitKnowsEveryMediaExtension(t *testing.T) {
	var exts []string
	for _, f := range []Format{JPEG, PNG, GIF, WebP, AVIF} {
		exts = append(exts, f.Ext)
	}
	if !slices.Equal(exts, ids.MediaExtensions) {
		t.Fatalf("kit/ids.MediaExtensions = %v, media stores %v", ids.MediaExtensions, exts)
	}
}

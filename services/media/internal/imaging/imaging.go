// Package imaging decides what an uploaded file is from its bytes alone and
// checks that its container structure is complete, without decoding pixels
// (so a huge or hostile image costs a bounded amount of memory).
package imaging

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Format is one accepted image type.
type Format struct {
	Name        string // short name, e.g. "png"
	Ext         string // file extension without the dot
	ContentType string
}

// The accepted formats. SVG is deliberately absent: it can carry script.
var (
	JPEG = Format{"jpeg", "jpg", "image/jpeg"}
	PNG  = Format{"png", "png", "image/png"}
	GIF  = Format{"gif", "gif", "image/gif"}
	WebP = Format{"webp", "webp", "image/webp"}
	AVIF = Format{"avif", "avif", "image/avif"}
)

// Formats lists every accepted format.
var Formats = []Format{JPEG, PNG, GIF, WebP, AVIF}

// FormatByExt returns the format whose extension is ext.
func FormatByExt(ext string) (Format, bool) {
	for _, f := range Formats {
		if f.Ext == ext {
			return f, true
		}
	}
	return Format{}, false
}

// Limits on what is accepted. Pixels are never decoded here, but browsers
// will decode them, so absurd dimensions are refused.
const (
	MaxSide = 16384
	// MaxPixels caps width times height (100 megapixels): a 48-50 MP phone
	// photo passes, a 16384x16384 image that a browser decodes into 1 GiB
	// does not.
	MaxPixels = 100_000_000
	// SniffLen is how many leading bytes Sniff needs at most.
	SniffLen = 512
)

var (
	// ErrUnsupported: the bytes are not one of the accepted image formats.
	ErrUnsupported = errors.New("unsupported file type: only JPEG, PNG, GIF, WebP and AVIF images are accepted (the type is read from the file's content, not its name)")
	// ErrCorrupt: the bytes start like an accepted image but are not a complete one.
	ErrCorrupt = errors.New("the image is truncated or corrupt")
)

// Info describes a validated image.
type Info struct {
	Format Format
	Width  int
	Height int
}

// Sniff identifies the format from the first bytes of a file (up to SniffLen).
func Sniff(head []byte) (Format, bool) {
	switch {
	case bytes.HasPrefix(head, []byte{0xFF, 0xD8, 0xFF}):
		return JPEG, true
	case bytes.HasPrefix(head, []byte("\x89PNG\r\n\x1a\n")):
		return PNG, true
	case bytes.HasPrefix(head, []byte("GIF87a")), bytes.HasPrefix(head, []byte("GIF89a")):
		return GIF, true
	case len(head) >= 12 && string(head[0:4]) == "RIFF" && string(head[8:12]) == "WEBP":
		return WebP, true
	case isAVIF(head):
		return AVIF, true
	}
	return Format{}, false
}

// Inspect identifies r's format and walks its whole structure: a file that
// is cut short, has bad checksums (PNG) or inconsistent sizes is ErrCorrupt;
// anything that is not an accepted image is ErrUnsupported.
func Inspect(r io.ReaderAt, size int64) (Info, error) {
	if size <= 0 {
		return Info{}, fmt.Errorf("%w: the file is empty", ErrCorrupt)
	}
	head := make([]byte, min(size, SniffLen))
	if _, err := r.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return Info{}, err
	}
	f, ok := Sniff(head)
	if !ok {
		return Info{}, ErrUnsupported
	}
	var (
		w, h int
		err  error
	)
	switch f {
	case JPEG:
		w, h, err = checkJPEG(r, size)
	case PNG:
		w, h, err = checkPNG(r, size)
	case GIF:
		w, h, err = checkGIF(r, size)
	case WebP:
		w, h, err = checkWebP(r, size)
	case AVIF:
		w, h, err = checkAVIF(r, size)
	}
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return Info{}, fmt.Errorf("%w: %s ends early", ErrCorrupt, f.Name)
		}
		if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrUnsupported) {
			return Info{}, err
		}
		return Info{}, fmt.Errorf("%w: %s: %v", ErrCorrupt, f.Name, err)
	}
	if w <= 0 || h <= 0 {
		return Info{}, fmt.Errorf("%w: %s has no size (%dx%d)", ErrCorrupt, f.Name, w, h)
	}
	if w > MaxSide || h > MaxSide {
		return Info{}, fmt.Errorf("%w: %dx%d is larger than %d pixels on a side", ErrCorrupt, w, h, MaxSide)
	}
	if w*h > MaxPixels { // w and h are at most MaxSide here: no overflow
		return Info{}, fmt.Errorf("%w: %dx%d is %d megapixels, more than the %d allowed", ErrCorrupt, w, h, (w*h+999_999)/1_000_000, MaxPixels/1_000_000)
	}
	return Info{Format: f, Width: w, Height: h}, nil
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

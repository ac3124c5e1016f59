package imaging

import (
	"bytes"
	"compress/lzw"
	"encoding/binary"
	"errors"
	"fmt"
	"image/gif"
	"strings"
	"testing"
)

// ilocBody builds the body of an iloc box (after the box header) with every
// offset, length, base and index field zero bytes wide, listing items items
// of extents extents each.
func ilocBody(version byte, sizes uint16, items, extents int) []byte {
	b := []byte{version, 0, 0, 0}
	b = binary.BigEndian.AppendUint16(b, sizes)
	if version == 2 {
		b = binary.BigEndian.AppendUint32(b, uint32(items))
	} else {
		b = binary.BigEndian.AppendUint16(b, uint16(items))
	}
	for i := 0; i < items; i++ {
		if version == 2 {
			b = binary.BigEndian.AppendUint32(b, uint32(i+1)) // item id
		} else {
			b = binary.BigEndian.AppendUint16(b, uint16(i+1))
		}
		if version >= 1 {
			b = append(b, 0, 0) // construction method 0: file offsets
		}
		b = append(b, 0, 0) // data reference index
		b = binary.BigEndian.AppendUint16(b, uint16(extents))
	}
	return b
}

func TestCheckIlocRejectsTooManyExtents(t *testing.T) {
	// 20 items of 65535 zero-byte extents: 1.3 million extents in a box of
	// a few hundred bytes. Without a cap, a meta box full of such items
	// costs billions of loop iterations.
	body := ilocBody(2, 0x0000, 20, 65535)
	err := checkIloc(body, 1000)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("checkIloc(20 items x 65535 extents) = %v, want ErrCorrupt", err)
	}
	if want := fmt.Sprintf("more than %d extents", maxIlocExtents); !strings.Contains(err.Error(), want) {
		t.Fatalf("checkIloc error %q does not name the extent limit (%q)", err, want)
	}
	// Up to the limit is still accepted.
	if err := checkIloc(ilocBody(2, 0x0000, 1, maxIlocExtents-1), 1000); err != nil {
		t.Fatalf("checkIloc(1 item x %d extents) = %v, want nil", maxIlocExtents-1, err)
	}
}

func TestCheckIlocValidatesIndexSize(t *testing.T) {
	// One item with one extent that carries idx bytes of extent index (and
	// zero-byte offset and length), so the body is complete for any size.
	body := func(v byte, idx uint16) []byte {
		return append(ilocBody(v, idx, 1, 1), make([]byte, idx)...)
	}
	for _, v := range []byte{1, 2} {
		for _, idx := range []uint16{0, 4, 8} {
			if err := checkIloc(body(v, idx), 1000); err != nil {
				t.Errorf("version %d, index size %d: %v", v, idx, err)
			}
		}
		for _, idx := range []uint16{1, 2, 3, 15} {
			err := checkIloc(body(v, idx), 1000)
			if want := fmt.Sprintf("iloc index size %d", idx); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), want) {
				t.Errorf("version %d, index size %d: got %v, want ErrCorrupt mentioning %q", v, idx, err, want)
			}
		}
	}
	// In version 0 the index size nibble is reserved and ignored.
	if err := checkIloc(ilocBody(0, 0x0003, 1, 1), 1000); err != nil {
		t.Errorf("version 0 with a reserved nibble of 3: %v", err)
	}
}

type gifFrame struct{ left, top, w, h int }

// gifBytes builds a GIF89a with a two-colour global palette and the given
// frames. Each frame's data is one LZW-coded pixel: the structure walk does
// not decode pixels, and for 1x1 frames the file is a complete, valid GIF.
func gifBytes(t *testing.T, screenW, screenH int, frames ...gifFrame) []byte {
	t.Helper()
	u16 := func(b []byte, v int) []byte { return binary.LittleEndian.AppendUint16(b, uint16(v)) }
	b := []byte("GIF89a")
	b = u16(b, screenW)
	b = u16(b, screenH)
	b = append(b, 0x80, 0, 0)             // global colour table of 2 entries, background 0, aspect 0
	b = append(b, 0, 0, 0, 255, 255, 255) // black, white
	var lzwData bytes.Buffer
	w := lzw.NewWriter(&lzwData, lzw.LSB, 2)
	if _, err := w.Write([]byte{0}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		b = append(b, 0x2C)
		b = u16(b, f.left)
		b = u16(b, f.top)
		b = u16(b, f.w)
		b = u16(b, f.h)
		b = append(b, 0) // no local colour table, not interlaced
		b = append(b, 2) // LZW minimum code size
		b = append(b, byte(lzwData.Len()))
		b = append(b, lzwData.Bytes()...)
		b = append(b, 0) // block terminator
	}
	return append(b, 0x3B)
}

func TestGIFFrameMustLieInsideTheScreen(t *testing.T) {
	// The builder makes real GIFs: the standard decoder reads this one.
	ok := gifBytes(t, 3, 2, gifFrame{0, 0, 1, 1}, gifFrame{2, 1, 1, 1})
	if _, err := gif.DecodeAll(bytes.NewReader(ok)); err != nil {
		t.Fatalf("gif.DecodeAll of the valid sample: %v", err)
	}
	if info, err := inspect(ok); err != nil || info.Width != 3 || info.Height != 2 {
		t.Fatalf("frames inside the screen: got %+v, %v", info, err)
	}
	cases := []struct {
		name   string
		sw, sh int
		f      gifFrame
		msg    string
	}{
		{"huge frame on a 1x1 screen", 1, 1, gifFrame{0, 0, 60000, 60000}, "gif: frame 60000x60000 at (0,0) lies outside the 1x1 screen"},
		{"too wide", 10, 10, gifFrame{0, 0, 11, 10}, "frame 11x10 at (0,0)"},
		{"too tall", 10, 10, gifFrame{0, 0, 10, 11}, "frame 10x11 at (0,0)"},
		{"pushed right", 10, 10, gifFrame{1, 0, 10, 10}, "frame 10x10 at (1,0)"},
		{"pushed down", 10, 10, gifFrame{0, 1, 10, 10}, "frame 10x10 at (0,1)"},
		{"far offset", 10, 10, gifFrame{65535, 65535, 1, 1}, "frame 1x1 at (65535,65535)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := inspect(gifBytes(t, c.sw, c.sh, c.f))
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("got %v, want ErrCorrupt mentioning %q", err, c.msg)
			}
		})
	}
	// A later frame outside the screen is refused too.
	_, err := inspect(gifBytes(t, 10, 10, gifFrame{0, 0, 10, 10}, gifFrame{5, 5, 6, 6}))
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "lies outside the 10x10 screen") {
		t.Fatalf("second frame outside the screen: got %v", err)
	}
}

func TestInspectRejectsTooManyPixels(t *testing.T) {
	// GIFs with a large logical screen and one 1x1 frame: cheap valid files.
	for _, c := range []struct{ w, h int }{{8000, 6000}, {8165, 6124}, {10000, 10000}, {MaxSide, 6103}} {
		info, err := inspect(gifBytes(t, c.w, c.h, gifFrame{0, 0, 1, 1}))
		if err != nil || info.Width != c.w || info.Height != c.h {
			t.Errorf("%dx%d (%d pixels): got %+v, %v; want it accepted", c.w, c.h, c.w*c.h, info, err)
		}
	}
	for _, c := range []struct {
		w, h int
		msg  string
	}{
		{12000, 9000, "12000x9000 is 108 megapixels, more than the 100 allowed"},
		{10001, 10000, "10001x10000 is 101 megapixels"},
		{MaxSide, MaxSide, "16384x16384 is 269 megapixels"},
	} {
		_, err := inspect(gifBytes(t, c.w, c.h, gifFrame{0, 0, 1, 1}))
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%dx%d: got %v, want ErrCorrupt mentioning %q", c.w, c.h, err, c.msg)
		}
	}
}

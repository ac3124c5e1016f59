package imaging

import (
	"bufio"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"

	"golang.org/x/image/webp"
)

func seq(r io.ReaderAt, size int64) *bufio.Reader {
	return bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 32<<10)
}

// atEnd refuses bytes after an image's end marker: a file that is an image
// followed by something else (another format's file, a script) is not served
// as an image.
func atEnd(br *bufio.Reader, format string) error {
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		if err != nil {
			return err
		}
		return corrupt("%s: bytes after the end marker", format)
	}
	return nil
}

// checkJPEG walks the marker segments and the entropy-coded scans up to EOI.
func checkJPEG(r io.ReaderAt, size int64) (int, int, error) {
	br := seq(r, size)
	if _, err := br.Discard(2); err != nil { // SOI
		return 0, 0, err
	}
	var sawFrame, sawScan bool
	for {
		b, err := br.ReadByte()
		if err != nil {
			return 0, 0, err
		}
		if b != 0xFF {
			return 0, 0, corrupt("jpeg: expected a marker, found byte %#x", b)
		}
		m, err := br.ReadByte()
		for err == nil && m == 0xFF { // fill bytes
			m, err = br.ReadByte()
		}
		if err != nil {
			return 0, 0, err
		}
	marker:
		switch {
		case m == 0xD9: // EOI
			if !sawFrame || !sawScan {
				return 0, 0, corrupt("jpeg: no image data before the end marker")
			}
			if err := atEnd(br, "jpeg"); err != nil {
				return 0, 0, err
			}
			cfg, err := jpeg.DecodeConfig(io.NewSectionReader(r, 0, size))
			if err != nil {
				return 0, 0, corrupt("jpeg: %v", err)
			}
			return cfg.Width, cfg.Height, nil
		case m == 0x01 || (m >= 0xD0 && m <= 0xD7): // standalone markers
		case m == 0x00 || m == 0xD8:
			return 0, 0, corrupt("jpeg: unexpected marker %#x", m)
		default:
			var l [2]byte
			if _, err := io.ReadFull(br, l[:]); err != nil {
				return 0, 0, err
			}
			n := int(binary.BigEndian.Uint16(l[:]))
			if n < 2 {
				return 0, 0, corrupt("jpeg: segment length %d", n)
			}
			if _, err := br.Discard(n - 2); err != nil {
				return 0, 0, err
			}
			if (m >= 0xC0 && m <= 0xCF) && m != 0xC4 && m != 0xC8 && m != 0xCC {
				sawFrame = true
			}
			if m != 0xDA {
				break
			}
			sawScan = true
			// Entropy-coded data runs until a marker that is not a stuffed
			// zero or a restart marker.
			for {
				c, err := br.ReadByte()
				if err != nil {
					return 0, 0, err
				}
				if c != 0xFF {
					continue
				}
				n, err := br.ReadByte()
				for err == nil && n == 0xFF {
					n, err = br.ReadByte()
				}
				if err != nil {
					return 0, 0, err
				}
				if n == 0x00 || (n >= 0xD0 && n <= 0xD7) {
					continue
				}
				m = n
				goto marker
			}
		}
	}
}

// checkPNG walks every chunk, verifying its CRC, up to IEND.
func checkPNG(r io.ReaderAt, size int64) (int, int, error) {
	br := seq(r, size)
	if _, err := br.Discard(8); err != nil {
		return 0, 0, err
	}
	remaining := size - 8
	first := true
	var hdr [8]byte
	crc := crc32.NewIEEE()
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return 0, 0, err
		}
		n := int64(binary.BigEndian.Uint32(hdr[0:4]))
		typ := string(hdr[4:8])
		if n > 1<<31-1 || n+12 > remaining {
			return 0, 0, corrupt("png: chunk %q of %d bytes runs past the end of the file", typ, n)
		}
		remaining -= n + 12
		if first && (typ != "IHDR" || n != 13) {
			return 0, 0, corrupt("png: the first chunk is %q, not IHDR", typ)
		}
		first = false
		crc.Reset()
		crc.Write(hdr[4:8])
		if _, err := io.CopyN(crc, br, n); err != nil {
			return 0, 0, err
		}
		var sum [4]byte
		if _, err := io.ReadFull(br, sum[:]); err != nil {
			return 0, 0, err
		}
		if binary.BigEndian.Uint32(sum[:]) != crc.Sum32() {
			return 0, 0, corrupt("png: chunk %q has a bad checksum", typ)
		}
		if typ == "IEND" {
			if err := atEnd(br, "png"); err != nil {
				return 0, 0, err
			}
			cfg, err := png.DecodeConfig(io.NewSectionReader(r, 0, size))
			if err != nil {
				return 0, 0, corrupt("png: %v", err)
			}
			return cfg.Width, cfg.Height, nil
		}
	}
}

// checkGIF walks the blocks up to the trailer.
func checkGIF(r io.ReaderAt, size int64) (int, int, error) {
	br := seq(r, size)
	var lsd [13]byte // header + logical screen descriptor
	if _, err := io.ReadFull(br, lsd[:]); err != nil {
		return 0, 0, err
	}
	// Only the logical screen's size is checked against the limits, so every
	// frame must lie inside it: browsers grow the canvas to fit a larger one.
	screenW := int(binary.LittleEndian.Uint16(lsd[6:8]))
	screenH := int(binary.LittleEndian.Uint16(lsd[8:10]))
	if lsd[10]&0x80 != 0 {
		if _, err := br.Discard(3 << ((lsd[10] & 7) + 1)); err != nil {
			return 0, 0, err
		}
	}
	subBlocks := func() error {
		for {
			n, err := br.ReadByte()
			if err != nil {
				return err
			}
			if n == 0 {
				return nil
			}
			if _, err := br.Discard(int(n)); err != nil {
				return err
			}
		}
	}
	images := 0
	for {
		b, err := br.ReadByte()
		if err != nil {
			return 0, 0, err
		}
		switch b {
		case 0x21: // extension: label, then data sub-blocks
			if _, err := br.ReadByte(); err != nil {
				return 0, 0, err
			}
			if err := subBlocks(); err != nil {
				return 0, 0, err
			}
		case 0x2C: // image descriptor
			var d [9]byte
			if _, err := io.ReadFull(br, d[:]); err != nil {
				return 0, 0, err
			}
			left, top := int(binary.LittleEndian.Uint16(d[0:2])), int(binary.LittleEndian.Uint16(d[2:4]))
			fw, fh := int(binary.LittleEndian.Uint16(d[4:6])), int(binary.LittleEndian.Uint16(d[6:8]))
			if left+fw > screenW || top+fh > screenH {
				return 0, 0, corrupt("gif: frame %dx%d at (%d,%d) lies outside the %dx%d screen", fw, fh, left, top, screenW, screenH)
			}
			if d[8]&0x80 != 0 {
				if _, err := br.Discard(3 << ((d[8] & 7) + 1)); err != nil {
					return 0, 0, err
				}
			}
			if _, err := br.ReadByte(); err != nil { // LZW minimum code size
				return 0, 0, err
			}
			if err := subBlocks(); err != nil {
				return 0, 0, err
			}
			images++
		case 0x3B: // trailer
			if images == 0 {
				return 0, 0, corrupt("gif: no image")
			}
			if err := atEnd(br, "gif"); err != nil {
				return 0, 0, err
			}
			cfg, err := gif.DecodeConfig(io.NewSectionReader(r, 0, size))
			if err != nil {
				return 0, 0, corrupt("gif: %v", err)
			}
			return cfg.Width, cfg.Height, nil
		default:
			return 0, 0, corrupt("gif: unknown block %#x", b)
		}
	}
}

// checkWebP checks the RIFF size against the file and walks its chunks.
func checkWebP(r io.ReaderAt, size int64) (int, int, error) {
	var h [12]byte
	if _, err := r.ReadAt(h[:], 0); err != nil {
		return 0, 0, err
	}
	riff := int64(binary.LittleEndian.Uint32(h[4:8]))
	if riff+8 > size {
		return 0, 0, corrupt("webp: the header says %d bytes, the file has %d", riff+8, size)
	}
	if riff+8 < size {
		return 0, 0, corrupt("webp: bytes after the end marker (the header says %d bytes, the file has %d)", riff+8, size)
	}
	end := riff + 8
	off := int64(12)
	var hasImage bool
	first := true
	for off < end {
		var c [8]byte
		if end-off < 8 {
			return 0, 0, corrupt("webp: chunk header cut short")
		}
		if _, err := r.ReadAt(c[:], off); err != nil {
			return 0, 0, err
		}
		n := int64(binary.LittleEndian.Uint32(c[4:8]))
		typ := string(c[0:4])
		if first && typ != "VP8 " && typ != "VP8L" && typ != "VP8X" {
			return 0, 0, corrupt("webp: the first chunk is %q", typ)
		}
		first = false
		if typ == "VP8 " || typ == "VP8L" || typ == "ANMF" {
			hasImage = true
		}
		off += 8 + n + n&1
		if off > end+1 { // the final pad byte may be missing
			return 0, 0, corrupt("webp: chunk %q runs past the end", typ)
		}
	}
	if !hasImage {
		return 0, 0, corrupt("webp: no image data")
	}
	cfg, err := webp.DecodeConfig(io.NewSectionReader(r, 0, size))
	if err != nil {
		return 0, 0, corrupt("webp: %v", err)
	}
	return cfg.Width, cfg.Height, nil
}

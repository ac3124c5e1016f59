package imaging

import (
	"encoding/binary"
	"fmt"
	"io"
)

// AVIF is an ISO-BMFF (HEIF) file: a list of boxes. We check that the
// boxes tile the file, that every item's data (iloc) lies inside it, and
// read the size from the image spatial extents (ispe) property.

const maxMetaBox = 1 << 20

// maxIlocExtents caps the extents listed by all the items of an iloc box
// together. Offset, length and index fields may be zero bytes wide, so an
// extent can take no room at all and the box size alone does not bound the
// work: 65535 extents per item times tens of thousands of items fits in a
// 1 MiB meta box. Real files have a handful of items with one extent each
// (grids a few hundred).
const maxIlocExtents = 1 << 16

// isAVIF looks for an ftyp box naming the avif or avis brand.
func isAVIF(head []byte) bool {
	if len(head) < 16 || string(head[4:8]) != "ftyp" {
		return false
	}
	n := int(binary.BigEndian.Uint32(head[0:4]))
	if n < 16 || n > len(head) {
		return false
	}
	for off := 8; off+4 <= n; off += 4 {
		if off == 12 { // minor version, not a brand
			continue
		}
		if b := string(head[off : off+4]); b == "avif" || b == "avis" {
			return true
		}
	}
	return false
}

type box struct {
	typ      string
	off, hdr int64 // start of the box and length of its header
	size     int64 // whole box, header included
}

// boxes lists the boxes in r[off:end].
func boxes(r io.ReaderAt, off, end int64) ([]box, error) {
	var out []box
	for off < end {
		if end-off < 8 {
			return nil, corrupt("avif: box header cut short")
		}
		var h [16]byte
		if _, err := r.ReadAt(h[:8], off); err != nil {
			return nil, err
		}
		b := box{typ: string(h[4:8]), off: off, hdr: 8, size: int64(binary.BigEndian.Uint32(h[0:4]))}
		switch b.size {
		case 0: // to the end of the enclosing space
			b.size = end - off
		case 1: // 64-bit size follows
			if _, err := r.ReadAt(h[8:16], off+8); err != nil {
				return nil, err
			}
			b.hdr = 16
			v := binary.BigEndian.Uint64(h[8:16])
			if v > 1<<62 {
				return nil, corrupt("avif: box %q is too large", b.typ)
			}
			b.size = int64(v)
		}
		if b.size < b.hdr || b.size > end-off {
			return nil, corrupt("avif: box %q of %d bytes runs past the end", b.typ, b.size)
		}
		out = append(out, b)
		off += b.size
	}
	return out, nil
}

func checkAVIF(r io.ReaderAt, size int64) (int, int, error) {
	top, err := boxes(r, 0, size)
	if err != nil {
		return 0, 0, err
	}
	var meta *box
	hasMdat := false
	for i := range top {
		switch top[i].typ {
		case "meta":
			meta = &top[i]
		case "mdat":
			hasMdat = true
		}
	}
	if meta == nil || !hasMdat {
		return 0, 0, corrupt("avif: missing meta or mdat box")
	}
	if meta.size > maxMetaBox {
		return 0, 0, corrupt("avif: meta box of %d bytes", meta.size)
	}
	buf := make([]byte, meta.size)
	if _, err := r.ReadAt(buf, meta.off); err != nil {
		return 0, 0, err
	}
	mr := bytesReaderAt(buf)
	// meta is a full box: 4 bytes of version and flags before its children.
	children, err := boxes(mr, meta.hdr+4, meta.size)
	if err != nil {
		return 0, 0, err
	}
	var w, h int
	hasIloc := false
	for _, c := range children {
		body := buf[c.off+c.hdr : c.off+c.size]
		switch c.typ {
		case "iloc":
			hasIloc = true
			if err := checkIloc(body, size); err != nil {
				return 0, 0, err
			}
		case "iprp":
			ipco, err := boxes(mr, c.off+c.hdr, c.off+c.size)
			if err != nil {
				return 0, 0, err
			}
			for _, p := range ipco {
				if p.typ != "ipco" {
					continue
				}
				props, err := boxes(mr, p.off+p.hdr, p.off+p.size)
				if err != nil {
					return 0, 0, err
				}
				for _, q := range props {
					if q.typ != "ispe" || q.size-q.hdr < 12 {
						continue
					}
					b := buf[q.off+q.hdr+4:]
					// Grids have small tiles and one large canvas: keep the largest.
					pw, ph := int(binary.BigEndian.Uint32(b[0:4])), int(binary.BigEndian.Uint32(b[4:8]))
					if pw*ph > w*h {
						w, h = pw, ph
					}
				}
			}
		}
	}
	if !hasIloc {
		return 0, 0, corrupt("avif: no item locations (iloc)")
	}
	return w, h, nil
}

// checkIloc verifies that every file-offset extent lies inside the file.
func checkIloc(b []byte, fileSize int64) error {
	p := 0
	need := func(n int) error {
		if p+n > len(b) {
			return corrupt("avif: iloc box cut short")
		}
		return nil
	}
	uint := func(n int) (uint64, error) {
		if err := need(n); err != nil {
			return 0, err
		}
		var v uint64
		for i := 0; i < n; i++ {
			v = v<<8 | uint64(b[p+i])
		}
		p += n
		return v, nil
	}
	version, err := uint(1)
	if err != nil {
		return err
	}
	p += 3 // flags
	sizes, err := uint(2)
	if err != nil {
		return err
	}
	offSize, lenSize, baseSize, idxSize := int(sizes>>12&15), int(sizes>>8&15), int(sizes>>4&15), int(sizes&15)
	for _, s := range []int{offSize, lenSize, baseSize} {
		if s != 0 && s != 4 && s != 8 {
			return corrupt("avif: iloc field size %d", s)
		}
	}
	if version > 2 {
		return corrupt("avif: iloc version %d", version)
	}
	if version == 0 {
		idxSize = 0 // reserved in version 0
	} else if idxSize != 0 && idxSize != 4 && idxSize != 8 {
		return corrupt("avif: iloc index size %d", idxSize)
	}
	countLen, idLen := 2, 2
	if version == 2 {
		countLen, idLen = 4, 4
	}
	count, err := uint(countLen)
	if err != nil {
		return err
	}
	total := uint64(0) // extents seen so far, across all items
	for i := uint64(0); i < count; i++ {
		if _, err := uint(idLen); err != nil {
			return err
		}
		method := uint64(0)
		if version >= 1 {
			if method, err = uint(2); err != nil {
				return err
			}
			method &= 15
		}
		if _, err := uint(2); err != nil { // data reference index
			return err
		}
		base, err := uint(baseSize)
		if err != nil {
			return err
		}
		extents, err := uint(2)
		if err != nil {
			return err
		}
		if total += extents; total > maxIlocExtents {
			return corrupt("avif: iloc lists more than %d extents", maxIlocExtents)
		}
		for e := uint64(0); e < extents; e++ {
			if _, err := uint(idxSize); err != nil {
				return err
			}
			off, err := uint(offSize)
			if err != nil {
				return err
			}
			n, err := uint(lenSize)
			if err != nil {
				return err
			}
			// Method 0 points into the file; 1 and 2 point into other items.
			if method == 0 && (base > 1<<62 || off > 1<<62 || n > 1<<62 || base+off+n > uint64(fileSize)) {
				return fmt.Errorf("%w: avif: item data at %d+%d lies past the end of the file (%d bytes)", ErrCorrupt, base+off, n, fileSize)
			}
		}
	}
	return nil
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

package media

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"

	"pressroom.dev/services/media/internal/imaging"
)

// A stored file's public name is the lower-case hex SHA-256 of its bytes and
// the extension of its sniffed format, e.g. "9f86…08.png". Nothing else is
// ever turned into a path, so request input cannot reach the filesystem.

const hashLen = sha256.Size * 2

// ErrBadName: the string is not the name of a stored file.
var ErrBadName = errors.New("not a media name: expected <64 lower-case hex digits>.<jpg|png|gif|webp|avif>")

// Name is a validated media file name.
type Name struct {
	Hash   string // 64 lower-case hex digits
	Format imaging.Format
}

func (n Name) String() string { return n.Hash + "." + n.Format.Ext }

// ParseName accepts exactly <hash>.<ext>; anything else (other case,
// separators, dots, NULs, encodings) is ErrBadName.
func ParseName(s string) (Name, error) {
	hash, ext, ok := strings.Cut(s, ".")
	if !ok || len(hash) != hashLen || !isLowerHex(hash) {
		return Name{}, ErrBadName
	}
	f, ok := imaging.FormatByExt(ext)
	if !ok {
		return Name{}, ErrBadName
	}
	return Name{Hash: hash, Format: f}, nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// HashOf is the content hash used in names.
func HashOf(sum []byte) string { return hex.EncodeToString(sum) }

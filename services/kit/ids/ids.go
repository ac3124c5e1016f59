// Package ids checks identifiers that arrive from outside (URL paths, query
// strings, request fields, page tokens) before they reach SQL: Postgres
// refuses a malformed uuid (22P02) or a NUL byte in text (22021) with an
// error, which a service would report as its own failure instead of the
// caller's bad input.
package ids

import (
	"strings"
	"unicode/utf8"
)

// IsUUID accepts only the canonical 8-4-4-4-12 hex form (either case), the
// one every service writes. Other spellings Go's parsers accept ("urn:uuid:…",
// braces, no dashes) are refused, since Postgres does not read all of them.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// IsText reports whether s can be stored in a Postgres text column: valid
// UTF-8 without NUL bytes.
func IsText(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// MediaExtensions are the file name extensions the media service stores
// (its formats test keeps this list equal to what it accepts).
var MediaExtensions = []string{"jpg", "png", "gif", "webp", "avif"}

// IsMediaFilePath reports whether p is the path of a media file exactly as
// the media service names them: "/media/" + 64 lower-case hex digits + "." +
// a known extension. Nothing else (no "..", no query, no other route under
// /media/) passes, so an authored cover or image can only be a media file.
func IsMediaFilePath(p string) bool {
	name, ok := strings.CutPrefix(p, "/media/")
	if !ok {
		return false
	}
	hash, ext, ok := strings.Cut(name, ".")
	if !ok || len(hash) != 64 {
		return false
	}
	for i := 0; i < len(hash); i++ {
		if c := hash[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	for _, e := range MediaExtensions {
		if ext == e {
			return true
		}
	}
	return false
}

package article

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"
)

// MaxSlugLen bounds slugs so URLs stay readable and the unique index small.
const MaxSlugLen = 96

var slugPattern = regexp.MustCompile(`^[a-z0-9]+(?:-[a-z0-9]+)*$`)

// Slugify turns a title into a URL slug: ASCII letters and digits joined by
// single dashes ("Crème Brûlée, 2nd try!" → "creme-brulee-2nd-try").
// It returns "" when the title holds nothing usable.
func Slugify(title string) string {
	// Decompose accents and drop the combining marks so "é" becomes "e".
	folded, _, err := transform.String(transform.Chain(norm.NFKD, runes.Remove(runes.In(unicode.Mn))), title)
	if err != nil {
		folded = title
	}
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(folded) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
		default:
			dash = true
		}
		if b.Len() >= MaxSlugLen {
			break
		}
	}
	s := b.String()
	if len(s) > MaxSlugLen {
		s = s[:MaxSlugLen]
	}
	return strings.Trim(s, "-")
}

// ValidateSlug checks a slug chosen by hand.
func ValidateSlug(s string) error {
	if len(s) > MaxSlugLen {
		return fmt.Errorf("slug is %d characters long; use at most %d", len(s), MaxSlugLen)
	}
	if !slugPattern.MatchString(s) {
		return fmt.Errorf("slug %q is not valid: use lower-case letters, digits and single dashes, e.g. \"my-first-article\"", s)
	}
	return nil
}

// withSuffix makes the n-th alternative of a slug taken by another article.
func withSuffix(base string, n int) string {
	suffix := fmt.Sprintf("-%d", n)
	if len(base)+len(suffix) > MaxSlugLen {
		base = strings.TrimRight(base[:MaxSlugLen-len(suffix)], "-")
	}
	return base + suffix
}

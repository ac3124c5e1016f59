package article

import (
	"crypto/rand"
	"fmt"
	"math/big"
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

// maxSlugNumber is the largest "-N" suffix the free-slug lookup counts
// (freeSlugSQL matches "-[0-9]{1,6}"); numbering never goes past it.
const maxSlugNumber = 999999

// Random suffixes have 7 digits: never counted by the lookup (so they cannot
// push the numbering up), still all digits (so isSuffixOf keeps them), and
// "-" plus 7 digits fits the 8 bytes baseSlug leaves free.
const (
	minRandomSlugNumber = maxSlugNumber + 1
	maxRandomSlugNumber = 9999999
)

// withRandomSuffix is base plus a random 7-digit suffix (crypto/rand), the
// fallback when numbering cannot find a free slug: once an article holds
// base-999999, or when the next number is still taken on a retry.
func withRandomSuffix(base string) (string, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(maxRandomSlugNumber-minRandomSlugNumber+1))
	if err != nil {
		return "", fmt.Errorf("random slug suffix: %w", err)
	}
	return withSuffix(base, minRandomSlugNumber+int(n.Int64())), nil
}

// withSuffix makes the n-th alternative of a slug taken by another article.
func withSuffix(base string, n int) string {
	suffix := fmt.Sprintf("-%d", n)
	if len(base)+len(suffix) > MaxSlugLen {
		base = strings.TrimRight(base[:MaxSlugLen-len(suffix)], "-")
	}
	return base + suffix
}

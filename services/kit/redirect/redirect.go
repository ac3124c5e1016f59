// Package redirect keeps redirect targets that come from a request (a
// sign-in's return_to) on this site.
package redirect

import (
	"net/url"
	"strings"
)

// LocalPath returns p when a browser following "Location: p" stays on this
// site, else "/". Browsers read a Location by the WHATWG URL rules, which drop
// tabs and newlines anywhere, strip leading controls and spaces, and read "\"
// as "/": "/\t/evil.example" and "/\evil.example" both mean
// //evil.example, another host. So any control character or backslash is
// refused, and what is left must be a path (no scheme, host or user) that
// starts with exactly one "/".
func LocalPath(p string) string {
	if p == "" || p[0] != '/' || strings.HasPrefix(p, "//") || strings.ContainsFunc(p, unsafeInLocation) {
		return "/"
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	return p
}

func unsafeInLocation(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }

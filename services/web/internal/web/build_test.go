package web

import (
	"net/http"
	"testing"
)

// The build's name is on every response and in every page's footer, so an
// operator sees which build answers; without one, neither appears.
func TestBuildMarker(t *testing.T) {
	h := newHarness(t)
	h.published("Tides of March", "tides-of-march", "Body")
	resp, body := h.do(req{path: "/"})
	if got := resp.Header.Get("X-Pressroom-Build"); got != "" {
		t.Fatalf("no build set, but X-Pressroom-Build = %q", got)
	}
	mustNotContain(t, body, `id="build"`)

	h.app.opt.Site.Build = "b-2026.12"
	h.app.Invalidate() // pages cached before hold the old footer
	for _, path := range []string{"/", "/articles/tides-of-march", "/no-such-page"} {
		resp, body := h.do(req{path: path})
		if got := resp.Header.Get("X-Pressroom-Build"); got != "b-2026.12" {
			t.Fatalf("GET %s: X-Pressroom-Build = %q, want b-2026.12", path, got)
		}
		if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNotFound {
			mustContain(t, body, `<span class="build" id="build">build b-2026.12</span>`)
		}
	}
}

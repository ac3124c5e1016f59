package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"pressroom.dev/kit/config"
	"pressroom.dev/kit/server"
	"pressroom.dev/kit/testkit"
	"pressroom.dev/kit/token"
)

// walkEnv is the service as main builds it (router, NoRoute, probes,
// metrics) on real Postgres, logging into logs.
type walkEnv struct {
	t      *testing.T
	addr   string
	srv    *server.Server
	signer *token.Signer
	logs   *testkit.LogBuffer
}

func newWalkEnv(t *testing.T) *walkEnv {
	t.Helper()
	keys := testkit.JWTKeys(t)
	cfg := Config{Common: config.Common{Service: "media", HTTPAddr: "127.0.0.1:0"}}
	if err := config.LoadFrom(&cfg, map[string]string{
		"DATABASE_URL": testkit.Postgres(t), "MEDIA_DIR": t.TempDir(), "JWT_PUBLIC_KEY_PATH": keys.PublicPath,
		"PUBLIC_URL": "https://example.com", "SHUTDOWN_TIMEOUT": "5s", "MEDIA_MAX_BYTES": "1048576",
	}); err != nil {
		t.Fatal(err)
	}
	logs := &testkit.LogBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, err := setup(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("shutdown: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("server did not stop")
		}
	})
	return &walkEnv{t: t, addr: ln.Addr().String(), srv: srv, logs: logs,
		signer: token.NewSigner(keys.Private, cfg.JWTIssuer, []string{cfg.JWTAudience}, time.Hour)}
}

func (e *walkEnv) tok(user string, roles ...string) string {
	e.t.Helper()
	s, err := e.signer.Sign(user, "", user, roles)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// send writes the request as given (path bytes untouched, no client-side
// cleaning of "..") and reads one response.
func (e *walkEnv) send(method, target string, hdr map[string]string, body []byte) (int, []byte) {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\nContent-Length: %d\r\n", method, target, len(body))
	for k, v := range hdr {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	b.Write(body)
	if _, err := c.Write(b.Bytes()); err != nil {
		e.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, trim(target), err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// pngOf is a distinct 1×1 PNG per seed: an upload of the same bytes by the
// same user returns the stored row and would never reach the INSERT.
func pngOf(t *testing.T, seed int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, 1, 1))
	img.Set(0, 0, color.NRGBA{uint8(seed), uint8(seed >> 8), uint8(seed >> 16), 255})
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// hostileValues are URL-escaped values for any route parameter, query
// parameter or request field: NUL bytes, invalid UTF-8, overlong strings,
// "..", ids and names in spellings Postgres or the file tree must not see,
// and made-up page tokens. hash and id are those of a stored item, so a
// near miss of a real row is tried too.
func hostileValues(hash, id string) []string {
	tok := func(v string) string { return base64.RawURLEncoding.EncodeToString([]byte(v)) }
	return []string{
		"%00", "a%00b", "%FF", "%C0%AF", "%ED%A0%80", "%0D%0AX-Injected:%201",
		"..", "%2E%2E", "..%2F..%2Fetc%2Fpasswd", "%2E%2E%2F.tmp", ".tmp", "..;",
		strings.Repeat("x", 5000), strings.Repeat("%FF", 2000), strings.Repeat("9", 400),
		"not-a-uuid", "urn:uuid:" + id, "%7B" + id + "%7D", strings.ReplaceAll(id, "-", ""),
		id[:35] + "%00", id + "%00", "00000000-0000-0000-0000-000000000000", id + "x",
		hash + ".png%00", strings.ToUpper(hash) + ".png", hash + ".PNG", hash + ".png.png", hash + ".svg",
		hash + "%2Fpng", hash + ".", hash[:63] + "%00.png", hash + ".png%2F..", "%2E" + hash + ".png",
		tok("9223372036854775807," + id), tok("-9223372036854775808," + id), tok("-300000000000000000," + id), tok("-1," + id), tok("1,not-a-uuid"), tok("1," + id + "\x00"),
		tok("1,urn:uuid:" + id), tok("x," + id), tok("1e5," + id), tok("+1," + id), tok(" 1," + id),
		tok("1," + strings.ToUpper(id)), tok("1"), tok(""), tok("\x00"), "%21%21%21", "-1", "0", "1e9",
	}
}

// queryParams are the query parameters the routes read, plus an unknown one.
var queryParams = []string{"page_size", "page_token", "x"}

// TestEveryRouteRefusesHostileInputAsTheCallersFault walks every route of
// the router main builds (from gin's Routes(), so a new route is walked
// too) as an admin, as the item's author, as a reader and anonymously: each
// hostile value in each route parameter, each query parameter, and each
// field of a body (multipart field name, file name, part type; JSON and
// form bodies). Bad input is the caller's fault: a 4xx, never a 5xx and
// never an ERROR log line. Afterwards every metric series still has labels
// from a closed set.
func TestEveryRouteRefusesHostileInputAsTheCallersFault(t *testing.T) {
	e := newWalkEnv(t)
	const authorID = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
	author := e.tok(authorID, "author")
	callers := []struct {
		name string
		hdr  map[string]string
	}{
		{"anonymous", nil},
		{"admin", map[string]string{"Authorization": "Bearer " + e.tok("0b5c0c3e-3f4a-4c1e-9d8f-2a6b7c8d9e0f", "admin")}},
		{"author", map[string]string{"Authorization": "Bearer " + author}},
		{"reader", map[string]string{"Authorization": "Bearer " + e.tok("1c6d1d4f-4a5b-4d2f-8e9a-3b7c8d9e0f1a", "reader")}},
		// A cookie-authenticated write from this site passes the CSRF check.
		{"author by cookie", map[string]string{"Cookie": "pressroom_at=" + author, "Origin": "https://example.com"}},
	}
	seed := 1
	// upload posts one multipart part with the given disposition and type.
	upload := func(method, path string, hdr map[string]string, disposition, partType string, body []byte) (int, []byte) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		ph := textproto.MIMEHeader{}
		ph.Set("Content-Disposition", disposition)
		ph.Set("Content-Type", partType)
		w, err := mw.CreatePart(ph)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(body)
		mw.Close()
		h := map[string]string{"Content-Type": mw.FormDataContentType()}
		for k, v := range hdr {
			h[k] = v
		}
		return e.send(method, path, h, buf.Bytes())
	}

	code, body := upload(http.MethodPost, "/media/upload", callers[2].hdr, `form-data; name="file"; filename="target.png"`, "image/png", pngOf(t, 0))
	var item struct{ ID, Name string }
	if code != http.StatusCreated || json.Unmarshal(body, &item) != nil || item.ID == "" {
		t.Fatalf("setup upload: %d %s", code, body)
	}
	hash, _, _ := strings.Cut(item.Name, ".")
	hostile := hostileValues(hash, item.ID)

	walked := 0
	check := func(caller, method, target, what string, code int, body []byte) {
		t.Helper()
		walked++
		if code >= 500 {
			t.Errorf("%s %s (%s) as %s: %d %s", method, trim(target), what, caller, code, trim(string(body)))
		}
	}
	routes := e.srv.Engine().Routes()
	for _, r := range routes {
		// A real value in every parameter but the one under test takes the
		// request past the other checks.
		segs := strings.Split(r.Path, "/")
		real := strings.NewReplacer(":id", item.ID, ":name", item.Name).Replace(r.Path)
		for i, seg := range segs {
			if !strings.HasPrefix(seg, ":") && !strings.HasPrefix(seg, "*") {
				continue
			}
			for _, v := range hostile {
				with := append([]string(nil), segs...)
				with[i] = v
				target := strings.NewReplacer(":id", item.ID, ":name", item.Name).Replace(strings.Join(with, "/"))
				for _, c := range callers {
					code, body := e.send(r.Method, target, c.hdr, nil)
					check(c.name, r.Method, target, "route parameter "+seg, code, body)
					// Signed in, a bad identifier is refused, not served or deleted.
					if c.hdr != nil && code != http.StatusBadRequest && code != http.StatusNotFound && code != http.StatusForbidden {
						t.Errorf("%s %s as %s: %d, want 400, 403 or 404", r.Method, trim(target), c.name, code)
					}
				}
			}
		}
		// Invented methods must not become metric series (checked below).
		for _, m := range []string{"BREW", "get", "X-" + strings.Repeat("Y", 300)} {
			code, body := e.send(m, real, callers[1].hdr, nil)
			check("admin", m, real, "method", code, body)
		}
		for _, q := range queryParams {
			for _, v := range hostile {
				target := real + "?" + q + "=" + v
				// Anonymous for the public routes, the author for the rest (an
				// admin's listing differs only in its owner filter).
				for _, c := range []int{0, 2} {
					c := callers[c]
					code, body := e.send(r.Method, target, c.hdr, nil)
					check(c.name, r.Method, target, "query "+q, code, body)
				}
			}
		}
		if r.Method != http.MethodPost && r.Method != http.MethodPut && r.Method != http.MethodPatch {
			continue
		}
		for _, v := range hostile {
			raw, err := url.PathUnescape(v)
			if err != nil {
				t.Fatal(err)
			}
			// Quoted-string values cannot hold CR, LF or a quote.
			raw = strings.NewReplacer("\r", "", "\n", "", `"`, "").Replace(raw)
			for _, c := range []int{1, 2, 4} { // admin, author, author by cookie
				hdr := callers[c].hdr
				// Each with new image bytes: a repeat would return the stored
				// row without inserting the hostile field.
				for what, part := range map[string][2]string{
					"file name":         {`form-data; name="file"; filename="` + raw + `"`, "image/png"},
					"encoded file name": {`form-data; name="file"; filename*=UTF-8''` + v, "image/png"},
					"field name":        {`form-data; name="` + raw + `"; filename="a.png"`, "image/png"},
					"part type":         {`form-data; name="file"; filename="a.png"`, raw},
				} {
					seed++
					code, body := upload(r.Method, real, hdr, part[0], part[1], pngOf(t, seed))
					check(callers[c].name, r.Method, real, fmt.Sprintf("%s %q", what, trim(raw)), code, body)
				}
				for ct, b := range map[string]string{
					"application/json":                   `{"file":"` + v + `","id":"` + v + `","name":"` + v + `"}`,
					"application/x-www-form-urlencoded":  "file=" + v + "&id=" + v,
					"multipart/form-data; boundary=" + v: "--" + v + "\r\n\r\n" + v,
				} {
					h := map[string]string{"Content-Type": ct}
					for k, x := range hdr {
						h[k] = x
					}
					code, body := e.send(r.Method, real, h, []byte(b))
					check(callers[c].name, r.Method, real, "body as "+trim(ct), code, body)
				}
			}
		}
	}
	t.Logf("walked %d requests over %d routes", walked, len(routes))
	if walked < 2000 {
		t.Fatalf("walked only %d requests over %d routes: the walk missed the routes", walked, len(routes))
	}
	if logs := e.logs.String(); strings.Contains(logs, "level=ERROR") {
		t.Errorf("hostile input was logged as an error:\n%s", logs)
	}
	checkClosedLabels(t, e.srv)
}

// checkClosedLabels: no label value of any series came from the requests.
func checkClosedLabels(t *testing.T, srv *server.Server) {
	t.Helper()
	families, err := srv.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	okRoute := map[string]bool{"unmatched": true}
	for _, r := range srv.Engine().Routes() {
		okRoute[r.Path] = true
	}
	okMethod := map[string]bool{"other": true}
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"} {
		okMethod[m] = true
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if !closedLabel(l, okRoute, okMethod) {
					t.Errorf("%s has label %s=%q, not from a closed set", f.GetName(), l.GetName(), trim(l.GetValue()))
				}
			}
		}
	}
}

func closedLabel(l *dto.LabelPair, okRoute, okMethod map[string]bool) bool {
	v := l.GetValue()
	switch l.GetName() {
	case "method":
		return okMethod[v]
	case "route":
		return okRoute[v]
	case "code":
		return http.StatusText(atoi(v)) != "" || len(v) == 3 && v[1:] == "xx" && v[0] >= '1' && v[0] <= '5'
	case "cause": // promhttp's own errors
		return v == "encoding" || v == "gathering"
	case "version": // go_info: the toolchain's
		return strings.HasPrefix(v, "go")
	}
	return false
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func trim(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

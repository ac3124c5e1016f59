package media

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"pressroom.dev/kit/ids"
)

func TestUploadAuthorization(t *testing.T) {
	e := newEnv(t, 1<<20)
	img := pngBytes(t, 8, 8, 1)

	if r := e.upload("", "a.png", img); r.status != http.StatusUnauthorized || !strings.Contains(r.errMsg(t), "sign in") {
		t.Fatalf("anonymous: %d %s", r.status, r.body)
	}
	if r := e.upload("not-a-jwt", "a.png", img); r.status != http.StatusUnauthorized {
		t.Fatalf("garbage token: %d %s", r.status, r.body)
	}
	if r := e.upload(e.tok("rita", "reader"), "a.png", img); r.status != http.StatusForbidden {
		t.Fatalf("reader: %d %s", r.status, r.body)
	}
	// A token signed by another key is refused.
	other := newEnv(t, 1<<20)
	if r := e.upload(other.tok("mallory", "admin"), "a.png", img); r.status != http.StatusUnauthorized {
		t.Fatalf("foreign key: %d %s", r.status, r.body)
	}
	if e.rowCount() != 0 || len(e.diskFiles()) != 0 {
		t.Fatalf("rejected uploads left %d rows, files %v", e.rowCount(), e.diskFiles())
	}
	it := e.mustUpload(e.tok("alice", "author"), "a.png", img)
	if it.UploaderID != "alice" || it.ContentType != "image/png" || it.Width != 8 || it.Height != 8 ||
		it.Size != int64(len(img)) || it.URL != "/media/"+it.Name || !ids.IsUUID(it.ID) || it.CreatedAt.IsZero() {
		t.Fatalf("item %+v", it)
	}
	e.mustUpload(e.tok("root", "admin"), "b.png", pngBytes(t, 8, 8, 2))
}

func TestCookieUploadNeedsSameOrigin(t *testing.T) {
	e := newEnv(t, 1<<20)
	tok := e.tok("alice", "author")
	send := func(seed uint64, hdr ...string) result {
		req := e.uploadReq("", "a.png", "image/png", pngBytes(t, 4, 4, seed))
		req.AddCookie(&http.Cookie{Name: AccessCookie, Value: tok})
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		return e.do(req)
	}
	if r := send(1); r.status != http.StatusForbidden || !strings.Contains(r.errMsg(t), testOrigin) {
		t.Fatalf("cookie without Origin: %d %s", r.status, r.body)
	}
	if r := send(2, "Origin", "https://evil.example.net"); r.status != http.StatusForbidden {
		t.Fatalf("cookie from another origin: %d %s", r.status, r.body)
	}
	if r := send(3, "Origin", "https://example.com.evil.example.net"); r.status != http.StatusForbidden {
		t.Fatalf("cookie from a look-alike origin: %d %s", r.status, r.body)
	}
	if r := send(4, "Referer", "https://evil.example.net/admin"); r.status != http.StatusForbidden {
		t.Fatalf("cookie with a foreign Referer: %d %s", r.status, r.body)
	}
	if r := send(5, "Origin", testOrigin); r.status != http.StatusCreated {
		t.Fatalf("cookie from our origin: %d %s", r.status, r.body)
	}
	if r := send(6, "Referer", testOrigin+"/admin/media"); r.status != http.StatusCreated {
		t.Fatalf("cookie with our Referer: %d %s", r.status, r.body)
	}
	// Reading with the cookie needs no Origin.
	req, _ := http.NewRequest(http.MethodGet, e.base+"/media/api/items", nil)
	req.AddCookie(&http.Cookie{Name: AccessCookie, Value: tok})
	if r := e.do(req); r.status != http.StatusOK {
		t.Fatalf("cookie list: %d %s", r.status, r.body)
	}
	// Bearer requests (the web BFF) need no Origin.
	if r := e.upload(tok, "a.png", pngBytes(t, 4, 4, 7)); r.status != http.StatusCreated {
		t.Fatalf("bearer without Origin: %d %s", r.status, r.body)
	}
}

func TestDeleteOnlyOwnUnlessAdmin(t *testing.T) {
	e := newEnv(t, 1<<20)
	alice, bob := e.tok("alice", "author"), e.tok("bob", "author")
	a := e.mustUpload(alice, "a.png", pngBytes(t, 5, 5, 1))
	b := e.mustUpload(bob, "b.png", pngBytes(t, 5, 5, 2))

	if r := e.authed(http.MethodDelete, "/media/api/items/"+a.ID, bob); r.status != http.StatusForbidden {
		t.Fatalf("bob deletes alice's: %d %s", r.status, r.body)
	}
	if r := e.authed(http.MethodDelete, "/media/api/items/"+a.ID, e.tok("rita", "reader")); r.status != http.StatusForbidden {
		t.Fatalf("reader deletes: %d %s", r.status, r.body)
	}
	req, _ := http.NewRequest(http.MethodDelete, e.base+"/media/api/items/"+a.ID, nil)
	if r := e.do(req); r.status != http.StatusUnauthorized {
		t.Fatalf("anonymous delete: %d %s", r.status, r.body)
	}
	if r := e.get(a.URL); r.status != http.StatusOK {
		t.Fatalf("alice's file after refused deletes: %d", r.status)
	}
	if r := e.authed(http.MethodDelete, "/media/api/items/"+a.ID, alice); r.status != http.StatusNoContent {
		t.Fatalf("alice deletes hers: %d %s", r.status, r.body)
	}
	if r := e.authed(http.MethodDelete, "/media/api/items/"+a.ID, alice); r.status != http.StatusNotFound {
		t.Fatalf("second delete: %d %s", r.status, r.body)
	}
	if r := e.get(a.URL); r.status != http.StatusNotFound {
		t.Fatalf("deleted file still served: %d", r.status)
	}
	if r := e.authed(http.MethodDelete, "/media/api/items/"+b.ID, e.tok("root", "admin")); r.status != http.StatusNoContent {
		t.Fatalf("admin deletes bob's: %d %s", r.status, r.body)
	}
	if e.rowCount() != 0 {
		t.Fatalf("%d rows left", e.rowCount())
	}
	for _, f := range e.diskFiles() {
		if !strings.Contains(f, ".tmp") {
			t.Fatalf("file left after deleting every record: %s", f)
		}
	}
	// A cookie-authenticated delete from another site is refused.
	c := e.mustUpload(alice, "c.png", pngBytes(t, 5, 5, 3))
	req, _ = http.NewRequest(http.MethodDelete, e.base+"/media/api/items/"+c.ID, nil)
	req.AddCookie(&http.Cookie{Name: AccessCookie, Value: alice})
	req.Header.Set("Origin", "https://evil.example.net")
	if r := e.do(req); r.status != http.StatusForbidden {
		t.Fatalf("cross-site cookie delete: %d %s", r.status, r.body)
	}
}

func TestListShowsOwnToAuthorsAndAllToAdmins(t *testing.T) {
	e := newEnv(t, 1<<20)
	alice, bob, admin := e.tok("alice", "author"), e.tok("bob", "author"), e.tok("root", "admin")
	want := map[string]bool{}
	for i := range 3 {
		want[e.mustUpload(alice, "a.png", pngBytes(t, 3, 3, uint64(10+i))).ID] = true
	}
	for i := range 2 {
		want[e.mustUpload(bob, "b.png", pngBytes(t, 3, 3, uint64(20+i))).ID] = true
	}
	list := func(tok, query string) listJSON {
		t.Helper()
		r := e.authed(http.MethodGet, "/media/api/items"+query, tok)
		if r.status != http.StatusOK {
			t.Fatalf("list %s: %d %s", query, r.status, r.body)
		}
		var l listJSON
		r.json(t, &l)
		return l
	}
	if l := list(alice, ""); len(l.Items) != 3 || l.NextPageToken != "" {
		t.Fatalf("alice sees %d items (token %q)", len(l.Items), l.NextPageToken)
	} else {
		for _, it := range l.Items {
			if it.UploaderID != "alice" {
				t.Fatalf("alice sees %+v", it)
			}
		}
	}
	// Admin pages through everything, newest first, without repeats.
	seen := map[string]bool{}
	tokn := ""
	pages := 0
	for {
		q := "?page_size=2"
		if tokn != "" {
			q += "&page_token=" + url.QueryEscape(tokn)
		}
		l := list(admin, q)
		pages++
		for i, it := range l.Items {
			if seen[it.ID] {
				t.Fatalf("item %s listed twice", it.ID)
			}
			seen[it.ID] = true
			if i > 0 && it.CreatedAt.After(l.Items[i-1].CreatedAt) {
				t.Fatal("not newest first")
			}
		}
		if tokn = l.NextPageToken; tokn == "" {
			break
		}
	}
	if pages != 3 || len(seen) != 5 {
		t.Fatalf("admin: %d pages, %d items", pages, len(seen))
	}
	for id := range want {
		if !seen[id] {
			t.Fatalf("admin never saw %s", id)
		}
	}
	for _, q := range []string{"?page_size=0", "?page_size=abc", "?page_size=100000", "?page_token=..%2F..%2Fetc", "?page_token=%00"} {
		if r := e.authed(http.MethodGet, "/media/api/items"+q, admin); r.status != http.StatusBadRequest {
			t.Fatalf("list %s: %d %s", q, r.status, r.body)
		}
	}
	if r := e.authed(http.MethodGet, "/media/api/items", e.tok("rita", "reader")); r.status != http.StatusForbidden {
		t.Fatalf("reader lists: %d", r.status)
	}
	if r := e.get("/media/api/items"); r.status != http.StatusUnauthorized {
		t.Fatalf("anonymous lists: %d", r.status)
	}
}

func TestUploadValidation(t *testing.T) {
	e := newEnv(t, 1<<20)
	tok := e.tok("alice", "author")

	// The content decides the type, not the name or the declared type.
	img := pngBytes(t, 6, 4, 1)
	r := e.do(e.uploadReq(tok, "setup.exe", "application/x-msdownload", img))
	if r.status != http.StatusCreated {
		t.Fatalf("png named .exe: %d %s", r.status, r.body)
	}
	var it itemJSON
	r.json(t, &it)
	if !strings.HasSuffix(it.Name, ".png") || it.ContentType != "image/png" || it.Filename != "setup.exe" {
		t.Fatalf("png named .exe stored as %+v", it)
	}

	cases := []struct {
		name, filename string
		data           []byte
		status         int
		msg            string
	}{
		{"html named png", "cat.png", []byte("<!doctype html><html><script>alert(document.cookie)</script></html>"), 415, "unsupported file type"},
		{"svg with script", "logo.svg", []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`), 415, "only JPEG, PNG, GIF, WebP and AVIF"},
		{"svg named png", "logo.png", []byte(`<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>`), 415, "unsupported"},
		{"truncated jpeg", "photo.jpg", jpegBytes(t, 64, 64)[:400], 400, "truncated or corrupt"},
		{"zero bytes", "empty.png", nil, 400, "empty"},
		{"png with trailing garbage header only", "x.png", img[:40], 400, "truncated or corrupt"},
	}
	for _, c := range cases {
		r := e.do(e.uploadReq(tok, c.filename, "image/png", c.data))
		if r.status != c.status || !strings.Contains(r.errMsg(t), c.msg) {
			t.Errorf("%s: %d %s, want %d with %q", c.name, r.status, r.body, c.status, c.msg)
		}
	}

	// Not multipart at all, and multipart without the file field.
	req, _ := http.NewRequest(http.MethodPost, e.base+"/media/upload", bytes.NewReader(img))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "image/png")
	if r := e.do(req); r.status != http.StatusBadRequest || !strings.Contains(r.errMsg(t), `"file"`) {
		t.Errorf("raw body: %d %s", r.status, r.body)
	}
	body, ct := multipartBody(t, "picture", "a.png", "image/png", img)
	req, _ = http.NewRequest(http.MethodPost, e.base+"/media/upload", body)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", ct)
	if r := e.do(req); r.status != http.StatusBadRequest || !strings.Contains(r.errMsg(t), `"file"`) {
		t.Errorf("wrong field: %d %s", r.status, r.body)
	}

	req, _ = http.NewRequest(http.MethodPost, e.base+"/media/upload", strings.NewReader("--x\r\nthis is no header\r\n\r\ndata\r\n--x--\r\n"))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "multipart/form-data; boundary=x")
	if r := e.do(req); r.status != http.StatusBadRequest || !strings.Contains(r.errMsg(t), "malformed") {
		t.Errorf("broken multipart: %d %s", r.status, r.body)
	}
	// A body that stops inside the file, before its closing boundary.
	req, _ = http.NewRequest(http.MethodPost, e.base+"/media/upload", strings.NewReader("--x\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n"+string(img[:len(img)-10])))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "multipart/form-data; boundary=x")
	if r := e.do(req); r.status != http.StatusBadRequest || !strings.Contains(r.errMsg(t), "interrupted") && !strings.Contains(r.errMsg(t), "truncated") {
		t.Errorf("unterminated part: %d %s", r.status, r.body)
	}

	if e.rowCount() != 1 {
		t.Fatalf("%d rows, want only the png", e.rowCount())
	}
	if files := e.diskFiles(); len(files) != 1 {
		t.Fatalf("files on disk: %v", files)
	}
}

func TestUploadSizeLimitIsExact(t *testing.T) {
	img := pngBytes(t, 10, 10, 1)
	e := newEnv(t, int64(len(img)))
	tok := e.tok("alice", "author")
	e.mustUpload(tok, "exact.png", img)
	// One more byte (after IEND, still a valid PNG) is one too many.
	r := e.upload(tok, "big.png", append(bytes.Clone(img), 0))
	if r.status != http.StatusRequestEntityTooLarge || !strings.Contains(r.errMsg(t), "MEDIA_MAX_BYTES") {
		t.Fatalf("max+1: %d %s", r.status, r.body)
	}
	if e.rowCount() != 1 || len(e.diskFiles()) != 1 {
		t.Fatalf("rows %d, files %v", e.rowCount(), e.diskFiles())
	}
}

func TestDedupSharesOneFile(t *testing.T) {
	e := newEnv(t, 1<<20)
	alice, bob := e.tok("alice", "author"), e.tok("bob", "author")
	img := pngBytes(t, 7, 7, 42)
	a1 := e.mustUpload(alice, "one.png", img)
	a2 := e.mustUpload(alice, "two.png", img)
	if a1.ID != a2.ID {
		t.Fatalf("same uploader, same bytes: two records %s %s", a1.ID, a2.ID)
	}
	b := e.mustUpload(bob, "three.png", img)
	if b.ID == a1.ID || b.Name != a1.Name {
		t.Fatalf("bob's record %+v vs alice's %+v", b, a1)
	}
	if files := e.diskFiles(); len(files) != 1 || e.rowCount() != 2 {
		t.Fatalf("files %v, rows %d; want one file, two records", files, e.rowCount())
	}
	if r := e.authed(http.MethodDelete, "/media/api/items/"+a1.ID, alice); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d", r.status)
	}
	if r := e.get(b.URL); r.status != http.StatusOK || !bytes.Equal(r.body, img) {
		t.Fatalf("bob's copy after alice deleted hers: %d", r.status)
	}
	if r := e.authed(http.MethodDelete, "/media/api/items/"+b.ID, bob); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d", r.status)
	}
	if r := e.get(b.URL); r.status != http.StatusNotFound {
		t.Fatalf("served after the last record went: %d", r.status)
	}
	if files := e.diskFiles(); len(files) != 0 {
		t.Fatalf("files left: %v", files)
	}
}

// Concurrent uploads and deletes of the same bytes never leave a record
// without its file or a file without a record.
func TestConcurrentUploadAndDeleteStayConsistent(t *testing.T) {
	e := newEnv(t, 1<<20)
	img := pngBytes(t, 9, 9, 5)
	var wg sync.WaitGroup
	for u := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := e.tok(fmt.Sprintf("user%d", u), "author")
			for range 15 {
				r := e.upload(tok, "x.png", img)
				var it itemJSON
				if r.status != http.StatusCreated {
					t.Errorf("upload: %d %s", r.status, r.body)
					return
				}
				r.json(t, &it)
				// While our record exists, its file must be served.
				if r := e.get(it.URL); r.status != http.StatusOK {
					t.Errorf("record %s exists but its file is gone: %d", it.ID, r.status)
				}
				if r := e.authed(http.MethodDelete, "/media/api/items/"+it.ID, tok); r.status != http.StatusNoContent {
					t.Errorf("delete: %d %s", r.status, r.body)
				}
			}
			if r := e.upload(tok, "x.png", img); r.status != http.StatusCreated {
				t.Errorf("final upload: %d %s", r.status, r.body)
			}
		}()
	}
	wg.Wait()
	if e.rowCount() != 6 {
		t.Fatalf("%d rows, want 6", e.rowCount())
	}
	if r := e.get("/media/" + mustName(t, img)); r.status != http.StatusOK || !bytes.Equal(r.body, img) {
		t.Fatalf("file missing while 6 records reference it: %d", r.status)
	}
}

func mustName(t testing.TB, png []byte) string {
	t.Helper()
	h := sha256Hex(png)
	return h + ".png"
}

func TestServingHeadersETagAndRange(t *testing.T) {
	e := newEnv(t, 1<<20)
	img := pngBytes(t, 20, 20, 9)
	it := e.mustUpload(e.tok("alice", "author"), "a.png", img)

	r := e.get(it.URL)
	if r.status != http.StatusOK || !bytes.Equal(r.body, img) {
		t.Fatalf("GET: %d, %d bytes", r.status, len(r.body))
	}
	etag := `"` + strings.TrimSuffix(it.Name, ".png") + `"`
	for k, v := range map[string]string{
		"Content-Type":            "image/png",
		"ETag":                    etag,
		"Cache-Control":           "public, max-age=31536000, immutable",
		"X-Content-Type-Options":  "nosniff",
		"Content-Security-Policy": ServeCSP,
		"Accept-Ranges":           "bytes",
		"Content-Length":          fmt.Sprint(len(img)),
	} {
		if got := r.header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if !strings.Contains(ServeCSP, "default-src 'none'") || !strings.Contains(ServeCSP, "sandbox") {
		t.Errorf("CSP not restrictive: %s", ServeCSP)
	}

	if r := e.get(it.URL, "If-None-Match", etag); r.status != http.StatusNotModified || len(r.body) != 0 {
		t.Fatalf("If-None-Match: %d, %d bytes", r.status, len(r.body))
	}
	if r := e.get(it.URL, "If-None-Match", `"other", `+etag); r.status != http.StatusNotModified {
		t.Fatalf("If-None-Match list: %d", r.status)
	}
	if r := e.get(it.URL, "If-None-Match", `"other"`); r.status != http.StatusOK {
		t.Fatalf("other ETag: %d", r.status)
	}
	r = e.get(it.URL, "Range", "bytes=100-199")
	if r.status != http.StatusPartialContent || !bytes.Equal(r.body, img[100:200]) ||
		r.header.Get("Content-Range") != fmt.Sprintf("bytes 100-199/%d", len(img)) {
		t.Fatalf("Range: %d %q, %d bytes", r.status, r.header.Get("Content-Range"), len(r.body))
	}
	r = e.get(it.URL, "Range", "bytes=-10")
	if r.status != http.StatusPartialContent || !bytes.Equal(r.body, img[len(img)-10:]) {
		t.Fatalf("suffix Range: %d", r.status)
	}
	if r := e.get(it.URL, "Range", "bytes=100-199", "If-Range", `"stale"`); r.status != http.StatusOK || len(r.body) != len(img) {
		t.Fatalf("If-Range with a stale ETag must send everything: %d", r.status)
	}
	if r := e.get(it.URL, "Range", fmt.Sprintf("bytes=%d-", len(img)+5)); r.status != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("unsatisfiable Range: %d", r.status)
	}
	req, _ := http.NewRequest(http.MethodHead, e.base+it.URL, nil)
	if r := e.do(req); r.status != http.StatusOK || len(r.body) != 0 || r.header.Get("ETag") != etag {
		t.Fatalf("HEAD: %d", r.status)
	}

	// Unknown names: a well-formed one, the right hash with another type, junk.
	zero := strings.Repeat("0", 64)
	for _, p := range []string{"/media/" + zero + ".png", "/media/" + strings.TrimSuffix(it.Name, ".png") + ".gif",
		"/media/" + strings.ToUpper(it.Name[:64]) + ".png", "/media/nothing", "/media/" + it.Name + ".png"} {
		if r := e.get(p); r.status != http.StatusNotFound || r.header.Get("ETag") != "" {
			t.Errorf("GET %s: %d", p, r.status)
		}
	}

	// A file on disk with no record is not served.
	stray := pngBytes(t, 3, 3, 77)
	n, _ := ParseName(sha256Hex(stray) + ".png")
	os.MkdirAll(filepath.Dir(e.files.Path(n)), 0o750)
	if err := os.WriteFile(e.files.Path(n), stray, 0o640); err != nil {
		t.Fatal(err)
	}
	if r := e.get("/media/" + n.String()); r.status != http.StatusNotFound {
		t.Fatalf("file without a record: %d", r.status)
	}
}

func TestPathTraversalNeverReachesTheFilesystem(t *testing.T) {
	e := newEnv(t, 1<<20)
	tok := e.tok("root", "admin")
	it := e.mustUpload(tok, "a.png", pngBytes(t, 4, 4, 1))
	// A secret beside MEDIA_DIR, and one inside it under a non-media name.
	secret := "TOP-SECRET-" + strings.Repeat("x", 20)
	parent := filepath.Dir(e.files.Root())
	os.WriteFile(filepath.Join(parent, "secret.png"), []byte(secret), 0o640)
	os.WriteFile(filepath.Join(e.files.Root(), "secret.png"), []byte(secret), 0o640)

	attempts := []string{
		"/media/..%2fsecret.png",
		"/media/..%2F..%2Fsecret.png",
		"/media/%2e%2e%2fsecret.png",
		"/media/../secret.png",
		"/media/./secret.png",
		"/media/secret.png",
		"/media/..%5csecret.png",
		"/media/%2fetc%2fpasswd",
		"/media//etc/passwd",
		"/media/" + it.Name + "%00.png",
		"/media/" + it.Name[:64] + "%00.png",
		"/media/" + it.Name + "%2f..%2f..%2fsecret.png",
		"/media/" + it.Name[:2] + "%2f" + it.Name,
		"/media/.tmp%2fupload-1",
		"/media/%252e%252e%252fsecret.png",
		"/media/" + filepath.Join(parent, "secret.png"),
	}
	id := e.mustUpload(tok, "b.png", pngBytes(t, 4, 4, 2)).ID
	attempts = append(attempts, "/media/"+id+"%00", "/media/"+id+"%2f..%2f"+id, "/media/"+id+"/..")
	for _, p := range attempts {
		for _, method := range []string{"GET", "DELETE"} {
			target := p
			if method == "DELETE" {
				target = strings.Replace(p, "/media/", "/media/api/items/", 1)
			}
			r := e.raw(method + " " + target + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok + "\r\nConnection: close\r\n\r\n")
			if bytes.Contains(r.body, []byte(secret)) {
				t.Fatalf("%s %s leaked the secret", method, target)
			}
			if r.status != http.StatusNotFound {
				t.Errorf("%s %s: %d %s", method, target, r.status, r.body)
			}
		}
	}
	// The legitimate file is still there, and no attempt deleted anything.
	if r := e.get(it.URL); r.status != http.StatusOK || e.rowCount() != 2 {
		t.Fatalf("after the attempts: %d, rows %d", r.status, e.rowCount())
	}
}

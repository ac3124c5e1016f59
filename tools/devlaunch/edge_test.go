package devlaunch

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// startEdge serves an Edge on a loopback port and returns its base URL.
func startEdge(t *testing.T, webURL, mediaURL string) string {
	t.Helper()
	e, err := NewEdge(webURL, mediaURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Errorf("edge shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("edge serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func TestEdgeRoutesLikeTheIngress(t *testing.T) {
	backend := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, name+" "+r.Host+" "+r.URL.RequestURI()+" "+r.Header.Get("X-Forwarded-For")+" "+
				r.Header.Get("X-Forwarded-Proto")+" "+r.Header.Get("X-Forwarded-Host"))
		}))
	}
	web, media := backend("web"), backend("media")
	defer web.Close()
	defer media.Close()
	edge := startEdge(t, web.URL, media.URL)
	host := strings.TrimPrefix(edge, "http://")
	for path, want := range map[string]string{
		"/":                   "web",
		"/articles/x?y=1":     "web",
		"/admin/media":        "web",
		"/mediafoo":           "web",
		"/media":              "media",
		"/media/abc.png":      "media",
		"/media/api/items?x=": "media",
	} {
		req, _ := http.NewRequest(http.MethodGet, edge+path, nil)
		// A client cannot choose the address the backends see.
		req.Header.Set("X-Forwarded-For", "203.0.113.9")
		req.Header.Set("X-Forwarded-Proto", "https")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got := strings.Fields(string(b))
		if len(got) != 6 || got[0] != want || got[1] != host || got[2] != path || got[3] != "127.0.0.1" || got[4] != "http" || got[5] != host {
			t.Errorf("GET %s → %q, want backend %s with Host %s, the same path and X-Forwarded-* from the connection", path, b, want, host)
		}
	}
	// Every X-Forwarded-For line a client sends is replaced, not just the first.
	xff := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Join(r.Header.Values("X-Forwarded-For"), "|"))
	}))
	defer xff.Close()
	req, _ := http.NewRequest(http.MethodGet, startEdge(t, xff.URL, xff.URL)+"/", nil)
	req.Header.Add("X-Forwarded-For", "127.0.0.1")
	req.Header.Add("X-Forwarded-For", "7.7.7.7")
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "127.0.0.1" {
			t.Errorf("two X-Forwarded-For lines reach the backend as %q, want only the connection's address", b)
		}
	}
	// A path that only reaches /media after normalisation is routed by what the backend will see.
	resp, err := http.Get(edge + "/media/../admin")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(b), "web ") || !strings.Contains(string(b), " /admin ") {
		t.Errorf("GET /media/../admin → %q, want web to see /admin", b)
	}
}

// Probes and metrics answer on each service's own port only: the edge, like
// the Ingress, refuses them (even when the path only gets there once
// normalised), and nothing reaches the backend.
func TestEdgeRefusesInternalPaths(t *testing.T) {
	var hits []string
	var mu sync.Mutex
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits = append(hits, r.URL.Path)
		mu.Unlock()
		io.WriteString(w, "web")
	}))
	defer web.Close()
	edge := startEdge(t, web.URL, web.URL)
	for path, want := range map[string]int{
		"/healthz": 403, "/readyz": 403, "/metrics": 403, "/metrics?format=text": 403, "/articles/../metrics": 403,
		"/metricsfoo": 200, "/articles/metrics": 200,
	} {
		resp, err := http.Get(edge + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s → %d %q, want %d", path, resp.StatusCode, b, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range hits {
		if p == "/healthz" || p == "/readyz" || p == "/metrics" {
			t.Errorf("web was asked for %s", p)
		}
	}
}

// The edge must pass real traffic unchanged: large uploads and downloads
// streamed, big header blocks, several Set-Cookie headers, redirects not
// followed, HEAD, and connection-scoped headers dropped.
func TestEdgePassesTrafficThrough(t *testing.T) {
	const big = 40 << 20 // over any buffer the edge has: it must stream
	payload := bytes.Repeat([]byte("pressroom-"), big/10)
	sum := sha256.Sum256(payload)
	media := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/media/upload":
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
		case "/media/big":
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(payload)
		case "/media/chunked":
			for i := 0; i < 100; i++ {
				io.WriteString(w, strings.Repeat("x", 1000))
				w.(http.Flusher).Flush()
			}
		}
	}))
	defer media.Close()
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/cookies":
			http.SetCookie(w, &http.Cookie{Name: "a", Value: "1", HttpOnly: true})
			http.SetCookie(w, &http.Cookie{Name: "b", Value: strings.Repeat("t", 6000), HttpOnly: true})
			w.Header().Set("Content-Security-Policy", strings.Repeat("default-src 'self'; ", 300))
			fmt.Fprintf(w, "cookie=%d te=%q keepalive=%q secret=%q", len(r.Header.Get("Cookie")),
				r.Header.Get("Te"), r.Header.Get("Keep-Alive"), r.Header.Get("X-Hop"))
		case "/redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusSeeOther)
		case "/head":
			w.Header().Set("Content-Length", "5")
			if r.Method != http.MethodHead {
				io.WriteString(w, "hello")
			}
		}
	}))
	defer web.Close()
	edge := startEdge(t, web.URL, media.URL)

	resp, err := http.Post(edge+"/media/upload", "application/octet-stream", bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("%d %x", big, sum); string(b) != want {
		t.Errorf("40 MiB upload through the edge: backend saw %q, want %q", b, want)
	}

	for i := 0; i < 3; i++ { // repeated, so a download that kept its upstream connection would show
		resp, err = http.Get(edge + "/media/big")
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		resp.Body.Close()
		if err != nil || n != big || !bytes.Equal(h.Sum(nil), sum[:]) {
			t.Fatalf("40 MiB download through the edge: %d bytes, err %v, checksum match %v", n, err, bytes.Equal(h.Sum(nil), sum[:]))
		}
	}

	resp, err = http.Get(edge + "/media/chunked")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(b) != 100_000 {
		t.Errorf("chunked response: %d bytes, want 100000", len(b))
	}

	req, _ := http.NewRequest(http.MethodGet, edge+"/cookies", nil)
	req.Header.Set("Cookie", "session="+strings.Repeat("s", 8000))
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "connection-scoped")
	req.Header.Set("Keep-Alive", "timeout=5")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `cookie=8008 te="" keepalive="" secret=""`; resp.StatusCode != 200 || string(b) != want {
		t.Errorf("large headers: %d %q, want 200 %q", resp.StatusCode, b, want)
	}
	if c := resp.Cookies(); len(c) != 2 || c[0].Name != "a" || c[1].Name != "b" || len(c[1].Value) != 6000 {
		t.Errorf("Set-Cookie through the edge: %v", c)
	}
	if s := resp.Header.Get("Server"); s != "" {
		t.Errorf("the edge added Server: %q; the backend's headers must pass unchanged", s)
	}
	if len(resp.Header.Get("Content-Security-Policy")) != 300*len("default-src 'self'; ")-1 {
		t.Errorf("long response header cut: %d bytes", len(resp.Header.Get("Content-Security-Policy")))
	}

	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = noFollow.Get(edge + "/redirect")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/elsewhere" {
		t.Errorf("redirect: %d Location %q, want the backend's 303 to /elsewhere", resp.StatusCode, resp.Header.Get("Location"))
	}

	resp, err = http.Head(edge + "/head")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != 5 {
		t.Errorf("HEAD: %d, Content-Length %d, want 200 and 5", resp.StatusCode, resp.ContentLength)
	}
}

// A client's Connection: close is honoured, and a dead backend is a clear 502.
func TestEdgeConnectionCloseAndBadGateway(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer web.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	edge := startEdge(t, web.URL, deadURL)

	conn, err := net.Dial("tcp", strings.TrimPrefix(edge, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	all, err := io.ReadAll(conn) // returns only when the edge closes the connection
	if err != nil {
		t.Fatalf("the edge kept a Connection: close connection open: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(all)), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "ok" {
		t.Errorf("Connection: close request → %d %q", resp.StatusCode, b)
	}

	resp, err = http.Get(edge + "/media/x.png")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), "media at "+strings.TrimPrefix(deadURL, "http://")+" did not answer") {
		t.Errorf("dead media backend → %d %q, want 502 naming media and its address", resp.StatusCode, b)
	}
}

func TestNewEdgeRejectsBadUpstreams(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:80", "https://127.0.0.1:443", "http://"} {
		if _, err := NewEdge(u, "http://127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "must be http://host:port") {
			t.Errorf("NewEdge(%q): %v, want an error saying the form", u, err)
		}
	}
}

package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"pressroom.dev/kit/testkit"
)

const childEnv = "KIT_SERVER_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(runChild())
	}
	os.Exit(m.Run())
}

// runChild is the real process the shutdown test sends SIGTERM to.
func runChild() int {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	s := New(Options{Name: "child", Logger: log, ShutdownTimeout: 10 * time.Second, DrainDelay: time.Second})
	s.Engine().GET("/slow", func(c *gin.Context) {
		fmt.Println("STARTED")
		time.Sleep(2500 * time.Millisecond) // outlasts the drain delay: Shutdown must wait for it
		c.String(http.StatusOK, "finished")
	})
	s.OnShutdown("first-registered", func(context.Context) error { fmt.Println("CLOSED first-registered"); return nil })
	s.OnShutdown("last-registered", func(context.Context) error { fmt.Println("CLOSED last-registered"); return nil })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Println("ADDR", ln.Addr().String())
	if err := s.Serve(context.Background(), ln); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		return 1
	}
	fmt.Println("EXITED")
	return 0
}

func TestGracefulShutdownFinishesInFlightRequest(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }) // no-op once it exited
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("child stdout closed early")
			}
			return l
		case <-time.After(30 * time.Second):
			t.Fatal("child said nothing for 30s")
		}
		return ""
	}
	addr, ok := strings.CutPrefix(next(), "ADDR ")
	if !ok {
		t.Fatal("child did not print its address")
	}
	base := "http://" + addr

	type result struct {
		code int
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.Get(base + "/slow")
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		res <- result{resp.StatusCode, string(b), err}
	}()
	if l := next(); l != "STARTED" {
		t.Fatalf("want STARTED, got %q", l)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// During the drain delay the process still answers, but says it is not ready.
	saw503 := false
	for range 400 {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			break
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			saw503 = true
			// A kept-alive client must not reuse the connection of a pod that
			// is stopping: the response closes it.
			if !resp.Close {
				t.Error("a response during the drain delay keeps its connection alive; want Connection: close")
			}
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !saw503 {
		t.Error("/readyz never reported 503 after SIGTERM")
	}

	r := <-res
	if r.err != nil || r.code != http.StatusOK || r.body != "finished" {
		t.Fatalf("in-flight request: code=%d body=%q err=%v; want 200 finished", r.code, r.body, r.err)
	}
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	want := []string{"CLOSED last-registered", "CLOSED first-registered", "EXITED"}
	if strings.Join(rest, "|") != strings.Join(want, "|") {
		t.Errorf("after drain got %q, want %q (closers LIFO, then clean exit)", rest, want)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child exit: %v", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("listener still accepting after shutdown")
	}
}

// start serves s on a loopback port until the test ends.
func start(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func post(t *testing.T, url, contentType, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestProbesReportFailingChecksByName(t *testing.T) {
	s := New(Options{Name: "t", Logger: quietLogger()})
	var mu sync.Mutex
	dbErr := errors.New("connection refused")
	s.AddCheck("db", func(context.Context) error { mu.Lock(); defer mu.Unlock(); return dbErr })
	s.AddCheck("cache", func(context.Context) error { return nil })
	base := start(t, s)

	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	code, body := get(t, base+"/readyz")
	var got struct {
		Status string            `json:"status"`
		Failed map[string]string `json:"failed"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err, body)
	}
	if code != 503 || got.Failed["db"] != "connection refused" || len(got.Failed) != 1 {
		t.Errorf("/readyz = %d %s; want 503 naming only db", code, body)
	}
	mu.Lock()
	dbErr = nil
	mu.Unlock()
	if code, body := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz after recovery = %d %s", code, body)
	}
}

func TestCheckTimeout(t *testing.T) {
	s := New(Options{Logger: quietLogger(), CheckTimeout: 50 * time.Millisecond})
	s.AddCheck("stuck", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	base := start(t, s)
	code, body := get(t, base+"/readyz")
	if code != 503 || !strings.Contains(body, "deadline exceeded") {
		t.Errorf("/readyz = %d %s", code, body)
	}
}

func TestRoutesMetricsAndPanics(t *testing.T) {
	s := New(Options{Logger: quietLogger()})
	s.Engine().GET("/boom", func(*gin.Context) { panic("kaboom") })
	s.Handle("/pkg.v1.Svc/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "svc ", r.Method, " ", r.URL.Path)
	}))
	s.Handle("/exact", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "exact") }))
	base := start(t, s)

	if code, body := get(t, base+"/boom"); code != 500 || !strings.Contains(body, "internal error") {
		t.Errorf("/boom = %d %q", code, body)
	}
	if _, body := post(t, base+"/pkg.v1.Svc/Method", "application/json", "{}"); body != "svc POST /pkg.v1.Svc/Method" {
		t.Errorf("prefix handler got %q", body)
	}
	if code, body := get(t, base+"/exact"); code != 200 || body != "exact" {
		t.Errorf("/exact = %d %q", code, body)
	}
	if code, _ := get(t, base+"/exact/more"); code != 404 {
		t.Errorf("/exact/more = %d, want 404", code)
	}
	_, metrics := get(t, base+"/metrics")
	for _, want := range []string{
		`http_requests_total{code="500",method="GET",route="/boom"} 1`,
		`http_requests_total{code="200",method="POST",route="/pkg.v1.Svc/*rest"} 1`,
		`http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestRunReportsBusyAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	closed := false
	s := New(Options{Addr: ln.Addr().String(), Logger: quietLogger()})
	s.OnShutdown("pool", func(context.Context) error { closed = true; return nil })
	err = s.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "HTTP_ADDR") {
		t.Fatalf("Run on busy address: %v", err)
	}
	if !closed {
		t.Error("closers must run when the server cannot start")
	}
	if err := New(Options{Logger: quietLogger()}).Run(context.Background()); err == nil || !strings.Contains(err.Error(), "HTTP_ADDR") {
		t.Errorf("Run without address: %v", err)
	}
}

// Without an exporter the server only extracts the incoming trace context
// (no spans); with an SDK provider installed it records a server span. The
// handler sees the caller's trace in both cases, so traces stay joined.
func TestTraceContextReachesHandlers(t *testing.T) {
	otel.SetTextMapPropagator(propagation.TraceContext{})
	s := New(Options{Name: "t", Logger: quietLogger()})
	s.Engine().GET("/trace", func(c *gin.Context) {
		c.String(http.StatusOK, trace.SpanContextFromContext(c.Request.Context()).TraceID().String())
	})
	base := start(t, s)
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	call := func() string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+"/trace", nil)
		req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}

	if got := call(); got != traceID {
		t.Fatalf("without an exporter the handler saw trace %q, want the caller's %s", got, traceID)
	}

	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev); _ = tp.Shutdown(context.Background()) })
	if got := call(); got != traceID {
		t.Fatalf("with an exporter the handler saw trace %q, want the caller's %s", got, traceID)
	}
	recorded := spans.GetSpans()
	if len(recorded) != 1 || recorded[0].Name != "GET /trace" || recorded[0].SpanContext.TraceID().String() != traceID {
		t.Fatalf("want one server span \"GET /trace\" in trace %s, got %+v", traceID, recorded)
	}
}

// Fast successful reads go to debug; writes, errors and slow reads stay at
// info (5xx at warn), so an info-level log shows what an operator acts on.
func TestRequestLogLevels(t *testing.T) {
	var out testkit.LogBuffer
	s := New(Options{Logger: slog.New(slog.NewTextHandler(&out, nil)), SlowRequest: 50 * time.Millisecond})
	s.Engine().GET("/page", func(c *gin.Context) { c.String(http.StatusOK, "page") })
	s.Engine().GET("/slow", func(c *gin.Context) { time.Sleep(80 * time.Millisecond); c.String(http.StatusOK, "slow") })
	s.Engine().GET("/broken", func(c *gin.Context) { c.String(http.StatusBadGateway, "upstream down") })
	s.Engine().POST("/save", func(c *gin.Context) { c.Status(http.StatusNoContent) })
	base := start(t, s)

	get(t, base+"/page")
	get(t, base+"/missing")
	get(t, base+"/slow")
	get(t, base+"/broken")
	resp, err := http.Post(base+"/save", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	logged := map[string]string{} // path -> level
	for _, line := range strings.Split(out.String(), "\n") {
		if !strings.Contains(line, `msg="http request"`) {
			continue
		}
		var level, path string
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "level="); ok {
				level = v
			}
			if v, ok := strings.CutPrefix(f, "path="); ok {
				path = v
			}
		}
		logged[path] = level
	}
	want := map[string]string{"/missing": "INFO", "/slow": "INFO", "/broken": "WARN", "/save": "INFO"}
	for path, level := range want {
		if logged[path] != level {
			t.Errorf("%s logged at %q, want %s (all: %v)", path, logged[path], level, logged)
		}
	}
	if l, ok := logged["/page"]; ok {
		t.Errorf("a fast successful GET was logged at %s; it belongs at debug", l)
	}
}

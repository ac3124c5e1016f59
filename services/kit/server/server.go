// Package server runs a service's HTTP endpoint on gin with the behaviour every
// pressroom service needs: explicit timeouts, request logs, panic recovery,
// tracing, Prometheus metrics, liveness/readiness probes, Connect handlers,
// and a graceful shutdown that lets in-flight requests finish.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Options configure a Server. Zero durations take the defaults noted.
type Options struct {
	Name   string
	Addr   string       // e.g. ":8082"
	Logger *slog.Logger // nil = slog.Default()

	ReadHeaderTimeout time.Duration // 5s
	ReadTimeout       time.Duration // 30s
	WriteTimeout      time.Duration // 60s
	IdleTimeout       time.Duration // 120s

	ShutdownTimeout time.Duration // deadline to drain in-flight requests, 20s
	DrainDelay      time.Duration // readiness false → stop accepting, 1s (see Serve)
	CloseTimeout    time.Duration // deadline for the OnShutdown funcs together, 10s
	CheckTimeout    time.Duration // per readiness check, 2s
	SlowRequest     time.Duration // reads slower than this are logged at info, 500ms

	// TrustedProxies are the addresses or CIDRs whose X-Forwarded-For and
	// X-Real-IP headers are believed (the edge proxy). Empty: none, so the
	// client address is always the peer's and a client cannot choose it.
	TrustedProxies []string
}

// Server is an HTTP server with probes, metrics and graceful shutdown.
type Server struct {
	opts   Options
	log    *slog.Logger
	engine *gin.Engine
	reg    *prometheus.Registry
	ready  atomic.Bool
	// draining: HTTP/1 responses say "Connection: close" (see Serve).
	draining atomic.Bool
	mu       sync.Mutex
	checks   []check
	closers  []closer
}

type check struct {
	name string
	fn   func(context.Context) error
}

type closer struct {
	name string
	fn   func(context.Context) error
}

func init() { gin.SetMode(gin.ReleaseMode) }

// New builds a Server; routes may be added until Run/Serve is called.
func New(o Options) *Server {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.ReadHeaderTimeout, 5*time.Second)
	def(&o.ReadTimeout, 30*time.Second)
	def(&o.WriteTimeout, 60*time.Second)
	def(&o.IdleTimeout, 120*time.Second)
	def(&o.ShutdownTimeout, 20*time.Second)
	def(&o.DrainDelay, time.Second)
	def(&o.CloseTimeout, 10*time.Second)
	def(&o.CheckTimeout, 2*time.Second)
	def(&o.SlowRequest, 500*time.Millisecond)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Name == "" {
		o.Name = "service"
	}
	s := &Server{opts: o, log: o.Logger, engine: gin.New(), reg: prometheus.NewRegistry()}
	// gin trusts every peer's forwarded-for header by default, which lets any
	// client choose the address it is logged and rate-limited by.
	if err := s.engine.SetTrustedProxies(o.TrustedProxies); err != nil {
		panic(fmt.Sprintf("server: TrustedProxies: %v", err))
	}
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.ready.Store(true)

	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "http_requests_total", Help: "HTTP requests served, by method, route and status code.",
	}, []string{"method", "route", "code"})
	durations := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "http_request_duration_seconds", Help: "HTTP request latency, by method, route and status code.",
		Buckets: prometheus.DefBuckets,
	}, []string{"method", "route", "code"})
	s.reg.MustRegister(requests, durations)

	s.engine.ContextWithFallback = true                        // c.Done()/c.Value() follow the request context (trace, principal)
	s.engine.Use(s.observe(requests, durations), s.recovery()) // observe outermost: panics are logged and counted as 500
	s.engine.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	s.engine.GET("/readyz", s.readyz)
	s.engine.GET("/metrics", gin.WrapH(promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg})))
	return s
}

// Engine is the gin engine, for plain routes and middleware.
func (s *Server) Engine() *gin.Engine { return s.engine }

// Metrics is the registry served at /metrics; register service collectors here.
func (s *Server) Metrics() *prometheus.Registry { return s.reg }

// Handle mounts h. A pattern ending in "/" (a Connect service path such as
// "/pressroom.article.v1.ArticleService/") matches everything below it;
// otherwise the exact path. Any method is accepted.
func (s *Server) Handle(pattern string, h http.Handler) {
	if !strings.HasPrefix(pattern, "/") {
		panic(fmt.Sprintf("server: Handle pattern %q must start with /", pattern))
	}
	if strings.HasSuffix(pattern, "/") {
		pattern += "*rest"
	}
	s.engine.Any(pattern, gin.WrapH(h))
}

// AddCheck registers a readiness check run by /readyz.
func (s *Server) AddCheck(name string, fn func(ctx context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks = append(s.checks, check{name, fn})
}

// OnShutdown registers fn to run after requests have drained; funcs run in
// reverse order of registration, like defer (close what you opened last first).
func (s *Server) OnShutdown(name string, fn func(ctx context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closers = append(s.closers, closer{name, fn})
}

// Run listens on Options.Addr and serves until ctx is done or the process gets
// SIGTERM/SIGINT, then shuts down gracefully. It returns nil after a clean shutdown.
func (s *Server) Run(ctx context.Context) error {
	if s.opts.Addr == "" {
		s.runClosers()
		return errors.New("server: no listen address: set HTTP_ADDR (e.g. :8082)")
	}
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		s.runClosers()
		return fmt.Errorf("server: listen on %q (set HTTP_ADDR to a free host:port): %w", s.opts.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on a listener you created.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true) // gRPC clients over cleartext in-cluster
	hs := &http.Server{
		Handler:           s.traced(),
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		ReadTimeout:       s.opts.ReadTimeout,
		WriteTimeout:      s.opts.WriteTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		Protocols:         &protocols,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		ConnContext:       rememberConn,
		ConnState:         flushWhenDone,
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(coalescingListener{ln, s.opts.WriteTimeout}) }()
	s.log.Info("http server listening", "addr", ln.Addr().String())

	select {
	case err := <-serveErr:
		s.ready.Store(false)
		return errors.Join(fmt.Errorf("server: serve: %w", err), s.runClosers())
	case <-ctx.Done():
	}
	stop() // a second signal now kills the process the default way
	s.ready.Store(false)
	// Clients that keep connections alive through a Service address (other
	// services, via kube-proxy) keep using this pod after it leaves the
	// endpoints. Closing an idle connection races with a request the client
	// is sending on it, which then fails unless it can be retried (a POST
	// cannot). So for the drain delay every response closes its connection
	// first: the client dials again and reaches a pod that is not stopping.
	s.draining.Store(true)
	s.log.Info("shutting down: readiness off, draining requests",
		"drain_delay", s.opts.DrainDelay.String(), "timeout", s.opts.ShutdownTimeout.String())
	if s.opts.DrainDelay > 0 {
		time.Sleep(s.opts.DrainDelay)
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	var errs []error
	if err := hs.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("server: requests still running after %s: %w", s.opts.ShutdownTimeout, err))
		_ = hs.Close()
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, err)
	}
	errs = append(errs, s.runClosers())
	err := errors.Join(errs...)
	if err != nil {
		s.log.Error("shutdown finished with errors", "err", err)
	} else {
		s.log.Info("shutdown complete")
	}
	return err
}

// traced wraps the engine in otelhttp server spans while an SDK tracer
// provider is installed (telemetry.Setup with an endpoint). Without one the
// spans would record nothing, so it only extracts the incoming trace context,
// which keeps traces joined across services at a fraction of the cost.
func (s *Server) traced() http.Handler {
	spans := otelhttp.NewHandler(s.engine, s.opts.Name,
		otelhttp.WithFilter(func(r *http.Request) bool { return !isProbe(r.URL.Path) }),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + r.URL.Path }))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() && r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close")
		}
		holdResponse(r)
		if _, exporting := otel.GetTracerProvider().(*sdktrace.TracerProvider); exporting {
			spans.ServeHTTP(w, r)
			return
		}
		if r.Header.Get("traceparent") != "" {
			r = r.WithContext(otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header)))
		}
		s.engine.ServeHTTP(w, r)
	})
}

func (s *Server) runClosers() error {
	s.mu.Lock()
	closers := append([]closer(nil), s.closers...)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.CloseTimeout)
	defer cancel()
	var errs []error
	for i := len(closers) - 1; i >= 0; i-- {
		c := closers[i]
		if err := c.fn(ctx); err != nil {
			errs = append(errs, fmt.Errorf("server: closing %s: %w", c.name, err))
			continue
		}
		s.log.Info("closed", "what", c.name)
	}
	return errors.Join(errs...)
}

func (s *Server) readyz(c *gin.Context) {
	if !s.ready.Load() {
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "unavailable", "failed": gin.H{"shutdown": "server is shutting down"}})
		return
	}
	s.mu.Lock()
	checks := append([]check(nil), s.checks...)
	s.mu.Unlock()
	failed := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, ch := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(c.Request.Context(), s.opts.CheckTimeout)
			defer cancel()
			if err := ch.fn(ctx); err != nil {
				mu.Lock()
				failed[ch.name] = err.Error()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(failed) > 0 {
		s.log.WarnContext(c.Request.Context(), "not ready", "failed", failed)
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "unavailable", "failed": failed})
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// InternalPaths are the routes every server answers for the kubelet and
// in-cluster scrapers. The Ingress (and make dev's edge) refuse them to the
// public: /readyz names failing dependencies and /metrics counts every route.
var InternalPaths = []string{"/healthz", "/readyz", "/metrics"}

func isProbe(path string) bool { return slices.Contains(InternalPaths, path) }

// observe logs each request and records its metrics.
func (s *Server) observe(requests *prometheus.CounterVec, durations *prometheus.HistogramVec) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		elapsed := time.Since(start)
		route := c.FullPath()
		if route == "" {
			route = "unmatched" // keeps label cardinality bounded
		}
		method, code := MethodLabel(c.Request.Method), StatusLabel(c.Writer.Status())
		requests.WithLabelValues(method, route, code).Inc()
		durations.WithLabelValues(method, route, code).Observe(elapsed.Seconds())
		ctx, level := c.Request.Context(), s.requestLevel(c, elapsed)
		if !s.log.Enabled(ctx, level) {
			return // skip building the record (and parsing the client IP) nobody reads
		}
		s.log.Log(ctx, level, "http request",
			"method", c.Request.Method, "path", c.Request.URL.Path, "route", route,
			"status", c.Writer.Status(), "duration_ms", float64(elapsed.Microseconds())/1000,
			"bytes", c.Writer.Size(), "remote", c.ClientIP())
	}
}

// MethodLabel is the metric label of a request method: the standard methods
// as they are, anything a client invents as "other", so clients cannot
// create series (each one is kept until the process exits).
func MethodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

// StatusLabel is the metric label of a status code: the code when it is a
// registered one (a closed set), else its class ("2xx" … "5xx", or "other").
func StatusLabel(code int) string {
	if http.StatusText(code) != "" {
		return strconv.Itoa(code)
	}
	if code >= 100 && code <= 599 {
		return strconv.Itoa(code/100) + "xx"
	}
	return "other"
}

// requestLevel keeps the info log for what an operator looks for: writes,
// errors and slow requests. Fast successful reads (pages, images, probes) are
// counted in the metrics and logged at debug, so a busy site does not spend
// its CPU writing one log line per page view.
func (s *Server) requestLevel(c *gin.Context, elapsed time.Duration) slog.Level {
	status := c.Writer.Status()
	switch {
	case isProbe(c.Request.URL.Path): // a failing /readyz logs its own reasons
		return slog.LevelDebug
	case status >= 500:
		return slog.LevelWarn
	case (c.Request.Method == http.MethodGet || c.Request.Method == http.MethodHead) &&
		status < 400 && elapsed < s.opts.SlowRequest:
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// recovery turns a handler panic into a logged 500 instead of a dropped connection.
func (s *Server) recovery() gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			rec := recover()
			if rec == nil {
				return
			}
			if rec == http.ErrAbortHandler { //nolint:errorlint // sentinel compared by identity, as net/http does
				panic(rec)
			}
			s.log.ErrorContext(c.Request.Context(), "panic in handler",
				"panic", fmt.Sprint(rec), "path", c.Request.URL.Path, "stack", string(debug.Stack()))
			if !c.Writer.Written() {
				c.Header("Content-Type", "application/json")
				c.Status(http.StatusInternalServerError)
				_ = json.NewEncoder(c.Writer).Encode(map[string]string{"error": "internal error"})
			}
			c.Abort()
		}()
		c.Next()
	}
}

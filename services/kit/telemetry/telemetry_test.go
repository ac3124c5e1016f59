package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
)

func TestSetupExportsSpansOverOTLPHTTP(t *testing.T) {
	var posts atomic.Int32
	var bodyBytes atomic.Int64
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" {
			b, _ := io.ReadAll(r.Body)
			bodyBytes.Add(int64(len(b)))
			posts.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")

	ctx := context.Background()
	shutdown, err := Setup(ctx, "test-svc", collector.URL)
	if err != nil {
		t.Fatal(err)
	}
	_, span := Tracer("t").Start(ctx, "work")
	if !span.SpanContext().IsValid() {
		t.Fatal("span should be recording with an exporter configured")
	}
	span.End()
	if err := shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if posts.Load() == 0 || bodyBytes.Load() == 0 {
		t.Fatalf("collector got %d posts, %d bytes; want the span exported", posts.Load(), bodyBytes.Load())
	}
}

func TestSetupRejectsBadEndpoint(t *testing.T) {
	if _, err := Setup(context.Background(), "x", "jaeger:4317"); err == nil {
		t.Fatal("want error for an endpoint that is not a URL")
	}
}

func TestNATSHeadersCarryTrace(t *testing.T) {
	if _, err := Setup(context.Background(), "x", ""); err != nil {
		t.Fatal(err)
	}
	tid, _ := trace.TraceIDFromHex("0123456789abcdef0123456789abcdef")
	sid, _ := trace.SpanIDFromHex("0123456789abcdef")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)

	h := nats.Header{}
	InjectNATS(ctx, h)
	if len(h) == 0 {
		t.Fatal("no headers injected")
	}
	got := trace.SpanContextFromContext(ExtractNATS(context.Background(), h))
	if got.TraceID() != tid || got.SpanID() != sid || !got.IsRemote() {
		t.Fatalf("extracted %v, want trace %s span %s", got, tid, sid)
	}
	_ = otel.GetTextMapPropagator()
}

func TestHTTPTransportPropagates(t *testing.T) {
	if _, err := Setup(context.Background(), "x", ""); err != nil {
		t.Fatal(err)
	}
	var seen atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.Header.Get("traceparent"))
	}))
	defer srv.Close()
	tid, _ := trace.TraceIDFromHex("11111111111111111111111111111111")
	sid, _ := trace.SpanIDFromHex("2222222222222222")
	ctx := trace.ContextWithSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := (&http.Client{Transport: HTTPTransport(nil)}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	tp, _ := seen.Load().(string)
	if len(tp) < 55 || tp[3:35] != tid.String() {
		t.Fatalf("traceparent %q does not carry trace %s", tp, tid)
	}
}

// Package telemetry sets up OpenTelemetry tracing. The W3C trace context is
// always propagated (so a trace crosses web → article → NATS → notification
// even when this process exports nothing); spans are exported over OTLP only
// when an endpoint is configured.
package telemetry

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Setup installs the W3C tracecontext+baggage propagator and, when
// otlpEndpoint is non-empty, an OTLP exporter with a batching TracerProvider
// named after service. The endpoint is a URL: http://jaeger:4317 speaks gRPC;
// port 4318 or OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf speaks OTLP/HTTP.
// Call shutdown at exit to flush buffered spans.
func Setup(ctx context.Context, service, otlpEndpoint string) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	if otlpEndpoint == "" {
		return func(context.Context) error { return nil }, nil
	}
	u, err := url.Parse(otlpEndpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("telemetry: OTEL_EXPORTER_OTLP_ENDPOINT %q must be a URL like http://jaeger:4317", otlpEndpoint)
	}
	var exp sdktrace.SpanExporter
	if useHTTP(u) {
		// A bare host URL means the standard /v1/traces path.
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(otlpEndpoint)}
		if u.Path == "" || u.Path == "/" {
			opts = []otlptracehttp.Option{otlptracehttp.WithEndpoint(u.Host)}
			if u.Scheme == "http" {
				opts = append(opts, otlptracehttp.WithInsecure())
			}
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	} else {
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(u.Host)}
		if u.Scheme == "http" {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP exporter for %s: %w", otlpEndpoint, err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", service)))
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(2*time.Second)),
		sdktrace.WithResource(res),
	)
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

func useHTTP(u *url.URL) bool {
	p := strings.ToLower(os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))
	if strings.HasPrefix(p, "http") {
		return true
	}
	if p == "grpc" {
		return false
	}
	return u.Port() == "4318"
}

// Tracer returns a tracer from the global provider.
func Tracer(name string) trace.Tracer { return otel.Tracer(name) }

// HTTPHandler wraps h so each request gets a server span (parented by an incoming traceparent).
func HTTPHandler(h http.Handler, operation string) http.Handler {
	return otelhttp.NewHandler(h, operation)
}

// HTTPTransport wraps base (nil = http.DefaultTransport) so outgoing requests
// get client spans and carry the traceparent header.
func HTTPTransport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return otelhttp.NewTransport(base)
}

// ConnectInterceptor traces Connect calls on servers and clients. Incoming
// trace context is trusted (parent, not link): callers are our own services.
func ConnectInterceptor() (connect.Interceptor, error) {
	return otelconnect.NewInterceptor(
		otelconnect.WithTrustRemote(),
		otelconnect.WithoutServerPeerAttributes(),
		otelconnect.WithoutMetrics(),
	)
}

// InjectNATS writes ctx's trace context into NATS message headers.
func InjectNATS(ctx context.Context, h nats.Header) {
	otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(h))
}

// ExtractNATS returns ctx with the trace context found in NATS message headers.
func ExtractNATS(ctx context.Context, h nats.Header) context.Context {
	return otel.GetTextMapPropagator().Extract(ctx, propagation.HeaderCarrier(h))
}

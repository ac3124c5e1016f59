// Package logging builds the services' slog JSON loggers. Every line logged with
// a context carries the trace_id and span_id of the active span, so a log line
// leads straight to its trace in Jaeger.
package logging

import (
	"context"
	"io"
	"log/slog"
	"os"

	"go.opentelemetry.io/otel/trace"
)

// Setup returns a JSON logger to stdout tagged with service and makes it the default.
func Setup(service string, level slog.Leveler) *slog.Logger {
	l := New(os.Stdout, service, level)
	slog.SetDefault(l)
	return l
}

// New returns a JSON logger writing to w, tagged with service.
func New(w io.Writer, service string, level slog.Leveler) *slog.Logger {
	if level == nil {
		level = slog.LevelInfo
	}
	h := NewHandler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
	l := slog.New(h)
	if service != "" {
		l = l.With("service", service)
	}
	return l
}

// NewHandler wraps next so records logged with a context holding a valid span
// get trace_id and span_id attributes.
func NewHandler(next slog.Handler) slog.Handler { return traceHandler{next} }

type traceHandler struct{ next slog.Handler }

func (h traceHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			r = r.Clone()
			r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
		}
	}
	return h.next.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceHandler{h.next.WithAttrs(as)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.next.WithGroup(name)}
}

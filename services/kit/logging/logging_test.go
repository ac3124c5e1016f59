package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

func TestTraceIDsOnEveryLine(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, "article", slog.LevelInfo).With("component", "relay")

	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	ctx, span := tp.Tracer("test").Start(context.Background(), "op")
	log.InfoContext(ctx, "inside span", "n", 1)
	span.End()
	log.Info("no span")
	log.Debug("filtered out")

	dec := json.NewDecoder(&buf)
	var first, second map[string]any
	if err := dec.Decode(&first); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(&second); err != nil {
		t.Fatal(err)
	}
	if dec.More() {
		t.Error("debug line should have been filtered at info level")
	}
	sc := span.SpanContext()
	if first["trace_id"] != sc.TraceID().String() || first["span_id"] != sc.SpanID().String() {
		t.Errorf("line in span lacks ids: %v", first)
	}
	if first["service"] != "article" || first["component"] != "relay" || first["msg"] != "inside span" {
		t.Errorf("attrs lost: %v", first)
	}
	if _, ok := second["trace_id"]; ok {
		t.Errorf("line without span got a trace_id: %v", second)
	}
}

package notify

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/protobuf/encoding/protojson"

	"pressroom.dev/kit/telemetry"
)

// TestConsumerSpanContinuesThePublisherTrace: the trace context in the
// message headers becomes the parent of the consumer's span and of the
// e-mail send.
func TestConsumerSpanContinuesThePublisherTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})

	e := newEnv(t)
	f := newFakeResend(t)
	e.start(t, resend(f), testOptions())

	ctx, span := tp.Tracer("test").Start(context.Background(), "article request")
	ev := event(1)
	data, err := protojson.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	msg := &nats.Msg{Subject: SubjectPublished, Data: data, Header: nats.Header{}}
	msg.Header.Set("Nats-Msg-Id", ev.EventId)
	telemetry.InjectNATS(ctx, msg.Header)
	if _, err := e.js.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
	span.End()
	waitFor(t, 20*time.Second, "the e-mail sent", func() bool { return sent(f)[ev.EventId] == 1 })
	want := span.SpanContext().TraceID()
	found := map[string]bool{}
	waitFor(t, 5*time.Second, "consumer spans ended", func() bool {
		for _, s := range rec.Ended() {
			if s.SpanContext().TraceID() == want {
				found[s.Name()] = true
			}
		}
		return found[SubjectPublished+" process"] && found["send e-mail"]
	})
}

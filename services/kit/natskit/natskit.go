// Package natskit connects services to NATS JetStream the same way everywhere:
// a connection that never gives up reconnecting, streams and durable consumers
// created or updated at start-up, publishes that carry the trace context and a
// dedupe id, and a consume loop that acks only what was handled.
package natskit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"pressroom.dev/kit/telemetry"
)

// Connect dials url and keeps reconnecting forever with capped exponential
// backoff and jitter. A server that is down at start-up is retried in the
// background, so pods may start in any order (use Check for readiness).
func Connect(url, name string, log *slog.Logger, opts ...nats.Option) (*nats.Conn, error) {
	if log == nil {
		log = slog.Default()
	}
	base := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.CustomReconnectDelay(backoff),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
		nats.ClosedHandler(func(*nats.Conn) { log.Info("nats connection closed") }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Error("nats async error", "subject", subj, "err", err)
		}),
	}
	nc, err := nats.Connect(url, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("natskit: connect to %q (set NATS_URL, e.g. nats://nats:4222): %w", url, err)
	}
	return nc, nil
}

// backoff waits 100ms, 200ms, ... up to 5s between reconnect attempts, ±20%.
func backoff(attempts int) time.Duration {
	d := 100 * time.Millisecond << min(attempts, 6)
	d = min(d, 5*time.Second)
	return d - d/5 + time.Duration(rand.Int64N(int64(d/5)*2+1))
}

// Check is a readiness check: the connection is up.
func Check(nc *nats.Conn) func(context.Context) error {
	return func(context.Context) error {
		if s := nc.Status(); s != nats.CONNECTED {
			return fmt.Errorf("nats connection is %s", s)
		}
		return nil
	}
}

// retry runs op until it succeeds or ctx ends, so start-up survives a NATS
// server that is still coming up.
func retry[T any](ctx context.Context, what string, op func(context.Context) (T, error)) (T, error) {
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		v, err := op(actx)
		cancel()
		if err == nil {
			return v, nil
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500 && apiErr.Code != 408 {
			return v, fmt.Errorf("natskit: %s: %w", what, err) // a config error: retrying won't help
		}
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("natskit: %s: %w (gave up: %w)", what, err, ctx.Err())
		case <-time.After(backoff(attempt)):
		}
	}
}

// EnsureStream is DeclareStream, retried while NATS is unreachable.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	if cfg.Name == "" || len(cfg.Subjects) == 0 {
		return nil, errors.New("natskit: a stream needs a Name and at least one subject")
	}
	return retry(ctx, "ensure stream "+cfg.Name, func(ctx context.Context) (jetstream.Stream, error) {
		return DeclareStream(ctx, js, cfg)
	})
}

// DeclareStream makes the stream match cfg: it is created when missing and
// updated when a field cfg sets differs, and otherwise left alone. Every
// service declares the streams it uses at start-up, and an update is not
// free: nats-server (v2.15) rewrites the stream's store config without
// guarding against a consumer being created at that moment, a data race
// the race detector caught when two services started together.
func DeclareStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, cfg)
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return s, err
		}
		s, err = js.Stream(ctx, cfg.Name) // another service created it just now
	}
	if err != nil {
		return nil, err
	}
	if declares(s.CachedInfo().Config, cfg) {
		return s, nil
	}
	return js.UpdateStream(ctx, cfg)
}

// declares reports whether every field cfg sets already has that value in
// current (the server fills in the fields cfg leaves zero).
func declares(current, cfg jetstream.StreamConfig) bool {
	want := current
	wv, cv := reflect.ValueOf(&want).Elem(), reflect.ValueOf(cfg)
	for i := range cv.NumField() {
		if f := cv.Field(i); !f.IsZero() {
			wv.Field(i).Set(f)
		}
	}
	return reflect.DeepEqual(want, current)
}

// EnsureConsumer creates or updates a durable pull consumer with explicit acks.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	if cfg.Durable == "" {
		return nil, errors.New("natskit: consumer needs a Durable name so it survives restarts")
	}
	cfg.AckPolicy = jetstream.AckExplicitPolicy
	return retry(ctx, "ensure consumer "+cfg.Durable, func(ctx context.Context) (jetstream.Consumer, error) {
		return js.CreateOrUpdateConsumer(ctx, stream, cfg)
	})
}

// Publish sends data to subject with ctx's trace context in the headers.
// A non-empty msgID becomes Nats-Msg-Id: the server drops duplicates within
// the stream's dedupe window, so a retried publish is stored once.
func Publish(ctx context.Context, js jetstream.JetStream, subject string, data []byte, msgID string) (*jetstream.PubAck, error) {
	ctx, span := telemetry.Tracer("pressroom.dev/kit/natskit").Start(ctx, "publish "+subject,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.destination.name", subject)))
	defer span.End()
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	telemetry.InjectNATS(ctx, msg.Header)
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	ack, err := js.PublishMsg(ctx, msg, opts...)
	if err != nil {
		span.RecordError(err)
		return nil, fmt.Errorf("natskit: publish to %s: %w", subject, err)
	}
	return ack, nil
}

// Handler handles one message; ctx carries the publisher's trace.
// Return nil to ack, an error to have it redelivered later, or Permanent(err)
// to drop a message that can never succeed.
type Handler func(ctx context.Context, msg jetstream.Msg) error

type permanent struct{ err error }

func (p permanent) Error() string { return "permanent: " + p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as not worth retrying: the message is terminated.
func Permanent(err error) error { return permanent{err} }

// Consume runs h for each message of c until the returned context is stopped.
func Consume(c jetstream.Consumer, log *slog.Logger, h Handler) (jetstream.ConsumeContext, error) {
	if log == nil {
		log = slog.Default()
	}
	tracer := telemetry.Tracer("pressroom.dev/kit/natskit")
	cc, err := c.Consume(func(msg jetstream.Msg) {
		ctx := telemetry.ExtractNATS(context.Background(), msg.Headers())
		ctx, span := tracer.Start(ctx, "process "+msg.Subject(),
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.destination.name", msg.Subject())))
		defer span.End()
		delivered := uint64(1)
		if md, err := msg.Metadata(); err == nil {
			delivered = md.NumDelivered
		}
		err := h(ctx, msg)
		var perm permanent
		switch {
		case err == nil:
			if err := msg.Ack(); err != nil {
				log.WarnContext(ctx, "ack failed; message will be redelivered", "subject", msg.Subject(), "err", err)
			}
		case errors.As(err, &perm):
			span.RecordError(err)
			log.ErrorContext(ctx, "dropping message that cannot be handled", "subject", msg.Subject(), "err", err)
			_ = msg.Term()
		default:
			span.RecordError(err)
			delay := redeliveryDelay(delivered)
			log.WarnContext(ctx, "handler failed; will redeliver", "subject", msg.Subject(),
				"delivery", delivered, "retry_in", delay.String(), "err", err)
			_ = msg.NakWithDelay(delay)
		}
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		log.Warn("jetstream consume error", "err", err)
	}))
	if err != nil {
		return nil, fmt.Errorf("natskit: consume: %w", err)
	}
	return cc, nil
}

// redeliveryDelay backs off 1s, 2s, 4s ... up to 1 minute per failed delivery.
func redeliveryDelay(delivered uint64) time.Duration {
	delivered = max(delivered, 1)
	return min(time.Second<<min(delivered-1, 6), time.Minute)
}

// Package notify is the notification service's core: a durable JetStream
// consumer of articles.published that e-mails NOTIFY_EMAIL exactly once per
// event (see store.record), with bounded redelivery and a dead-letter table.
package notify

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protojson"

	"pressroom.dev/kit/natskit"
	"pressroom.dev/kit/telemetry"
	eventsv1 "pressroom.dev/proto/gen/events/v1"
)

// Stream and consumer names; the stream itself is natskit.ArticlesStreamConfig.
const (
	StreamName       = natskit.ArticlesStream
	SubjectPublished = "articles.published"
	DurableName      = "notification"
)

// DefaultConcurrency is how many send requests (each up to MaxBatch e-mails) run in parallel.
const DefaultConcurrency = 8

// Options tune the notifier; zero values take the defaults in brackets.
type Options struct {
	Recipient string // NOTIFY_EMAIL (required)
	From      string // EMAIL_FROM (required)
	Durable   string // consumer name [notification]

	BatchSize   int           // messages recorded per transaction [200]
	AckWait     time.Duration // redelivery after an unacked message [30s]
	MaxDeliver  int           // deliveries before a message is dead-lettered [20]
	NakBackoff  time.Duration // first redelivery delay after a failure, doubled up to 1m [1s]
	ClaimTime   time.Duration // a sender's lease on a row; a crashed sender's rows retry after it [1m]
	SendRetries int           // failed sends before a notification is given up [10]
	RetryDelay  time.Duration // first delay before re-sending, doubled per attempt up to 1h [10s]
	RetryScan   time.Duration // how often due retries are looked for [5s]
	Concurrency int           // parallel send requests [DefaultConcurrency]

	Logger  *slog.Logger
	Metrics prometheus.Registerer // nil = no metrics
}

func (o *Options) defaults() error {
	var probs []string
	if o.Recipient == "" {
		probs = append(probs, "the recipient (NOTIFY_EMAIL) is empty")
	}
	if o.From == "" {
		probs = append(probs, "the sender (EMAIL_FROM) is empty")
	}
	if len(probs) > 0 {
		return fmt.Errorf("notify: %s", strings.Join(probs, "; "))
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.Durable == "" {
		o.Durable = DurableName
	}
	defInt(&o.BatchSize, 200)
	defInt(&o.MaxDeliver, 20)
	defInt(&o.SendRetries, 10)
	defInt(&o.Concurrency, DefaultConcurrency)
	def(&o.AckWait, 30*time.Second)
	def(&o.NakBackoff, time.Second)
	def(&o.ClaimTime, time.Minute)
	def(&o.RetryDelay, 10*time.Second)
	def(&o.RetryScan, 5*time.Second)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// Notifier consumes article events and sends notifications.
type Notifier struct {
	o      Options
	st     *store
	nc     *nats.Conn
	js     jetstream.JetStream
	sender Sender
	tracer trace.Tracer
	m      metrics
}

type metrics struct {
	received   *prometheus.CounterVec // by result: new, duplicate
	sent       prometheus.Counter
	sendErrors prometheus.Counter
	gaveUp     prometheus.Counter
	dead       prometheus.Counter
}

// New wires a notifier; call Run to start it.
func New(pool *pgxpool.Pool, nc *nats.Conn, sender Sender, o Options) (*Notifier, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	n := &Notifier{o: o, st: &store{pool: pool}, nc: nc, js: js, sender: sender,
		tracer: telemetry.Tracer("pressroom.dev/services/notification/internal/notify"),
		m: metrics{
			received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "notification_events_total",
				Help: "articles.published events recorded, by result (new, duplicate)."}, []string{"result"}),
			sent: prometheus.NewCounter(prometheus.CounterOpts{Name: "notification_emails_sent_total",
				Help: "Notification e-mails handed to the sender."}),
			sendErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "notification_send_errors_total",
				Help: "Failed send requests (each up to 100 e-mails; retried unless permanent)."}),
			gaveUp: prometheus.NewCounter(prometheus.CounterOpts{Name: "notification_emails_failed_total",
				Help: "Notifications given up after permanent errors or too many attempts."}),
			dead: prometheus.NewCounter(prometheus.CounterOpts{Name: "notification_dead_letters_total",
				Help: "Messages moved to the dead-letter table."}),
		}}
	if o.Metrics != nil {
		for _, c := range []prometheus.Collector{n.m.received, n.m.sent, n.m.sendErrors, n.m.gaveUp, n.m.dead} {
			if err := o.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("notify metrics: %w", err)
			}
		}
	}
	return n, nil
}

// Setup creates (or updates) the stream and the durable consumer.
func (n *Notifier) Setup(ctx context.Context) (jetstream.Consumer, error) {
	if _, err := natskit.DeclareStream(ctx, n.js, natskit.ArticlesStreamConfig()); err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", StreamName, err)
	}
	c, err := n.js.CreateOrUpdateConsumer(ctx, StreamName, jetstream.ConsumerConfig{
		Durable:       n.o.Durable,
		Description:   "e-mail a notification per published article",
		FilterSubject: SubjectPublished,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       n.o.AckWait,
		MaxDeliver:    n.o.MaxDeliver,
		MaxAckPending: 4 * n.o.BatchSize,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure consumer %s: %w", n.o.Durable, err)
	}
	return c, nil
}

// Run consumes until ctx ends. Setup is retried until NATS answers.
func (n *Notifier) Run(ctx context.Context) error {
	var cons jetstream.Consumer
	for backoff := 200 * time.Millisecond; ; backoff = min(backoff*2, 10*time.Second) {
		c, err := n.Setup(ctx)
		if err == nil {
			cons = c
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		n.o.Logger.WarnContext(ctx, "JetStream not ready; retrying", "err", err, "retry_in", backoff)
		sleep(ctx, backoff)
	}
	msgs := make(chan jetstream.Msg, 2*n.o.BatchSize)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case msgs <- m:
		case <-ctx.Done(): // not acked: redelivered after AckWait
		}
	}, jetstream.PullMaxMessages(2*n.o.BatchSize), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		n.o.Logger.WarnContext(ctx, "JetStream consume", "err", err)
	}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", n.o.Durable, err)
	}
	defer cc.Stop()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); n.retryLoop(ctx) }()
	defer wg.Wait()

	for {
		var first jetstream.Msg
		select {
		case <-ctx.Done():
			return nil
		case first = <-msgs:
		}
		batch := []jetstream.Msg{first}
	fill:
		for len(batch) < n.o.BatchSize {
			select {
			case m := <-msgs:
				batch = append(batch, m)
			default:
				break fill
			}
		}
		n.handleBatch(ctx, batch)
	}
}

type item struct {
	msg  jetstream.Msg
	ctx  context.Context
	span trace.Span
	n    *notification
	key  string // its send batch, once recorded
}

// handleBatch records a batch in one transaction, acks it, then sends the
// notifications that were new.
func (n *Notifier) handleBatch(ctx context.Context, msgs []jetstream.Msg) {
	items := make([]*item, 0, len(msgs))
	for _, m := range msgs {
		// Continue the trace of the article request that published the event.
		mctx := telemetry.ExtractNATS(ctx, m.Headers())
		mctx, span := n.tracer.Start(mctx, m.Subject()+" process", trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("messaging.system", "nats"),
				attribute.String("messaging.destination.name", m.Subject()),
				attribute.String("messaging.message.id", m.Headers().Get(jetstream.MsgIDHeader))))
		x, err := n.decode(m)
		if err != nil {
			n.poison(mctx, m, err)
			span.SetStatus(codes.Error, err.Error())
			span.End()
			continue
		}
		items = append(items, &item{msg: m, ctx: mctx, span: span, n: x})
	}
	if len(items) == 0 {
		return
	}
	defer func() {
		for _, it := range items {
			it.span.End()
		}
	}()
	ns := make([]*notification, len(items))
	for i, it := range items {
		ns[i] = it.n
	}
	keys := sendKeys(len(ns))
	fresh, err := n.st.record(ctx, ns, keys, n.o.ClaimTime)
	// An unreachable database is not the events' fault: hold the batch
	// (telling JetStream we are still working on it, so nothing is
	// redelivered or dead-lettered) until the database is back.
	for backoff := 200 * time.Millisecond; err != nil && ctx.Err() == nil && n.st.pool.Ping(ctx) != nil; backoff = min(backoff*2, n.o.AckWait/3) {
		n.o.Logger.WarnContext(ctx, "notification_db unavailable; holding the batch", "events", len(items), "err", err, "retry_in", backoff)
		for _, it := range items {
			_ = it.msg.InProgress()
		}
		sleep(ctx, backoff)
		fresh, err = n.st.record(ctx, ns, keys, n.o.ClaimTime)
	}
	if err != nil && len(items) > 1 && ctx.Err() == nil {
		// One bad row must not hold its batch-mates back: record them one by one.
		fresh, items = n.recordEach(ctx, items)
	} else if err != nil {
		for _, it := range items {
			it.span.RecordError(err)
			n.retryLater(it.ctx, it.msg, fmt.Errorf("record event: %w", err))
		}
		return
	}
	// From here on the decision is committed: finish acking, sending and
	// recording the outcome even if we are being stopped, so a stop never
	// leaves an e-mail sent but unrecorded.
	ctx = context.WithoutCancel(ctx)
	var toSend []*item
	for _, it := range items {
		// Acked only after the commit: a crash before it means redelivery,
		// which the primary key turns into a no-op.
		if err := it.msg.Ack(); err != nil {
			n.o.Logger.WarnContext(it.ctx, "ack failed; the event will be redelivered and skipped", "event_id", it.n.EventID, "err", err)
		}
		if key, ok := fresh[it.n.EventID]; ok {
			// Only the first copy in this batch sends; a twin in the same
			// batch is a duplicate like any other.
			delete(fresh, it.n.EventID)
			n.m.received.WithLabelValues("new").Inc()
			it.key = key
			toSend = append(toSend, it)
		} else {
			n.m.received.WithLabelValues("duplicate").Inc()
			it.span.SetAttributes(attribute.Bool("notification.duplicate", true))
			n.o.Logger.InfoContext(it.ctx, "duplicate event skipped", "event_id", it.n.EventID)
		}
	}
	if len(toSend) == 0 {
		return
	}
	// Each send batch goes out as recorded: its rows under its key, by event id.
	slices.SortStableFunc(toSend, func(a, b *item) int {
		return cmp.Or(strings.Compare(a.key, b.key), strings.Compare(a.n.EventID, b.n.EventID))
	})
	var batches []*sendBatch
	for _, it := range toSend {
		if len(batches) == 0 || batches[len(batches)-1].Key != it.key {
			batches = append(batches, &sendBatch{Key: it.key})
		}
		b := batches[len(batches)-1]
		b.Items, b.traces = append(b.Items, it.n), append(b.traces, it.ctx)
	}
	n.sendAll(ctx, batches)
}

// sendKeys gives every MaxBatch consecutive events of a consumer batch one
// send batch key, the Idempotency-Key of the request that will carry them.
func sendKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		if i%MaxBatch == 0 {
			keys[i] = "batch-" + uuid.NewString()
		} else {
			keys[i] = keys[i-1]
		}
	}
	return keys
}

// recordEach records items one at a time after a batch failed; the ones
// that fail again are sent back for redelivery (and dead-lettered after
// MaxDeliver). It returns the new event ids and the items recorded.
func (n *Notifier) recordEach(ctx context.Context, items []*item) (map[string]string, []*item) {
	fresh := map[string]string{}
	var ok []*item
	for _, it := range items {
		got, err := n.st.record(ctx, []*notification{it.n}, sendKeys(1), n.o.ClaimTime)
		if err != nil {
			it.span.RecordError(err)
			it.span.End()
			n.retryLater(it.ctx, it.msg, fmt.Errorf("record event: %w", err))
			continue
		}
		maps.Copy(fresh, got)
		ok = append(ok, it)
	}
	return fresh, ok
}

// decode parses and checks an event; an error makes the message poison.
func (n *Notifier) decode(m jetstream.Msg) (*notification, error) {
	var ev eventsv1.ArticleEvent
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(m.Data(), &ev); err != nil {
		return nil, fmt.Errorf("payload is not an events.v1.ArticleEvent: %w", err)
	}
	var probs []string
	if ev.SchemaVersion != 1 {
		probs = append(probs, fmt.Sprintf("schema_version %d is not supported (want 1)", ev.SchemaVersion))
	}
	if _, err := uuid.Parse(ev.EventId); err != nil {
		probs = append(probs, fmt.Sprintf("event_id %q is not a UUID", ev.EventId))
	}
	if ev.Type != SubjectPublished {
		probs = append(probs, fmt.Sprintf("type %q is not %s", ev.Type, SubjectPublished))
	}
	if ev.Title == "" || ev.Url == "" || ev.ArticleId == "" {
		probs = append(probs, "article_id, title and url are required")
	}
	if ev.OccurredAt == nil || !ev.OccurredAt.IsValid() {
		probs = append(probs, "occurred_at is missing")
	}
	if len(probs) > 0 {
		return nil, errors.New(strings.Join(probs, "; "))
	}
	return &notification{EventID: ev.EventId, EventType: ev.Type, ArticleID: ev.ArticleId, Slug: ev.Slug,
		Title: ev.Title, AuthorName: ev.AuthorName, URL: ev.Url, Recipient: n.o.Recipient,
		OccurredAt: ev.OccurredAt.AsTime()}, nil
}

// poison dead-letters a message no retry can fix and terminates it.
func (n *Notifier) poison(ctx context.Context, m jetstream.Msg, reason error) {
	n.deadLetter(ctx, m, reason)
}

func (n *Notifier) deadLetter(ctx context.Context, m jetstream.Msg, reason error) {
	var seq, deliveries uint64
	if md, err := m.Metadata(); err == nil {
		seq, deliveries = md.Sequence.Stream, md.NumDelivered
	}
	msgID := m.Headers().Get(jetstream.MsgIDHeader)
	n.m.dead.Inc()
	n.o.Logger.ErrorContext(ctx, "event dead-lettered", "stream_seq", seq, "subject", m.Subject(),
		"msg_id", msgID, "deliveries", deliveries, "reason", reason.Error())
	if err := n.st.deadLetter(ctx, seq, m.Subject(), msgID, m.Data(), reason.Error(), deliveries); err != nil {
		// Still terminate: the log line above is the record of last resort.
		n.o.Logger.ErrorContext(ctx, "could not record dead letter", "stream_seq", seq, "err", err)
	}
	if err := m.Term(); err != nil {
		n.o.Logger.WarnContext(ctx, "term failed", "stream_seq", seq, "err", err)
	}
}

// retryLater asks for a redelivery with backoff, or dead-letters the message
// once it has used up MaxDeliver deliveries.
func (n *Notifier) retryLater(ctx context.Context, m jetstream.Msg, reason error) {
	md, err := m.Metadata()
	if err == nil && md.NumDelivered >= uint64(n.o.MaxDeliver) {
		n.deadLetter(ctx, m, fmt.Errorf("gave up after %d deliveries: %w", md.NumDelivered, reason))
		return
	}
	delivered := uint64(1)
	if err == nil {
		delivered = md.NumDelivered
	}
	delay := n.o.NakBackoff << min(delivered-1, 6)
	n.o.Logger.WarnContext(ctx, "event not recorded; redelivery requested", "err", reason, "retry_in", delay)
	if err := m.NakWithDelay(min(delay, time.Minute)); err != nil {
		n.o.Logger.WarnContext(ctx, "nak failed; redelivered after AckWait", "err", err)
	}
}

// sendAll sends each batch in one request (a few in parallel) and records
// the outcome per batch: all its e-mails are sent, or none.
func (n *Notifier) sendAll(ctx context.Context, batches []*sendBatch) {
	// Sends are never cut short by a stop: an aborted request may still
	// have been delivered, and we would not know to record it.
	ctx = context.WithoutCancel(ctx)
	sem := make(chan struct{}, n.o.Concurrency)
	var wg sync.WaitGroup
	for _, b := range batches {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			n.send(ctx, b)
		}()
	}
	wg.Wait()
}

func (n *Notifier) send(ctx context.Context, b *sendBatch) {
	// The request's span continues the first event's trace and links the others.
	parent := ctx
	var links []trace.Link
	for i, c := range b.traces {
		if i == 0 {
			parent = c
		}
		links = append(links, trace.LinkFromContext(c))
	}
	sctx, span := n.tracer.Start(context.WithoutCancel(parent), "send e-mail", trace.WithLinks(links...), trace.WithAttributes(
		attribute.String("notification.channel", n.sender.Channel()), attribute.String("notification.send_key", b.Key),
		attribute.Int("notification.emails", len(b.Items))))
	defer span.End()
	emails := make([]Email, len(b.Items))
	ids := make([]string, len(b.Items))
	for i, x := range b.Items {
		emails[i], ids[i] = composeEmail(x, n.o.From), x.EventID
	}
	providerIDs, err := n.sender.Send(sctx, b.Key, emails)
	if err == nil {
		n.m.sent.Add(float64(len(ids)))
		if err := n.st.markSent(ctx, b.Key, ids, providerIDs, n.sender.Channel()); err != nil {
			// The claim expires and the batch is sent again under the same
			// key; Resend answers it without delivering twice.
			n.o.Logger.ErrorContext(sctx, "could not record sent notifications", "send_key", b.Key, "count", len(ids), "err", err)
		}
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	n.m.sendErrors.Inc()
	attempts := b.Attempts + 1
	final := isPermanent(err) || attempts >= n.o.SendRetries
	retryIn := min(n.o.RetryDelay<<min(attempts-1, 16), time.Hour)
	if final {
		n.m.gaveUp.Add(float64(len(ids)))
		n.o.Logger.ErrorContext(sctx, "notifications failed for good", "send_key", b.Key, "event_ids", ids, "attempts", attempts, "err", err)
	} else {
		n.o.Logger.WarnContext(sctx, "notification send failed; will retry", "send_key", b.Key, "event_ids", ids,
			"attempts", attempts, "retry_in", retryIn, "err", err)
	}
	if err := n.st.markFailed(ctx, b.Key, err.Error(), final, retryIn); err != nil {
		n.o.Logger.ErrorContext(sctx, "could not record send failure; retried after the claim expires", "send_key", b.Key, "err", err)
	}
}

// retryLoop re-sends pending notifications whose retry time has come,
// including those a crashed process had claimed.
func (n *Notifier) retryLoop(ctx context.Context) {
	t := time.NewTicker(n.o.RetryScan)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for ctx.Err() == nil {
			due, err := n.st.claimDue(ctx, n.o.Concurrency, n.o.ClaimTime)
			if err != nil {
				if ctx.Err() == nil {
					n.o.Logger.WarnContext(ctx, "looking for notifications to retry failed", "err", err)
				}
				break
			}
			if len(due) == 0 {
				break
			}
			n.sendAll(ctx, due)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

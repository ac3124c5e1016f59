package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"pressroom.dev/kit/natskit"
	"pressroom.dev/kit/pg"
	"pressroom.dev/kit/testkit"
	eventsv1 "pressroom.dev/proto/gen/events/v1"
)

func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }

const (
	testKey       = "re_test_key"
	testRecipient = "editors@example.com"
	testFrom      = "pressroom <news@example.com>"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newFakeResend is the shared Resend stand-in; it counts deliveries per
// event through the event_id tag the notifier puts on each e-mail.
func newFakeResend(t *testing.T) *testkit.Resend { return testkit.StartResend(t, testKey) }

func sent(f *testkit.Resend) map[string]int { return f.CountByTag("event_id") }

type env struct {
	dsn  string
	pool *pgxpool.Pool
	nats *testkit.NATSServer
	js   jetstream.JetStream
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvOn(t, testkit.Postgres(t))
}

// newEnvOn is newEnv on the database dsn.
func newEnvOn(t *testing.T, dsn string) *env {
	t.Helper()
	ctx := context.Background()
	pool := openPool(t, dsn)
	if err := pg.Migrate(ctx, pool, Migrations); err != nil {
		t.Fatal(err)
	}
	ns := testkit.StartNATS(t)
	js, err := jetstream.New(connect(t, ns.URL))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, natskit.ArticlesStreamConfig()); err != nil {
		t.Fatal(err)
	}
	return &env{dsn: dsn, pool: pool, nats: ns, js: js}
}

func openPool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pg.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := natskit.Connect(url, t.Name(), quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// testOptions are fast timings so retries happen within a test.
func testOptions() Options {
	return Options{Recipient: testRecipient, From: testFrom, AckWait: 2 * time.Second, MaxDeliver: 3,
		NakBackoff: 100 * time.Millisecond, ClaimTime: 2 * time.Second, RetryDelay: 200 * time.Millisecond,
		RetryScan: 100 * time.Millisecond, SendRetries: 5, Logger: quietLog()}
}

// running is a notifier started by start; stop cancels it abruptly.
type running struct {
	n    *Notifier
	stop func()
}

func (e *env) start(t *testing.T, sender Sender, o Options) *running {
	t.Helper()
	pool := openPool(t, e.dsn)
	nc := connect(t, e.nats.URL)
	n, err := New(pool, nc, sender, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = n.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); nc.Close(); <-done; pool.Close() }) }
	t.Cleanup(stop)
	return &running{n: n, stop: stop}
}

func resend(f *testkit.Resend) *Resend {
	return &Resend{BaseURL: f.URL, APIKey: testKey, Client: f.Client()}
}

// event builds a valid articles.published event.
func event(i int) *eventsv1.ArticleEvent {
	slug := fmt.Sprintf("article-%d", i)
	return &eventsv1.ArticleEvent{SchemaVersion: 1, EventId: uuid.NewString(), Type: SubjectPublished,
		OccurredAt: timestamppb.Now(), ArticleId: uuid.NewString(), Slug: slug, Title: fmt.Sprintf("Article %d", i),
		AuthorId: "u-1", AuthorName: "Ada Author", Url: "https://example.com/articles/" + slug}
}

// publish sends ev with Nats-Msg-Id msgID (defaults to the event id).
func (e *env) publish(t *testing.T, ev *eventsv1.ArticleEvent, msgID string) {
	t.Helper()
	data, err := protojson.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	e.publishRaw(t, SubjectPublished, data, msgID)
}

func (e *env) publishRaw(t *testing.T, subject string, data []byte, msgID string) {
	t.Helper()
	if _, err := e.js.Publish(context.Background(), subject, data, jetstream.WithMsgID(msgID)); err != nil {
		t.Fatal(err)
	}
}

func (e *env) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestEachEventSendsOneEmailEvenWhenRedelivered(t *testing.T) {
	e := newEnv(t)
	f := newFakeResend(t)
	e.start(t, resend(f), testOptions())
	var evs []*eventsv1.ArticleEvent
	for i := range 20 {
		ev := event(i)
		evs = append(evs, ev)
		e.publish(t, ev, ev.EventId)
	}
	// The same events again under new message ids, as a redelivery or a
	// re-publish after the duplicate window would look.
	for _, ev := range evs[:5] {
		e.publish(t, ev, uuid.NewString())
	}
	waitFor(t, 30*time.Second, "20 notifications sent", func() bool {
		return e.count(t, `SELECT count(*) FROM notifications WHERE status = 'sent'`) == 20
	})
	time.Sleep(500 * time.Millisecond) // give any duplicate a chance to show up
	got := sent(f)
	if len(got) != 20 || f.Delivered() != 20 {
		t.Fatalf("fake Resend delivered %d e-mails for %d events, want 20 for 20", f.Delivered(), len(got))
	}
	for _, ev := range evs {
		if got[ev.EventId] != 1 {
			t.Errorf("event %s e-mailed %d times", ev.EventId, got[ev.EventId])
		}
	}
	r := f.Emails()[0]
	if r.Key == "" || r.From != testFrom || len(r.To) != 1 || r.To[0] != testRecipient ||
		!strings.HasPrefix(r.Subject, "New article: Article ") || !strings.Contains(r.Text, "https://example.com/articles/article-") ||
		!strings.Contains(r.HTML, `href="https://example.com/articles/article-`) {
		t.Fatalf("unexpected e-mail request: %+v", r)
	}
	if n := e.count(t, `SELECT count(*) FROM notifications WHERE channel = 'resend' AND provider_id LIKE 'email-%'`); n != 20 {
		t.Fatalf("%d rows carry the provider id, want 20", n)
	}
}

func TestFailedEmailIsRetried(t *testing.T) {
	e := newEnv(t)
	f := newFakeResend(t)
	f.FailNext(3, http.StatusServiceUnavailable)
	e.start(t, resend(f), testOptions())
	ev := event(1)
	e.publish(t, ev, ev.EventId)
	waitFor(t, 30*time.Second, "the notification sent after failures", func() bool {
		return e.count(t, `SELECT count(*) FROM notifications WHERE status = 'sent'`) == 1
	})
	if got := sent(f)[ev.EventId]; got != 1 {
		t.Fatalf("delivered %d times, want 1", got)
	}
	if n := e.count(t, `SELECT attempts FROM notifications`); n != 4 {
		t.Fatalf("attempts = %d, want 4 (3 failures + 1 success)", n)
	}
}

func TestRejectedEmailIsNotRetried(t *testing.T) {
	e := newEnv(t)
	f := newFakeResend(t)
	f.FailNext(100, http.StatusUnprocessableEntity)
	e.start(t, resend(f), testOptions())
	ev := event(1)
	e.publish(t, ev, ev.EventId)
	waitFor(t, 30*time.Second, "the notification marked failed", func() bool {
		return e.count(t, `SELECT count(*) FROM notifications WHERE status = 'failed' AND last_error LIKE '%422%'`) == 1
	})
	time.Sleep(time.Second) // several retry scans
	if n := f.Requests(); n != 1 {
		t.Fatalf("a rejected e-mail was tried %d times, want 1", n)
	}
}

func TestPoisonMessagesAreDeadLettered(t *testing.T) {
	e := newEnv(t)
	f := newFakeResend(t)
	r := e.start(t, resend(f), testOptions())
	e.publishRaw(t, SubjectPublished, []byte("{not json"), "poison-1")
	bad := event(1)
	bad.SchemaVersion = 99
	e.publish(t, bad, bad.EventId)
	good := event(2)
	e.publish(t, good, good.EventId)
	waitFor(t, 30*time.Second, "the good event sent", func() bool { return sent(f)[good.EventId] == 1 })
	waitFor(t, 10*time.Second, "2 dead letters", func() bool { return e.count(t, `SELECT count(*) FROM dead_letters`) == 2 })
	if n := e.count(t, `SELECT count(*) FROM dead_letters WHERE msg_id = 'poison-1' AND error LIKE '%not an events.v1.ArticleEvent%'`); n != 1 {
		t.Fatal("the undecodable message was not recorded with its reason")
	}
	if n := e.count(t, `SELECT count(*) FROM dead_letters WHERE error LIKE '%schema_version 99%'`); n != 1 {
		t.Fatal("the wrong-version event was not recorded with its reason")
	}
	time.Sleep(3 * time.Second) // past AckWait: a poison message must not come back
	cons, err := r.n.js.Consumer(context.Background(), StreamName, DurableName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 0 || info.NumRedelivered != 0 || info.NumPending != 0 {
		t.Fatalf("consumer state pending=%d ack_pending=%d redelivered=%d, want all 0", info.NumPending, info.NumAckPending, info.NumRedelivered)
	}
	if n := e.count(t, `SELECT count(*) FROM dead_letters`); n != 2 {
		t.Fatalf("%d dead letters after waiting, want 2", n)
	}
	if f.Requests() != 1 {
		t.Fatalf("poison messages caused e-mails: %d requests", f.Requests())
	}
}

// TestUnrecordableEventIsRedeliveredThenDeadLettered: an event the database
// keeps refusing is retried MaxDeliver times, then given up and recorded,
// without holding back the events around it.
func TestUnrecordableEventIsRedeliveredThenDeadLettered(t *testing.T) {
	e := newEnv(t)
	f := newFakeResend(t)
	_, err := e.pool.Exec(context.Background(), `
		CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.title = 'refused' THEN RAISE EXCEPTION 'refused by test'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER refuse BEFORE INSERT ON notifications FOR EACH ROW EXECUTE FUNCTION refuse();`)
	if err != nil {
		t.Fatal(err)
	}
	e.start(t, resend(f), testOptions())
	bad := event(0)
	bad.Title = "refused"
	e.publish(t, bad, bad.EventId)
	var good []*eventsv1.ArticleEvent
	for i := 1; i <= 5; i++ {
		ev := event(i)
		good = append(good, ev)
		e.publish(t, ev, ev.EventId)
	}
	waitFor(t, 30*time.Second, "the other events sent", func() bool { return len(sent(f)) == 5 })
	for _, ev := range good {
		if sent(f)[ev.EventId] != 1 {
			t.Errorf("event %s beside the refused one was not e-mailed once", ev.EventId)
		}
	}
	waitFor(t, 30*time.Second, "the refused event dead-lettered", func() bool {
		return e.count(t, `SELECT count(*) FROM dead_letters WHERE error LIKE 'gave up after 3 deliveries%refused by test%' AND deliveries = 3`) == 1
	})
}

// TestConsumerKilledMidBatchAndRestarted: the first consumer is stopped
// abruptly (its NATS connection closed, its pulled messages unacked) while
// e-mails are going out; a second one takes over. Every event is e-mailed,
// and no request reaches Resend twice for the same event.
func TestConsumerKilledMidBatchAndRestarted(t *testing.T) {
	e := newEnv(t)
	f := newFakeResend(t)
	f.SetDelay(100 * time.Millisecond)
	o := testOptions()
	o.BatchSize = 10
	var evs []*eventsv1.ArticleEvent
	for i := range 300 {
		ev := event(i)
		evs = append(evs, ev)
		e.publish(t, ev, ev.EventId)
	}
	first := e.start(t, resend(f), o)
	waitFor(t, 30*time.Second, "the first consumer to be mid-way", func() bool { return f.Delivered() >= 60 })
	first.stop()
	killedAt := f.Delivered()
	if killedAt >= len(evs) {
		t.Fatalf("the first consumer finished all %d events before being killed", killedAt)
	}
	e.start(t, resend(f), o)
	waitFor(t, 60*time.Second, "all 300 notifications sent", func() bool {
		return e.count(t, `SELECT count(*) FROM notifications WHERE status = 'sent'`) == len(evs)
	})
	time.Sleep(3 * time.Second) // past AckWait and ClaimTime: late duplicates would show now
	got := sent(f)
	for _, ev := range evs {
		if got[ev.EventId] != 1 {
			t.Errorf("event %s e-mailed %d times", ev.EventId, got[ev.EventId])
		}
	}
	if n := f.Delivered(); n != len(evs) {
		t.Fatalf("Resend delivered %d e-mails for %d events (killed after %d)", n, len(evs), killedAt)
	}
	t.Logf("first consumer sent %d e-mails before it was killed", killedAt)
}

// TestClaimedButUnsentNotificationIsSentLater: a row recorded by a process
// that died before sending (status pending, claim expired) is sent by the
// retry scan of another.
func TestClaimedButUnsentNotificationIsSentLater(t *testing.T) {
	e := newEnv(t)
	f := newFakeResend(t)
	st := &store{pool: e.pool}
	n := &notification{EventID: uuid.NewString(), EventType: SubjectPublished, ArticleID: "a1", Slug: "s", Title: "Orphan",
		AuthorName: "Ada", URL: "https://example.com/articles/s", Recipient: testRecipient, OccurredAt: time.Now()}
	fresh, err := st.record(context.Background(), []*notification{n}, sendKeys(1), 500*time.Millisecond)
	if err != nil || fresh[n.EventID] == "" {
		t.Fatalf("record: %v %v", fresh, err)
	}
	again, err := st.record(context.Background(), []*notification{n}, sendKeys(1), time.Second)
	if err != nil || len(again) != 0 {
		t.Fatalf("recording the same event twice claimed it again: %v %v", again, err)
	}
	e.start(t, resend(f), testOptions())
	waitFor(t, 20*time.Second, "the orphan sent", func() bool { return sent(f)[n.EventID] == 1 })
}

// TestEventsGoOutInBatches: a backlog is sent MaxBatch e-mails per request,
// each request under its own key, every event once.
func TestEventsGoOutInBatches(t *testing.T) {
	e := newEnv(t)
	f := newFakeResend(t)
	var evs []*eventsv1.ArticleEvent
	for i := range 250 {
		ev := event(i)
		evs = append(evs, ev)
		e.publish(t, ev, ev.EventId)
	}
	o := testOptions()
	o.BatchSize = 250
	e.start(t, resend(f), o)
	waitFor(t, 30*time.Second, "250 notifications sent", func() bool {
		return e.count(t, `SELECT count(*) FROM notifications WHERE status = 'sent'`) == len(evs)
	})
	got := sent(f)
	for _, ev := range evs {
		if got[ev.EventId] != 1 {
			t.Errorf("event %s e-mailed %d times", ev.EventId, got[ev.EventId])
		}
	}
	perKey := map[string]int{}
	for _, m := range f.Emails() {
		if m.BatchSize > MaxBatch {
			t.Fatalf("a request carried %d e-mails (limit %d)", m.BatchSize, MaxBatch)
		}
		perKey[m.Key]++
	}
	if f.Requests() != len(perKey) || f.Requests() > 25 {
		t.Fatalf("%d e-mails in %d requests under %d keys; want one key per request and real batches", f.Delivered(), f.Requests(), len(perKey))
	}
	if n := e.count(t, `SELECT count(*) FROM send_batches WHERE status = 'sent' AND attempts = 1`); n != len(perKey) {
		t.Fatalf("%d send batches recorded sent, want %d", n, len(perKey))
	}
	t.Logf("250 e-mails in %d requests", f.Requests())
}

// TestBatchAcceptedBeforeACrashIsNotDeliveredTwice: Resend accepted a batch
// but the process died before recording it sent. Once its claim lapses the
// retry sends the very same request under the same key, which Resend answers
// without delivering again.
func TestBatchAcceptedBeforeACrashIsNotDeliveredTwice(t *testing.T) {
	e := newEnv(t)
	f := newFakeResend(t)
	st := &store{pool: e.pool}
	var ns []*notification
	for i := range 3 {
		ev := event(i)
		ns = append(ns, &notification{EventID: ev.EventId, EventType: ev.Type, ArticleID: ev.ArticleId, Slug: ev.Slug,
			Title: ev.Title, AuthorName: ev.AuthorName, URL: ev.Url, Recipient: testRecipient, OccurredAt: time.Now()})
	}
	keys := sendKeys(len(ns))
	fresh, err := st.record(context.Background(), ns, keys, 300*time.Millisecond)
	if err != nil || len(fresh) != 3 {
		t.Fatalf("record: %v %v", fresh, err)
	}
	// The dead process's request, built as the notifier builds it.
	slices.SortFunc(ns, func(a, b *notification) int { return strings.Compare(a.EventID, b.EventID) })
	emails := make([]Email, len(ns))
	for i, x := range ns {
		emails[i] = composeEmail(x, testFrom)
	}
	if _, err := resend(f).Send(context.Background(), keys[0], emails); err != nil {
		t.Fatal(err)
	}
	e.start(t, resend(f), testOptions())
	waitFor(t, 20*time.Second, "the batch recorded sent", func() bool {
		return e.count(t, `SELECT count(*) FROM notifications WHERE status = 'sent'`) == 3
	})
	if f.Delivered() != 3 || f.Requests() != 2 {
		t.Fatalf("%d e-mails delivered in %d requests, want 3 in 2 (the retry answered from Resend's memory)", f.Delivered(), f.Requests())
	}
	if n := e.count(t, `SELECT count(*) FROM send_batches WHERE key = $1 AND status = 'sent'`, keys[0]); n != 1 {
		t.Fatal("the send batch is not recorded sent")
	}
}

// TestRowsFromBeforeBatchingAreResentAsBefore: a row recorded by the
// previous version (keyed by its event id, e-mail sent alone, untagged) that
// was delivered but not recorded sent is retried with the identical request.
func TestRowsFromBeforeBatchingAreResentAsBefore(t *testing.T) {
	e := newEnv(t)
	f := newFakeResend(t)
	ev := event(1)
	n := &notification{EventID: ev.EventId, EventType: ev.Type, ArticleID: ev.ArticleId, Slug: ev.Slug, Title: ev.Title,
		AuthorName: ev.AuthorName, URL: ev.Url, Recipient: testRecipient, OccurredAt: time.Now()}
	// What the migration leaves for such a row.
	if _, err := e.pool.Exec(context.Background(), `WITH x AS (
			INSERT INTO notifications (event_id, event_type, article_id, slug, title, author_name, url, recipient, occurred_at, send_key)
			VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $1::text))
		INSERT INTO send_batches (key) VALUES ($1::text)`,
		n.EventID, n.EventType, n.ArticleID, n.Slug, n.Title, n.AuthorName, n.URL, n.Recipient, n.OccurredAt); err != nil {
		t.Fatal(err)
	}
	// The request the previous version sent and Resend accepted.
	m := composeEmail(n, testFrom)
	body, _ := json.Marshal(map[string]any{"from": m.From, "to": m.To, "subject": m.Subject, "text": m.Text, "html": m.HTML})
	req, _ := http.NewRequest(http.MethodPost, f.URL+"/emails", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Idempotency-Key", n.EventID)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the old request: %v %v", resp, err)
	}
	resp.Body.Close()
	e.start(t, resend(f), testOptions())
	waitFor(t, 20*time.Second, "the row recorded sent", func() bool {
		return e.count(t, `SELECT count(*) FROM notifications WHERE status = 'sent'`) == 1
	})
	if f.Delivered() != 1 {
		t.Fatalf("delivered %d times, want once", f.Delivered())
	}
}

func TestLogSenderWritesTheEmail(t *testing.T) {
	e := newEnv(t)
	var buf testkit.LogBuffer
	e.start(t, LogSender{Log: slog.New(slog.NewJSONHandler(&buf, nil))}, testOptions())
	ev := event(7)
	e.publish(t, ev, ev.EventId)
	waitFor(t, 20*time.Second, "the notification logged", func() bool {
		return e.count(t, `SELECT count(*) FROM notifications WHERE status = 'sent' AND channel = 'log'`) == 1
	})
	if out := buf.String(); !strings.Contains(out, "Article 7") || !strings.Contains(out, ev.Url) || !strings.Contains(out, testRecipient) {
		t.Fatalf("log does not show the e-mail: %s", out)
	}
}

func TestOptionsNameWhatIsMissing(t *testing.T) {
	_, err := New(nil, nil, LogSender{}, Options{})
	if err == nil || !strings.Contains(err.Error(), "NOTIFY_EMAIL") || !strings.Contains(err.Error(), "EMAIL_FROM") {
		t.Fatalf("got %v, want both settings named", err)
	}
}

func TestResendClassifiesFailures(t *testing.T) {
	for _, c := range []struct {
		status    int
		permanent bool
	}{{500, false}, {503, false}, {429, false}, {422, true}, {401, true}} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, `{"message":"nope"}`, c.status)
		}))
		_, err := (&Resend{BaseURL: srv.URL, APIKey: "k"}).Send(context.Background(), "x", []Email{{To: []string{"a@example.com"}}})
		srv.Close()
		if err == nil || !strings.Contains(err.Error(), fmt.Sprint(c.status)) {
			t.Fatalf("HTTP %d: got %v, want an error naming the status", c.status, err)
		}
		if got := isPermanent(err); got != c.permanent {
			t.Errorf("HTTP %d: permanent = %v, want %v", c.status, got, c.permanent)
		}
	}
}

// TestConsumerHoldsEventsWhilePostgresIsDown: an outage of notification_db
// longer than the whole redelivery budget (MaxDeliver 3, AckWait 2s) loses
// nothing and dead-letters nothing: the batch waits for the database.
func TestConsumerHoldsEventsWhilePostgresIsDown(t *testing.T) {
	pgs := testkit.StartPostgres(t)
	e := newEnvOn(t, pgs.NewDatabase(t))
	f := newFakeResend(t)
	e.start(t, resend(f), testOptions())
	var evs []*eventsv1.ArticleEvent
	for i := range 10 {
		evs = append(evs, event(i))
	}
	for _, ev := range evs[:5] {
		e.publish(t, ev, ev.EventId)
	}
	waitFor(t, 30*time.Second, "the first 5 e-mails", func() bool { return len(sent(f)) == 5 })
	if err := pgs.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs[5:] {
		e.publish(t, ev, ev.EventId)
	}
	time.Sleep(5 * time.Second) // past AckWait and MaxDeliver × NakBackoff
	if err := pgs.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "all 10 e-mails", func() bool { return len(sent(f)) == 10 })
	for _, ev := range evs {
		if got := sent(f)[ev.EventId]; got != 1 {
			t.Errorf("event %s e-mailed %d times", ev.EventId, got)
		}
	}
	if n := e.count(t, `SELECT count(*) FROM dead_letters`); n != 0 {
		t.Fatalf("%d events dead-lettered during the outage", n)
	}
}

// A title is one line in the subject whatever the author typed: a line break
// there would make Resend refuse the message, and the notification be lost.
func TestSubjectIsOneLine(t *testing.T) {
	n := &notification{Title: "Harbour news\r\nBcc: all@example.com\tand\x00more", AuthorName: "Ada", URL: "https://example.com/a", Recipient: testRecipient}
	m := composeEmail(n, testFrom)
	if want := "New article: Harbour news Bcc: all@example.com and more"; m.Subject != want {
		t.Fatalf("subject %q, want %q", m.Subject, want)
	}
	if !strings.Contains(m.Text, `Harbour news\r\nBcc`) {
		t.Fatalf("the body quotes the title as written, escaped: %q", m.Text)
	}
}

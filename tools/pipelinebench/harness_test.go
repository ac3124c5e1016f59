package pipelinebench_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	articlev1 "pressroom.dev/proto/gen/article/v1"
	"pressroom.dev/proto/gen/article/v1/articlev1connect"

	"pressroom.dev/kit/testkit"
	"pressroom.dev/kit/token"
	"pressroom.dev/tools/devlaunch"
)

func TestMain(m *testing.M) {
	code := testkit.Main(m)
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

const (
	jwtIssuer   = "pressroom-auth"
	jwtAudience = "pressroom"
	apiKey      = "re_pipelinebench"
	recipient   = "editors@example.com"
	// Subject of the e-mail notification sends for a published article.
	subjectPrefix = "New article: "
)

// built holds the two service binaries, compiled once per test binary.
var built struct {
	once sync.Once
	dir  string
	err  error
}

// buildServices compiles services/article and services/notification (plain
// builds, not -race: they are the system under measurement).
func buildServices(tb testing.TB) string {
	tb.Helper()
	built.once.Do(func() {
		root, err := devlaunch.FindRepoRoot()
		if err != nil {
			built.err = err
			return
		}
		if built.dir, err = os.MkdirTemp("", "pipelinebench-bin-"); err != nil {
			built.err = err
			return
		}
		for _, svc := range []string{"article", "notification"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(built.dir, svc), "./services/"+svc)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
			if out, err := cmd.CombinedOutput(); err != nil {
				built.err = fmt.Errorf("go build ./services/%s: %w\n%s", svc, err, out)
				return
			}
		}
	})
	if built.err != nil {
		tb.Fatal(built.err)
	}
	return built.dir
}

func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// tailBuffer keeps the last bytes a child process wrote (for failure reports).
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 64<<10 { // trim seldom: copying on every write costs the benchmark CPU
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-16<<10:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// service is one child process, stopped by its own PID.
type service struct {
	name string
	url  string
	cmd  *exec.Cmd
	log  *tailBuffer
	done chan struct{}
	err  error
}

func (s *service) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// startService runs bin with exactly env (plus PATH/HOME), listening on a
// free 127.0.0.1 port, and waits for its /readyz. The test's cleanup sends
// it SIGTERM and fails the test if it does not shut down cleanly.
func startService(tb testing.TB, name, bin string, env map[string]string) *service {
	tb.Helper()
	addr := freeAddr(tb)
	vars := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TZ=UTC",
		"HTTP_ADDR=" + addr, "LOG_LEVEL=warn", "SHUTDOWN_TIMEOUT=5s"}
	for k, v := range env {
		vars = append(vars, k+"="+v)
	}
	s := &service{name: name, url: "http://" + addr, log: &tailBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(bin)
	s.cmd.Env = vars
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	// Own process group (a Ctrl-C reaches only the test) and killed if the test binary dies.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	go func() { s.err = s.cmd.Wait(); close(s.done) }()
	tb.Cleanup(func() { s.stop(tb) })
	deadline := time.Now().Add(60 * time.Second)
	last := ""
	for {
		resp, err := http.Get(s.url + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
			last = fmt.Sprintf("HTTP %d %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		if s.exited() {
			tb.Fatalf("%s exited during start-up (%v); its log:\n%s", name, s.err, s.log)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s not ready at %s/readyz after 60s: %s; its log:\n%s", name, s.url, last, s.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *service) stop(tb testing.TB) {
	if s.exited() {
		tb.Errorf("%s had exited before the test stopped it (%v); its log:\n%s", s.name, s.err, s.log)
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		if s.err != nil {
			tb.Errorf("%s: unclean exit after SIGTERM (%v); its log:\n%s", s.name, s.err, s.log)
		}
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		tb.Errorf("%s did not stop within 20s of SIGTERM; killed (pid %d)", s.name, s.cmd.Process.Pid)
	}
}

// mailbox is the Resend stand-in notification e-mails in this harness; it
// records when each e-mail arrives.
type mailbox struct {
	*testkit.Resend
	mu      sync.Mutex
	arrived map[string][]time.Time // title → arrival of each delivery
	events  map[string]int         // event_id tag → deliveries
	bad     []string               // e-mails that do not look like notification's
	total   int
	titles  int // distinct titles arrived: lets wait skip a full scan per e-mail
	signal  chan struct{}
}

func newMailbox(tb testing.TB) *mailbox {
	m := &mailbox{Resend: testkit.StartResend(tb, apiKey), arrived: map[string][]time.Time{}, events: map[string]int{},
		signal: make(chan struct{}, 1)}
	m.OnEmail(m.record)
	return m
}

func (m *mailbox) record(e testkit.ResendEmail) {
	problem := ""
	switch {
	case len(e.To) != 1 || e.To[0] != recipient || !strings.HasPrefix(e.Subject, subjectPrefix):
		problem = fmt.Sprintf("to %v subject %q", e.To, e.Subject)
	case e.Key == "":
		problem = "no Idempotency-Key"
	case e.Tag("event_id") == "":
		problem = "no event_id tag"
	}
	m.mu.Lock()
	m.total++
	if problem != "" {
		m.bad = append(m.bad, problem)
	} else {
		title := strings.TrimPrefix(e.Subject, subjectPrefix)
		if len(m.arrived[title]) == 0 {
			m.titles++
		}
		m.arrived[title] = append(m.arrived[title], e.At)
		m.events[e.Tag("event_id")]++
	}
	m.mu.Unlock()
	select {
	case m.signal <- struct{}{}:
	default:
	}
}

// firstArrivals returns the first arrival per title and how many of titles
// have arrived.
func (m *mailbox) firstArrivals(titles []string) ([]time.Time, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]time.Time, len(titles))
	n := 0
	for i, t := range titles {
		if a := m.arrived[t]; len(a) > 0 {
			out[i] = a[0]
			n++
		}
	}
	return out, n
}

// wait blocks until an e-mail for every title has arrived.
func (m *mailbox) wait(tb testing.TB, titles []string, timeout time.Duration) []time.Time {
	tb.Helper()
	deadline := time.After(timeout)
	for {
		m.mu.Lock()
		enough := m.titles >= len(titles)
		m.mu.Unlock()
		if enough { // scanning every title per arriving e-mail would cost the benchmark a core
			if at, n := m.firstArrivals(titles); n == len(titles) {
				return at
			}
		}
		select {
		case <-m.signal:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			_, n := m.firstArrivals(titles)
			m.mu.Lock()
			bad := m.bad
			m.mu.Unlock()
			tb.Fatalf("only %d of %d e-mails arrived after %s (bad requests: %q)", n, len(titles), timeout, bad)
		}
	}
}

// pipeline is a running article + notification pair on their own datastores.
type pipeline struct {
	*stores
	article      *service
	notification *service
	client       articlev1connect.ArticleServiceClient
}

// stores are one run's datastores, keys and Resend stand-in. Each run gets
// its own NATS server and databases: a fresh notification_db must not meet
// events of an earlier run still in the stream.
type stores struct {
	bin            string
	nats           *testkit.NATSServer
	articleDB      string
	notificationDB string
	keys           testkit.KeyFiles
	token          string // an author's access token
	mail           *mailbox
	resendURL      string
}

func newStores(tb testing.TB) *stores {
	tb.Helper()
	s := &stores{bin: buildServices(tb), nats: testkit.StartNATS(tb), keys: testkit.JWTKeys(tb), mail: newMailbox(tb)}
	pg := testkit.PostgresServer(tb)
	// Sized for the database's two cores, not for the 16 callers: more
	// connections than cores make Postgres switch between them instead of
	// working. Production sets pool_max_conns in DATABASE_URL the same way.
	s.articleDB = pg.NewDatabase(tb) + "&pool_max_conns=6"
	s.notificationDB = pg.NewDatabase(tb)
	var err error
	s.token, err = token.NewSigner(s.keys.Private, jwtIssuer, []string{jwtAudience}, time.Hour).
		Sign("00000000-0000-4000-8000-0000000000b1", "bench@example.com", "Bench Author", []string{"author"})
	if err != nil {
		tb.Fatal(err)
	}
	s.resendURL = s.mail.URL
	return s
}

// startNotification runs notification with the settings its page documents
// (services/notification/README.md), e-mailing through the Resend stand-in.
func (s *stores) startNotification(tb testing.TB) *service {
	return startService(tb, "notification", filepath.Join(s.bin, "notification"), map[string]string{
		"DATABASE_URL": s.notificationDB, "NATS_URL": s.nats.URL,
		"RESEND_API_KEY": apiKey, "RESEND_BASE_URL": s.resendURL,
		"EMAIL_FROM": "pressroom <news@example.com>", "NOTIFY_EMAIL": recipient,
	})
}

// startArticle runs article with the settings services/article/README.md documents.
func (s *stores) startArticle(tb testing.TB) *service {
	return startService(tb, "article", filepath.Join(s.bin, "article"), map[string]string{
		"DATABASE_URL": s.articleDB, "NATS_URL": s.nats.URL,
		"JWT_PUBLIC_KEY_PATH": s.keys.PublicPath, "JWT_ISSUER": jwtIssuer, "JWT_AUDIENCE": jwtAudience,
	})
}

func startPipeline(tb testing.TB) *pipeline {
	tb.Helper()
	p := &pipeline{stores: newStores(tb)}
	p.notification = p.startNotification(tb)
	p.article = p.startArticle(tb)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 64, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}}
	tb.Cleanup(hc.CloseIdleConnections)
	p.client = articlev1connect.NewArticleServiceClient(hc, p.article.url)
	return p
}

func authed[T any](msg *T, tok string) *connect.Request[T] {
	r := connect.NewRequest(msg)
	r.Header().Set("Authorization", "Bearer "+tok)
	return r
}

// parallel runs f(i) for i in [0,n) from workers goroutines; the first error fails tb.
func parallel(tb testing.TB, n, workers int, f func(i int) error) {
	tb.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				if err := f(int(i)); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n)) // stop the others
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		tb.Fatal(first)
	}
}

// drafts creates n draft articles with distinct titles (the e-mail subject
// names the title, which is how an arrival is matched to its publish).
func (p *pipeline) drafts(tb testing.TB, n int, run string) (ids, titles []string) {
	tb.Helper()
	ids, titles = make([]string, n), make([]string, n)
	parallel(tb, n, 8, func(i int) error {
		titles[i] = fmt.Sprintf("Pipeline %s #%d", run, i)
		res, err := p.client.CreateArticle(context.Background(), authed(&articlev1.CreateArticleRequest{
			Title: titles[i], Summary: "pipeline benchmark", BodyMarkdown: "A short *body*."}, p.token))
		if err != nil {
			return fmt.Errorf("CreateArticle %d: %w", i, err)
		}
		ids[i] = res.Msg.GetArticle().GetId()
		return nil
	})
	return ids, titles
}

// publishAll publishes every draft from 16 concurrent callers and returns
// when each PublishArticle call was sent.
func (p *pipeline) publishAll(tb testing.TB, ids []string) []time.Time {
	tb.Helper()
	sent := make([]time.Time, len(ids))
	parallel(tb, len(ids), 16, func(i int) error {
		sent[i] = time.Now()
		res, err := p.client.PublishArticle(context.Background(), authed(&articlev1.PublishArticleRequest{Id: ids[i]}, p.token))
		if err != nil {
			return fmt.Errorf("PublishArticle %d: %w", i, err)
		}
		if st := res.Msg.GetArticle().GetStatus(); st != articlev1.ArticleStatus_ARTICLE_STATUS_PUBLISHED {
			return fmt.Errorf("PublishArticle %d: status %v, want published", i, st)
		}
		return nil
	})
	return sent
}

// publishPaced publishes the drafts at a steady rate per second, each call
// started on schedule whatever the others' latency (no coordinated
// omission), and returns each call's scheduled time.
func (p *pipeline) publishPaced(tb testing.TB, ids []string, rate int) []time.Time {
	tb.Helper()
	sent := make([]time.Time, len(ids))
	errs := make(chan error, len(ids))
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i, id := range ids {
		sent[i] = start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(sent[i]))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := p.client.PublishArticle(context.Background(), authed(&articlev1.PublishArticleRequest{Id: id}, p.token)); err != nil {
				errs <- fmt.Errorf("PublishArticle %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		tb.Fatal(err)
	}
	return sent
}

// percentile is the nearest-rank q-quantile of sorted ds, in milliseconds.
func percentile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*q+0.999999) - 1
	i = max(0, min(i, len(sorted)-1))
	return float64(sorted[i].Microseconds()) / 1000
}

func latencies(sent, arrived []time.Time) []time.Duration {
	ds := make([]time.Duration, len(sent))
	for i := range sent {
		ds[i] = arrived[i].Sub(sent[i])
	}
	sort.Slice(ds, func(a, b int) bool { return ds[a] < ds[b] })
	return ds
}

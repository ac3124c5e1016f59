package testkit

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Resend stands in for Resend's HTTP API as the notification service uses
// it: POST /emails (one e-mail) and POST /emails/batch (up to 100, all or
// none). Like Resend it answers a repeated Idempotency-Key with its first
// answer and delivers nothing new, and refuses the same key with a
// different body (409). Every delivered e-mail is recorded.
type Resend struct {
	*httptest.Server
	apiKey string

	mu       sync.Mutex
	emails   []ResendEmail
	requests int
	answers  map[string]answer // by Idempotency-Key
	failNext int
	failWith int
	delay    time.Duration
	onEmail  func(ResendEmail)
}

// ResendEmail is one delivered e-mail and the request that carried it.
type ResendEmail struct {
	Key       string // the request's Idempotency-Key
	BatchSize int    // e-mails in that request
	At        time.Time
	From      string            `json:"from"`
	To        []string          `json:"to"`
	Subject   string            `json:"subject"`
	Text      string            `json:"text"`
	HTML      string            `json:"html"`
	Tags      []ResendTag       `json:"tags"`
	Headers   map[string]string `json:"headers"`
}

// ResendTag is a Resend e-mail tag.
type ResendTag struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Tag returns the value of the tag name ("" if absent).
func (e ResendEmail) Tag(name string) string {
	for _, t := range e.Tags {
		if t.Name == name {
			return t.Value
		}
	}
	return ""
}

type answer struct {
	bodySum [32]byte
	body    []byte
}

// ResendMaxBatch is Resend's limit of e-mails per batch request.
const ResendMaxBatch = 100

// StartResend serves the stand-in on loopback until the test ends; requests
// must carry "Authorization: Bearer <apiKey>".
func StartResend(tb testing.TB, apiKey string) *Resend {
	tb.Helper()
	r := &Resend{apiKey: apiKey, answers: map[string]answer{}, failWith: http.StatusServiceUnavailable}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	tb.Cleanup(r.Close)
	return r
}

// FailNext answers the next n requests with status (e.g. 503, 429 or 422)
// before anything is delivered.
func (r *Resend) FailNext(n, status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failNext, r.failWith = n, status
}

// SetDelay holds every request this long before answering.
func (r *Resend) SetDelay(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delay = d
}

// OnEmail is called (outside the stand-in's lock) for each delivered e-mail.
func (r *Resend) OnEmail(f func(ResendEmail)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onEmail = f
}

// Emails returns the delivered e-mails in arrival order.
func (r *Resend) Emails() []ResendEmail {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]ResendEmail(nil), r.emails...)
}

// Delivered is how many e-mails were delivered.
func (r *Resend) Delivered() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.emails)
}

// Requests is how many requests arrived, refused and repeated ones included.
func (r *Resend) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// CountByTag counts delivered e-mails per value of the tag name.
func (r *Resend) CountByTag(name string) map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for _, e := range r.emails {
		out[e.Tag(name)]++
	}
	return out
}

func (r *Resend) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	r.mu.Lock()
	r.requests++
	delay := r.delay
	r.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	fail := func(status int, format string, args ...any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		msg, _ := json.Marshal(fmt.Sprintf(format, args...))
		fmt.Fprintf(w, `{"statusCode":%d,"name":"error","message":%s}`, status, msg)
	}
	batch := req.URL.Path == "/emails/batch"
	switch {
	case req.Method != http.MethodPost || (req.URL.Path != "/emails" && !batch):
		fail(http.StatusNotFound, "no route %s %s", req.Method, req.URL.Path)
		return
	case req.Header.Get("Authorization") != "Bearer "+r.apiKey:
		fail(http.StatusUnauthorized, "API key is invalid")
		return
	case err != nil:
		fail(http.StatusBadRequest, "body: %v", err)
		return
	}
	var emails []ResendEmail
	if batch {
		err = json.Unmarshal(body, &emails)
	} else {
		emails = make([]ResendEmail, 1)
		err = json.Unmarshal(body, &emails[0])
	}
	switch {
	case err != nil:
		fail(http.StatusUnprocessableEntity, "body is not %s: %v", map[bool]string{true: "a JSON array of e-mails", false: "a JSON e-mail"}[batch], err)
		return
	case len(emails) == 0 || len(emails) > ResendMaxBatch:
		fail(http.StatusUnprocessableEntity, "a batch holds 1 to %d e-mails, not %d", ResendMaxBatch, len(emails))
		return
	}
	for i, e := range emails {
		if e.From == "" || len(e.To) == 0 || e.Subject == "" {
			fail(http.StatusUnprocessableEntity, "e-mail %d: from, to and subject are required", i)
			return
		}
	}

	key := req.Header.Get("Idempotency-Key")
	sum := sha256.Sum256(append([]byte(req.URL.Path+"\n"), body...))
	r.mu.Lock()
	if a, seen := r.answers[key]; key != "" && seen {
		r.mu.Unlock()
		if a.bodySum != sum {
			fail(http.StatusConflict, "Idempotency-Key %q was already used with a different request", key)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(a.body)
		return
	}
	if r.failNext > 0 {
		r.failNext--
		status := r.failWith
		r.mu.Unlock()
		fail(status, "refused as the test asked")
		return
	}
	now := time.Now()
	ids := make([]string, len(emails))
	for i := range emails {
		emails[i].Key, emails[i].BatchSize, emails[i].At = key, len(emails), now
		ids[i] = fmt.Sprintf("email-%d", len(r.emails)+i+1)
	}
	r.emails = append(r.emails, emails...)
	var out bytes.Buffer
	if batch {
		out.WriteString(`{"data":[`)
		for i, id := range ids {
			if i > 0 {
				out.WriteByte(',')
			}
			fmt.Fprintf(&out, `{"id":%q}`, id)
		}
		out.WriteString(`]}`)
	} else {
		fmt.Fprintf(&out, `{"id":%q}`, ids[0])
	}
	if key != "" {
		r.answers[key] = answer{bodySum: sum, body: out.Bytes()}
	}
	onEmail := r.onEmail
	r.mu.Unlock()
	if onEmail != nil {
		for _, e := range emails {
			onEmail(e)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out.Bytes())
}

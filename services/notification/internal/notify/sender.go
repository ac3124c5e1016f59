package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode"
)

// Email is one message to send.
type Email struct {
	EventID string // tagged on the e-mail (Resend tag event_id), to find it from the event
	From    string
	To      []string
	Subject string
	Text    string
	HTML    string
}

// MaxBatch is the most e-mails one request carries (Resend's batch limit).
const MaxBatch = 100

// Sender delivers e-mail. Errors wrapping ErrPermanent are not retried.
type Sender interface {
	// Send delivers 1 to MaxBatch e-mails in one request, all or none, and
	// returns the provider's id of each. key names the request: repeating a
	// key with the same e-mails must not deliver them again (Resend keeps
	// Idempotency-Keys for 24 hours), which covers a crash between the
	// provider's accept and our "sent" commit.
	Send(ctx context.Context, key string, es []Email) (providerIDs []string, err error)
	Channel() string
}

// ErrPermanent marks a failure retrying cannot fix (e.g. a rejected address).
var ErrPermanent = errors.New("permanent failure")

// Resend sends through Resend's HTTP API: POST {BaseURL}/emails for one
// e-mail, POST {BaseURL}/emails/batch for more (validated all or none).
// Batching matters beyond speed: Resend's default rate limit is a few
// requests per second, and a batch carries up to MaxBatch e-mails.
type Resend struct {
	BaseURL string // https://api.resend.com
	APIKey  string
	Client  *http.Client
}

func (r *Resend) Channel() string { return "resend" }

type resendEmail struct {
	From    string      `json:"from"`
	To      []string    `json:"to"`
	Subject string      `json:"subject"`
	Text    string      `json:"text"`
	HTML    string      `json:"html"`
	Tags    []resendTag `json:"tags,omitempty"`
}

type resendTag struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

func (r *Resend) Send(ctx context.Context, key string, es []Email) ([]string, error) {
	if len(es) == 0 || len(es) > MaxBatch {
		return nil, fmt.Errorf("%w: resend: %d e-mails in one request (1 to %d)", ErrPermanent, len(es), MaxBatch)
	}
	msgs := make([]resendEmail, len(es))
	for i, e := range es {
		msgs[i] = resendEmail{From: e.From, To: e.To, Subject: e.Subject, Text: e.Text, HTML: e.HTML}
		if e.EventID != "" {
			msgs[i].Tags = []resendTag{{Name: "event_id", Value: e.EventID}}
		}
	}
	path, payload := "/emails", any(msgs[0])
	switch e := es[0]; {
	case len(msgs) > 1:
		path, payload = "/emails/batch", msgs
	case key == e.EventID:
		// Recorded before batching (its key is its event id): resent as the
		// request first sent then, or Resend would refuse the key.
		payload = map[string]any{"from": e.From, "to": e.To, "subject": e.Subject, "text": e.Text, "html": e.HTML}
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(r.BaseURL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("resend: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+r.APIKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	c := r.Client
	if c == nil {
		c = &http.Client{Timeout: 15 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("resend: %w", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		err := fmt.Errorf("resend: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(raw)))
		// 429 and 5xx are worth retrying; other 4xx mean the request itself is wrong.
		if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode < 500 {
			err = fmt.Errorf("%w: %w", ErrPermanent, err)
		}
		return nil, err
	}
	ids := make([]string, len(es))
	if len(es) == 1 {
		var out struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(raw, &out)
		ids[0] = out.ID
		return ids, nil
	}
	// The e-mails are accepted whatever the body says; ids are only a record.
	var out struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	_ = json.Unmarshal(raw, &out)
	for i := range min(len(ids), len(out.Data)) {
		ids[i] = out.Data[i].ID
	}
	return ids, nil
}

// LogSender writes the e-mails it would send to the log (no RESEND_API_KEY).
type LogSender struct{ Log *slog.Logger }

func (l LogSender) Channel() string { return "log" }

func (l LogSender) Send(ctx context.Context, key string, es []Email) ([]string, error) {
	for _, e := range es {
		l.Log.InfoContext(ctx, "e-mail not sent (RESEND_API_KEY unset); it would be",
			"from", e.From, "to", e.To, "subject", e.Subject, "text", e.Text, "event_id", e.EventID, "request_key", key)
	}
	return make([]string, len(es)), nil
}

// composeEmail writes the notification for a published article.
func composeEmail(n *notification, from string) Email {
	by := ""
	if n.AuthorName != "" {
		by = " by " + n.AuthorName
	}
	return Email{
		EventID: n.EventID,
		From:    from,
		To:      []string{n.Recipient},
		Subject: "New article: " + oneLine(n.Title),
		Text:    fmt.Sprintf("%q%s was just published.\n\nRead it: %s\n", n.Title, by, n.URL),
		HTML: fmt.Sprintf(`<p>&ldquo;%s&rdquo;%s was just published.</p><p><a href="%s">Read it</a></p>`,
			html.EscapeString(n.Title), html.EscapeString(by), html.EscapeString(n.URL)),
	}
}

// oneLine folds line breaks and other control characters into single
// spaces: a subject is one header line, and a title with a line break in it
// would make the provider refuse the message (or, with a careless one, start
// a new header).
func oneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }), " ")
}

func isPermanent(err error) bool { return errors.Is(err, ErrPermanent) }

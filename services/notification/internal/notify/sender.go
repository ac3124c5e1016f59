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
)

// Email is one message to send.
type Email struct {
	// IdempotencyKey is the event id: Resend drops a repeat of the same key,
	// which covers a crash between its accept and our "sent" commit.
	IdempotencyKey string
	From           string
	To             []string
	Subject        string
	Text           string
	HTML           string
}

// Sender delivers e-mail. Errors wrapping ErrPermanent are not retried.
type Sender interface {
	Send(ctx context.Context, e Email) (providerID string, err error)
	Channel() string
}

// ErrPermanent marks a failure retrying cannot fix (e.g. a rejected address).
var ErrPermanent = errors.New("permanent failure")

// Resend sends through Resend's HTTP API (POST {BaseURL}/emails).
type Resend struct {
	BaseURL string // https://api.resend.com
	APIKey  string
	Client  *http.Client
}

func (r *Resend) Channel() string { return "resend" }

func (r *Resend) Send(ctx context.Context, e Email) (string, error) {
	body, err := json.Marshal(map[string]any{
		"from": e.From, "to": e.To, "subject": e.Subject, "text": e.Text, "html": e.HTML,
	})
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(r.BaseURL, "/")+"/emails", bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("resend: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+r.APIKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", e.IdempotencyKey)
	c := r.Client
	if c == nil {
		c = &http.Client{Timeout: 15 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("resend: %w", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		err := fmt.Errorf("resend: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(raw)))
		// 429 and 5xx are worth retrying; other 4xx mean the request itself is wrong.
		if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode < 500 {
			err = fmt.Errorf("%w: %w", ErrPermanent, err)
		}
		return "", err
	}
	var out struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(raw, &out)
	return out.ID, nil
}

// LogSender writes the e-mail it would send to the log (no RESEND_API_KEY).
type LogSender struct{ Log *slog.Logger }

func (l LogSender) Channel() string { return "log" }

func (l LogSender) Send(ctx context.Context, e Email) (string, error) {
	l.Log.InfoContext(ctx, "e-mail not sent (RESEND_API_KEY unset); it would be",
		"from", e.From, "to", e.To, "subject", e.Subject, "text", e.Text, "idempotency_key", e.IdempotencyKey)
	return "", nil
}

// composeEmail writes the notification for a published article.
func composeEmail(n *notification, from string) Email {
	by := ""
	if n.AuthorName != "" {
		by = " by " + n.AuthorName
	}
	return Email{
		IdempotencyKey: n.EventID,
		From:           from,
		To:             []string{n.Recipient},
		Subject:        "New article: " + n.Title,
		Text:           fmt.Sprintf("%q%s was just published.\n\nRead it: %s\n", n.Title, by, n.URL),
		HTML: fmt.Sprintf(`<p>&ldquo;%s&rdquo;%s was just published.</p><p><a href="%s">Read it</a></p>`,
			html.EscapeString(n.Title), html.EscapeString(by), html.EscapeString(n.URL)),
	}
}

func isPermanent(err error) bool { return errors.Is(err, ErrPermanent) }

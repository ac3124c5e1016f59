package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// MediaItem is one file in the media library, as the media service lists it.
type MediaItem struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"` // content-addressed file name under /media/
	Filename    string    `json:"filename,omitempty"`
	URL         string    `json:"url"`
	ContentType string    `json:"content_type"`
	Size        int64     `json:"size"`
	Width       int       `json:"width"`
	Height      int       `json:"height"`
	UploaderID  string    `json:"uploader_id"`
	CreatedAt   time.Time `json:"created_at"`
}

// IsImage reports whether the item can be shown as a picture (and picked as a cover).
func (m MediaItem) IsImage() bool { return strings.HasPrefix(m.ContentType, "image/") }

// MediaError is a refusal from the media service, with its message for the page.
type MediaError struct {
	Status     int
	Message    string
	RetryAfter int // seconds, from a 429's Retry-After
}

func (e *MediaError) Error() string { return fmt.Sprintf("media: %d %s", e.Status, e.Message) }

// MediaClient talks to the media service's HTTP API with the user's token.
type MediaClient struct {
	base string
	hc   *http.Client
}

func NewMediaClient(base string, hc *http.Client) *MediaClient {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &MediaClient{base: strings.TrimRight(base, "/"), hc: hc}
}

// List returns the caller's library, newest first.
func (c *MediaClient) List(ctx context.Context, tok string) ([]MediaItem, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/media/api/items", nil)
	if err != nil {
		return nil, err
	}
	var out struct {
		Items []MediaItem `json:"items"`
	}
	if err := c.do(req, tok, &out); err != nil {
		return nil, err
	}
	for i := range out.Items {
		it := &out.Items[i]
		if it.Filename == "" {
			it.Filename = it.Name
		}
		if it.URL == "" && it.Name != "" {
			it.URL = "/media/" + url.PathEscape(it.Name)
		}
	}
	return out.Items, nil
}

// Upload streams one file to the media service.
func (c *MediaClient) Upload(ctx context.Context, tok, filename, contentType string, body io.Reader) (MediaItem, error) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		h := make(map[string][]string)
		h["Content-Disposition"] = []string{fmt.Sprintf(`form-data; name="file"; filename=%q`, filename)}
		if contentType == "" {
			contentType = "application/octet-stream"
		}
		h["Content-Type"] = []string{contentType}
		part, err := mw.CreatePart(h)
		if err == nil {
			_, err = io.Copy(part, body)
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/media/upload", pr)
	if err != nil {
		pr.Close()
		return MediaItem{}, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	var item MediaItem
	err = c.do(req, tok, &item)
	pr.Close()
	return item, err
}

// Delete removes one item.
func (c *MediaClient) Delete(ctx context.Context, tok, id string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, c.base+"/media/api/items/"+url.PathEscape(id), nil)
	if err != nil {
		return err
	}
	return c.do(req, tok, nil)
}

func (c *MediaClient) do(req *http.Request, tok string, out any) error {
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("media service unreachable: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("media service: read response: %w", err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error   string `json:"error"`
			Message string `json:"message"`
		}
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil {
			if e.Message != "" {
				msg = e.Message
			} else if e.Error != "" {
				msg = e.Error
			}
		}
		if len(msg) > 300 || msg == "" {
			msg = http.StatusText(resp.StatusCode)
		}
		ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return &MediaError{Status: resp.StatusCode, Message: msg, RetryAfter: ra}
	}
	if out == nil || len(body) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return errors.New("media service: unexpected response")
	}
	return nil
}

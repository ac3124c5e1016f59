package testkit

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestResendStandInBehavesLikeResend(t *testing.T) {
	r := StartResend(t, "re_test")
	post := func(path, key, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, r.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer re_test")
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	one := `{"from":"a@example.com","to":["b@example.com"],"subject":"One","tags":[{"name":"event_id","value":"e1"}]}`
	two := `[{"from":"a@example.com","to":["b@example.com"],"subject":"Two","tags":[{"name":"event_id","value":"e2"}]},` +
		`{"from":"a@example.com","to":["b@example.com"],"subject":"Three","tags":[{"name":"event_id","value":"e3"}]}]`

	if code, body := post("/emails", "k1", one); code != 200 || body != `{"id":"email-1"}` {
		t.Fatalf("single send: %d %s", code, body)
	}
	if code, body := post("/emails/batch", "k2", two); code != 200 || body != `{"data":[{"id":"email-2"},{"id":"email-3"}]}` {
		t.Fatalf("batch send: %d %s", code, body)
	}
	// A repeat under the same key is answered the same and delivers nothing.
	if code, body := post("/emails/batch", "k2", two); code != 200 || body != `{"data":[{"id":"email-2"},{"id":"email-3"}]}` {
		t.Fatalf("repeated batch: %d %s", code, body)
	}
	if code, _ := post("/emails", "k2", one); code != http.StatusConflict {
		t.Fatalf("same key, different request: %d, want 409", code)
	}
	r.FailNext(1, http.StatusTooManyRequests)
	if code, _ := post("/emails", "k3", one); code != http.StatusTooManyRequests {
		t.Fatalf("injected failure: %d, want 429", code)
	}
	if code, _ := post("/emails", "k3", one); code != 200 {
		t.Fatalf("after the failure: %d", code)
	}
	for body, want := range map[string]int{`[]`: 422, `{"to":["b@example.com"]}`: 422, `not json`: 422} {
		path := "/emails"
		if strings.HasPrefix(body, "[") {
			path = "/emails/batch"
		}
		if code, _ := post(path, "", body); code != want {
			t.Errorf("POST %s %s: %d, want %d", path, body, code, want)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, r.URL+"/emails", strings.NewReader(one))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no API key: %v %v", resp.StatusCode, err)
	}

	if got := r.CountByTag("event_id"); len(got) != 3 || got["e1"] != 2 || got["e2"] != 1 || got["e3"] != 1 {
		t.Fatalf("delivered per event: %v (e1 twice: under k1 and k3)", got)
	}
	if r.Delivered() != 4 || r.Requests() != 10 {
		t.Fatalf("delivered %d in %d requests, want 4 in 10", r.Delivered(), r.Requests())
	}
	if e := r.Emails()[1]; e.Key != "k2" || e.BatchSize != 2 || e.Subject != "Two" {
		t.Fatalf("recorded e-mail: %+v", e)
	}
}

package article

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	articlev1 "pressroom.dev/proto/gen/article/v1"
)

// hostileStrings are values a caller may put in any string field: NUL bytes,
// ids in spellings Postgres does not read, and made-up page tokens.
func hostileStrings() []string {
	tok := func(v string) string { return base64.RawURLEncoding.EncodeToString([]byte(v)) }
	return []string{
		"\x00", "a\x00b", "not-a-uuid", "urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8",
		"{6ba7b810-9dad-11d1-80b4-00c04fd430c8}", "6ba7b8109dad11d180b400c04fd430c8",
		"6ba7b810-9dad-11d1-80b4-00c04fd430c\x00", strings.Repeat("x", 5000),
		tok(`{"t":"2026-01-01T00:00:00Z","i":"x"}`),
		tok(`{"t":"2026-01-01T00:00:00Z","i":"urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8"}`),
		tok(`{"t":"2026-01-01T00:00:00Z","i":"6ba7b810-9dad-11d1-80b4-00c04fd430c\u0000"}`),
		tok(`{"t":"0000-01-01T00:00:00Z","i":"6ba7b810-9dad-11d1-80b4-00c04fd430c8"}`),
		tok(`{"t":"9999-12-31T23:59:59Z","i":"6ba7b810-9dad-11d1-80b4-00c04fd430c8"}`),
	}
}

// TestEveryProcedureRefusesHostileInputAsTheCallersFault walks every
// procedure of ArticleService (from its descriptor, so a new one is walked
// too) as an admin and as anonymous, putting each hostile value in each
// string field in turn. Bad input is the caller's (InvalidArgument,
// NotFound …), never an internal error from the database.
func TestEveryProcedureRefusesHostileInputAsTheCallersFault(t *testing.T) {
	e := newEnv(t)
	created, err := e.client.CreateArticle(context.Background(), req(t, e, admin, &articlev1.CreateArticleRequest{Title: "Target"}))
	if err != nil {
		t.Fatal(err)
	}
	id := created.Msg.GetArticle().GetId()
	svc := articlev1.File_article_v1_article_proto.Services().ByName("ArticleService")
	if svc == nil || svc.Methods().Len() == 0 {
		t.Fatal("no ArticleService in the descriptor")
	}
	calls := 0
	for i := range svc.Methods().Len() {
		m := svc.Methods().Get(i)
		procedure := "/" + string(svc.FullName()) + "/" + string(m.Name())
		fields := m.Input().Fields()
		for j := range fields.Len() {
			f := fields.Get(j)
			if f.Kind() != protoreflect.StringKind || f.IsList() || f.IsMap() {
				continue
			}
			for _, v := range hostileStrings() {
				msg := dynamicpb.NewMessage(m.Input())
				// A real id in the other fields takes the call past the id check.
				if idf := fields.ByName("id"); idf != nil && idf != f && idf.ContainingOneof() == nil {
					msg.Set(idf, protoreflect.ValueOfString(id))
				}
				msg.Set(f, protoreflect.ValueOfString(v))
				for _, c := range []caller{admin, anonymous} {
					calls++
					code, body := callJSON(t, e, c, procedure, msg)
					if code == connect.CodeInternal || code == connect.CodeUnknown {
						t.Errorf("%s %s=%q as %s: %s %s", m.Name(), f.Name(), trim(v), c.name, code, body)
					}
				}
			}
		}
	}
	if calls < 100 {
		t.Fatalf("only %d calls: the walk missed the procedures", calls)
	}
}

func trim(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// callJSON sends msg with the Connect protocol's JSON encoding (what any
// HTTP client can send) and returns the error code ("" on success).
func callJSON(t *testing.T, e *env, c caller, procedure string, msg *dynamicpb.Message) (connect.Code, string) {
	t.Helper()
	body, err := protojson.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	r := req(t, e, c, &articlev1.GetArticleRequest{}) // for its Authorization header
	hr, err := http.NewRequest(http.MethodPost, e.url+procedure, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	hr.Header.Set("Content-Type", "application/json")
	if a := r.Header().Get("Authorization"); a != "" {
		hr.Header.Set("Authorization", a)
	}
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		return 0, ""
	}
	var ce struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(b, &ce)
	var code connect.Code
	if err := code.UnmarshalText([]byte(ce.Code)); err != nil {
		return connect.CodeUnknown, string(b)
	}
	return code, string(b)
}

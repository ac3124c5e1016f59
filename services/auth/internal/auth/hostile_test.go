package auth

import (
	"bytes"
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

	authv1 "pressroom.dev/proto/gen/auth/v1"
)

// TestEveryProcedureRefusesHostileInputAsTheCallersFault walks every
// procedure of AuthService (from its descriptor, so a new one is walked
// too) as an admin and anonymously, with each hostile value in each string
// field: NUL bytes, uuids in spellings Postgres does not read, made-up page
// tokens. Bad input is the caller's fault, never an internal error.
func TestEveryProcedureRefusesHostileInputAsTheCallersFault(t *testing.T) {
	e := newEnv(t, map[string]string{"ADMIN_EMAILS": "root@example.com"})
	admin := e.signIn("root@example.com").GetTokens().GetAccessToken()
	tok := func(v string) string { return base64.RawURLEncoding.EncodeToString([]byte(v)) }
	hostile := []string{"\x00", "a\x00b", "not-a-uuid", "urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8",
		"{6ba7b810-9dad-11d1-80b4-00c04fd430c8}", strings.Repeat("x", 5000),
		tok(`{"e":"a\u0000b","i":"6ba7b810-9dad-11d1-80b4-00c04fd430c8"}`),
		tok(`{"e":"a","i":"urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8"}`),
		refreshPrefix + strings.Repeat("A", 64)}
	svc := authv1.File_auth_v1_auth_proto.Services().ByName("AuthService")
	calls := 0
	for i := range svc.Methods().Len() {
		m := svc.Methods().Get(i)
		procedure := "/" + string(svc.FullName()) + "/" + string(m.Name())
		fields := m.Input().Fields()
		for j := range fields.Len() {
			f := fields.Get(j)
			if f.Kind() != protoreflect.StringKind {
				continue
			}
			for _, v := range hostile {
				msg := dynamicpb.NewMessage(m.Input())
				if f.IsList() {
					msg.Mutable(f).List().Append(protoreflect.ValueOfString(v))
				} else {
					msg.Set(f, protoreflect.ValueOfString(v))
				}
				for _, bearer := range []string{admin, ""} {
					calls++
					if code, body := postJSON(t, e.url+procedure, bearer, msg); code == connect.CodeInternal || code == connect.CodeUnknown {
						t.Errorf("%s %s=%q: %s %s", m.Name(), f.Name(), v[:min(len(v), 40)], code, body)
					}
				}
			}
		}
	}
	if calls < 50 {
		t.Fatalf("only %d calls: the walk missed the procedures", calls)
	}
}

func postJSON(t *testing.T, url, bearer string, msg *dynamicpb.Message) (connect.Code, string) {
	t.Helper()
	body, err := protojson.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	hr, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	hr.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		hr.Header.Set("Authorization", "Bearer "+bearer)
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

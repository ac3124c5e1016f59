package server

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	dto "github.com/prometheus/client_model/go"
)

// TestMetricLabelsComeFromClosedSets walks every route the engine has (the
// built-in ones included, so a route added later is covered too) with the
// methods a client may invent and paths nobody routes, then checks that
// every series of every collector has labels from a closed set: a standard
// method or "other", a route template or "unmatched", a registered status.
func TestMetricLabelsComeFromClosedSets(t *testing.T) {
	s := New(Options{Logger: quietLogger()})
	s.Engine().GET("/items/:id", func(c *gin.Context) { c.String(http.StatusOK, "ok") })
	s.Engine().POST("/odd", func(c *gin.Context) { c.Status(299) }) // unregistered code
	s.Handle("/pkg.v1.Svc/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	base := start(t, s)

	routes := map[string]bool{"unmatched": true}
	var paths []string
	for _, r := range s.Engine().Routes() {
		routes[r.Path] = true
		p := strings.NewReplacer(":id", "x1", "*rest", "Method").Replace(r.Path)
		paths = append(paths, p, p+"/nope")
	}
	paths = append(paths, "/no/such/route")
	methods := []string{"GET", "POST", "DELETE", "PROPFIND", "BREW", "get"}
	for i := range 50 {
		methods = append(methods, fmt.Sprintf("X-INVENTED-%d", i))
	}
	for _, p := range paths {
		for _, m := range methods {
			req, err := http.NewRequest(m, base+p, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
	}

	families, err := s.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	okMethod := map[string]bool{"other": true}
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"} {
		okMethod[m] = true
	}
	series := 0
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "http_") {
			continue
		}
		for _, m := range f.GetMetric() {
			series++
			for _, l := range m.GetLabel() {
				if !labelOK(l, okMethod, routes) {
					t.Errorf("%s has label %s=%q from an open set", f.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
	if series == 0 {
		t.Fatal("no http_ series recorded")
	}
}

func labelOK(l *dto.LabelPair, methods, routes map[string]bool) bool {
	switch l.GetName() {
	case "method":
		return methods[l.GetValue()]
	case "route":
		return routes[l.GetValue()]
	case "code":
		v := l.GetValue()
		var n int
		if _, err := fmt.Sscanf(v, "%d", &n); err == nil && fmt.Sprint(n) == v {
			return http.StatusText(n) != ""
		}
		return v == "1xx" || v == "2xx" || v == "3xx" || v == "4xx" || v == "5xx" || v == "other"
	}
	return false
}

func TestStatusAndMethodLabels(t *testing.T) {
	for in, want := range map[int]string{200: "200", 404: "404", 299: "2xx", 599: "5xx", 999: "other", 42: "other"} {
		if got := StatusLabel(in); got != want {
			t.Errorf("StatusLabel(%d) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"GET": "GET", "get": "other", "BREW": "other", "": "other"} {
		if got := MethodLabel(in); got != want {
			t.Errorf("MethodLabel(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestForwardedForIsBelievedOnlyFromTrustedProxies: a client that sends its
// own X-Forwarded-For must not choose the address it is known by.
func TestForwardedForIsBelievedOnlyFromTrustedProxies(t *testing.T) {
	for _, tc := range []struct {
		trusted []string
		want    string
	}{
		{nil, "127.0.0.1"},                      // default: the peer, header ignored
		{[]string{"10.42.0.0/16"}, "127.0.0.1"}, // the peer is not the edge
		{[]string{"127.0.0.1"}, "203.0.113.9"},  // the edge's entry is believed
	} {
		s := New(Options{Logger: quietLogger(), TrustedProxies: tc.trusted})
		s.Engine().GET("/ip", func(c *gin.Context) { c.String(http.StatusOK, c.ClientIP()) })
		base := start(t, s)
		req, _ := http.NewRequest(http.MethodGet, base+"/ip", nil)
		req.Header.Set("X-Forwarded-For", "198.51.100.1, 203.0.113.9")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := string(b); got != tc.want {
			t.Errorf("trusted %v: client IP %q, want %q", tc.trusted, got, tc.want)
		}
	}
}

package kube

import (
	"strings"
	"testing"
)

func TestGoMemLimitIsNineTenthsOfTheLimit(t *testing.T) {
	for limit, want := range map[string]string{
		"256Mi": "241591910", "1Gi": "966367641", "500M": "450000000", "1048576": "943718", "64Ki": "58982",
	} {
		got, err := Size{MemLimit: limit}.GoMemLimit()
		if err != nil || got != want {
			t.Errorf("GoMemLimit(%s) = %q, %v; want %q", limit, got, err, want)
		}
	}
	for _, bad := range []string{"", "256MB", "lots", "-1Mi", "0", "1.5Gi", "99999999999Ti"} {
		if got, err := (Size{MemLimit: bad}).GoMemLimit(); err == nil || !strings.Contains(err.Error(), "256Mi") {
			t.Errorf("GoMemLimit(%q) = %q, %v; want an error naming the accepted form", bad, got, err)
		}
	}
}

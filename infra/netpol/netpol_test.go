package netpol

import (
	"strings"
	"testing"
)

func TestSpecRejectsUnknownWorkloads(t *testing.T) {
	if _, err := Spec("mailer"); err == nil || !strings.Contains(err.Error(), `"mailer" appears in no flow`) {
		t.Errorf("unknown workload: %v", err)
	}
}

func TestEveryFlowIsTCPBetweenKnownEndpointsOnce(t *testing.T) {
	seen := map[Flow]bool{}
	for _, f := range Flows {
		if seen[f] {
			t.Errorf("flow %+v listed twice", f)
		}
		seen[f] = true
		if f.Port < 1 || f.Port > 65535 || f.From == f.To {
			t.Errorf("flow %+v is malformed", f)
		}
		if f.From == Internet || f.To == Traefik || f.To == DNS {
			t.Errorf("flow %+v: the platform only decides flows into and out of its namespace", f)
		}
		for _, w := range []string{f.From, f.To} {
			if w == Traefik || w == Internet || w == DNS {
				continue
			}
			if _, err := Spec(w); err != nil {
				t.Errorf("flow %+v: %v", f, err)
			}
		}
	}
}

package netpol

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite README.md's generated contract from Flows")

const (
	beginContract = "<!-- contract: generated from Flows by readme_test.go (go test ./netpol/ -update) -->"
	endContract   = "<!-- end of contract -->"
)

// contract renders Flows as the README's table: sources as rows,
// destinations and ports as columns, in the order the table names them.
func contract() string {
	var srcs, dsts []string
	seen := map[string]bool{}
	for _, f := range Flows {
		if !seen["from "+f.From] {
			seen["from "+f.From] = true
			srcs = append(srcs, f.From)
		}
		d := fmt.Sprintf("%s:%d", f.To, f.Port)
		if !seen["to "+d] {
			seen["to "+d] = true
			dsts = append(dsts, d)
		}
	}
	open := map[string]bool{}
	for _, f := range Flows {
		open[fmt.Sprintf("%s→%s:%d", f.From, f.To, f.Port)] = true
	}
	var b strings.Builder
	b.WriteString("| from \\ to | " + strings.Join(dsts, " | ") + " |\n")
	b.WriteString("|---" + strings.Repeat("|:-:", len(dsts)) + "|\n")
	for _, s := range srcs {
		b.WriteString("| " + s)
		for _, d := range dsts {
			cell := " "
			if open[s+"→"+d] {
				cell = "open"
			}
			b.WriteString(" | " + cell)
		}
		b.WriteString(" |\n")
	}
	fmt.Fprintf(&b, "\n%d flows, all TCP. Every other connection into, out of or inside the namespace is refused, except DNS to kube-dns (above).\n\n", len(Flows))
	fmt.Fprintf(&b, "- `%s`: pods labelled `%s=%s` in `kube-system` (K3s' ingress controller).\n", Traefik, "app.kubernetes.io/name", TraefikLabel)
	fmt.Fprintf(&b, "- `%s`: pods labelled `%s=true` in the namespace (cert-manager's HTTP-01 solvers).\n", ACMESolver, ACMESolverLabel)
	fmt.Fprintf(&b, "- `%s`: `0.0.0.0/0` except %s, so it never reaches a pod, a Service or the private network.\n", Internet, "`"+strings.Join(privateRanges, "`, `")+"`")
	b.WriteString("- Every other name: the namespace's pods labelled `app.kubernetes.io/name=<name>`.\n")
	return b.String()
}

// The README's table is Flows: it cannot drift from the policies.
func TestREADMEIsTheContract(t *testing.T) {
	raw, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	i, j := strings.Index(doc, beginContract), strings.Index(doc, endContract)
	if i < 0 || j < i {
		t.Fatalf("README.md: the contract's markers are missing:\n%s\n%s", beginContract, endContract)
	}
	want := contract()
	got := doc[i+len(beginContract)+1 : j]
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile("README.md", []byte(doc[:i+len(beginContract)+1]+want+doc[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md's contract differs from Flows; run go test ./netpol/ -update. Want:\n%s", want)
}

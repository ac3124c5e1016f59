package web

import (
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// checkInert parses rendered HTML the way a browser would and reports any
// script, event handler, style or script URL that survived.
func checkInert(t *testing.T, src, out string) {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(out))
	if err != nil {
		t.Fatalf("unparseable output: %v", err)
	}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "script", "style", "iframe", "object", "embed", "form", "base", "meta", "link", "svg", "math":
				t.Fatalf("<%s> survived for input %q:\n%s", n.Data, src, out)
			}
			for _, a := range n.Attr {
				k := strings.ToLower(a.Key)
				v := strings.ToLower(strings.Join(strings.Fields(a.Val), ""))
				if strings.HasPrefix(k, "on") || k == "style" || k == "srcdoc" || k == "formaction" {
					t.Fatalf("attribute %s survived for input %q:\n%s", a.Key, src, out)
				}
				if (k == "href" || k == "src" || k == "action" || k == "xlink:href") &&
					(strings.HasPrefix(v, "javascript:") || strings.HasPrefix(v, "vbscript:") || strings.HasPrefix(v, "data:text")) {
					t.Fatalf("script URL in %s survived for input %q:\n%s", a.Key, src, out)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
}

var xssSeeds = []string{
	"# Title\n\nplain *text* and `code`",
	"<script>alert(1)</script>",
	"<img src=x onerror=alert(1)>",
	"[click](javascript:alert(1))",
	"[click](JaVaScRiPt:alert(1))",
	"[click](java\tscript:alert(1))",
	"![img](javascript:alert(1))",
	`<a href="&#106;avascript:alert(1)">x</a>`,
	`<p style="background:url(javascript:alert(1))">x</p>`,
	"<svg onload=alert(1)><circle/></svg>",
	"<iframe srcdoc='<script>alert(1)</script>'></iframe>",
	"<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
	"<details open ontoggle=alert(1)>",
	"```html\n<script>alert(1)</script>\n```",
	"<a href=\"data:text/html,<script>alert(1)</script>\">d</a>",
	"<form action=javascript:alert(1)><button>go</button></form>",
	"<<script>script>alert(1)<</script>/script>",
	"<base href=javascript:/>",
	"| a | b |\n|---|---|\n| <img src=x onerror=1> | ok |",
}

func TestMarkdownIsSanitized(t *testing.T) {
	md := NewMarkdown()
	for _, s := range xssSeeds {
		checkInert(t, s, string(md.Render(s)))
	}
	got := string(md.Render("## Hi\n\n> quote\n\n- a\n- b\n\n[site](https://example.org) ~~gone~~"))
	for _, want := range []string{"<h2>Hi</h2>", "<blockquote>", "<li>a</li>", `href="https://example.org"`, "<del>gone</del>"} {
		if !strings.Contains(got, want) {
			t.Errorf("rendered Markdown lacks %q: %s", want, got)
		}
	}
}

func FuzzMarkdownIsInert(f *testing.F) {
	for _, s := range xssSeeds {
		f.Add(s)
	}
	md := NewMarkdown()
	f.Fuzz(func(t *testing.T, src string) {
		checkInert(t, src, string(md.Render(src)))
	})
}

func BenchmarkMarkdownRender(b *testing.B) {
	md := NewMarkdown()
	src := strings.Repeat("## Section\n\nA paragraph with *emphasis*, `code` and a [link](https://example.org).\n\n- one\n- two\n\n", 20)
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		md.Render(src)
	}
}

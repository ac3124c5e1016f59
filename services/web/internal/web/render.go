package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/microcosm-cc/bluemonday"
	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/extension"
	"github.com/yuin/goldmark/parser"
	"github.com/yuin/goldmark/text"
	"github.com/yuin/goldmark/util"
	"google.golang.org/protobuf/types/known/timestamppb"

	"pressroom.dev/kit/authz"
	"pressroom.dev/kit/ids"
	articlev1 "pressroom.dev/proto/gen/article/v1"
	authv1 "pressroom.dev/proto/gen/auth/v1"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Markdown turns an article body into sanitized HTML. Authors are trusted to
// write, not to script: the UGC policy drops scripts, event handlers, style
// attributes and javascript: URLs whatever goldmark lets through.
type Markdown struct {
	md     goldmark.Markdown
	policy *bluemonday.Policy
}

func NewMarkdown() *Markdown {
	p := bluemonday.UGCPolicy()
	p.AllowAttrs("class").Matching(bluemonday.SpaceSeparatedTokens).OnElements("code", "pre")
	p.RequireNoReferrerOnLinks(true)
	return &Markdown{
		md: goldmark.New(goldmark.WithExtensions(extension.GFM, extension.Typographer),
			goldmark.WithParserOptions(parser.WithASTTransformers(util.Prioritized(imagesOnlyMediaOrHTTPS{}, 1000)))),
		policy: p,
	}
}

// imagesOnlyMediaOrHTTPS keeps an image in a body only when it is a media
// file or an https URL: the browser fetches images by itself, so any other
// same-site path would be a request the author makes every reader send.
// Other images become their alt text.
type imagesOnlyMediaOrHTTPS struct{}

func (imagesOnlyMediaOrHTTPS) Transform(doc *ast.Document, reader text.Reader, _ parser.Context) {
	var drop []*ast.Image
	_ = ast.Walk(doc, func(n ast.Node, entering bool) (ast.WalkStatus, error) {
		if img, ok := n.(*ast.Image); ok && entering && !AllowedImage(string(img.Destination)) {
			drop = append(drop, img)
		}
		return ast.WalkContinue, nil
	})
	for _, img := range drop {
		//lint:ignore SA1019 goldmark offers no other call that gives the alt text as written
		alt := ast.NewString(img.Text(reader.Source()))
		img.Parent().ReplaceChild(img.Parent(), img, alt)
	}
}

// AllowedImage is what an authored image may point at: a media file, or
// an https URL on another host.
func AllowedImage(src string) bool {
	if ids.IsMediaFilePath(src) {
		return true
	}
	u, err := url.Parse(src)
	return err == nil && u.Scheme == "https" && u.Host != "" && u.User == nil
}

// Render converts Markdown to safe HTML.
func (m *Markdown) Render(src string) template.HTML {
	var buf bytes.Buffer
	if err := m.md.Convert([]byte(src), &buf); err != nil {
		// goldmark only fails on writer errors; fall back to escaped text.
		return template.HTML(template.HTMLEscapeString(src))
	}
	return template.HTML(m.policy.SanitizeBytes(buf.Bytes())) //nolint:gosec // sanitized above
}

// Site is what every page knows about the publication.
type Site struct {
	Title       string
	Description string
	URL         string // public origin without trailing slash
	// Build names the image's build (its dev.pressroom.build label); shown in
	// the footer and the X-Pressroom-Build header, so an operator sees which
	// build answers after a deploy or a rollback. Empty: neither.
	Build string
}

// Page is the data every template receives.
type Page struct {
	Site        Site
	Title       string
	Description string
	Canonical   string
	OGType      string
	OGImage     string
	NoIndex     bool
	Path        string
	User        authz.Principal
	CSRF        string
	Admin       string // which admin tab is active; empty on the public site
	Wide        bool
	Flash       string
	Error       string
	Data        any
}

type renderer struct {
	pages      map[string]*template.Template
	staticHash map[string]string
}

var pageNames = []string{"home", "article", "author", "error",
	"admin_articles", "admin_editor", "admin_confirm", "admin_media", "admin_users", "renew", "continue"}

func newRenderer() (*renderer, error) {
	r := &renderer{pages: map[string]*template.Template{}, staticHash: map[string]string{}}
	err := fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		r.staticHash[strings.TrimPrefix(p, "static/")] = hex.EncodeToString(sum[:6])
		return nil
	})
	if err != nil {
		return nil, err
	}
	funcs := template.FuncMap{
		"static": func(name string) (string, error) {
			h, ok := r.staticHash[name]
			if !ok {
				return "", fmt.Errorf("no static file %q", name)
			}
			return "/static/" + name + "?v=" + h, nil
		},
		"date":    formatDate,
		"isodate": isoDate,
		"date2": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format("2 Jan 2006")
		},
		"published": func(a *articlev1.Article) bool {
			return a.GetStatus() == articlev1.ArticleStatus_ARTICLE_STATUS_PUBLISHED
		},
		"image": func(it MediaItem) bool { return it.IsImage() },
		// A cover stored before covers were checked is shown only if it is a media file.
		"cover": func(p string) string {
			if ids.IsMediaFilePath(p) {
				return p
			}
			return ""
		},
		"bytes":     formatBytes,
		"roleNames": func() []string { return []string{"admin", "author", "reader"} },
		"hasRole":   func(u *authv1.User, r string) bool { return slices.Contains(u.GetRoles(), r) },
	}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/base.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", name, err)
		}
		r.pages[name] = t
	}
	return r, nil
}

func (r *renderer) render(name string, p *Page) ([]byte, error) {
	t, ok := r.pages[name]
	if !ok {
		return nil, fmt.Errorf("no page template %q", name)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "base", p); err != nil {
		return nil, fmt.Errorf("render %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

func formatDate(ts *timestamppb.Timestamp) string {
	if ts == nil || !ts.IsValid() || ts.AsTime().IsZero() {
		return ""
	}
	return ts.AsTime().UTC().Format("2 January 2006")
}

func isoDate(ts *timestamppb.Timestamp) string {
	if ts == nil || !ts.IsValid() {
		return ""
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}

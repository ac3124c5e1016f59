package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/microcosm-cc/bluemonday"
	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/extension"
	"google.golang.org/protobuf/types/known/timestamppb"

	"pressroom.dev/kit/authz"
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
		md:     goldmark.New(goldmark.WithExtensions(extension.GFM, extension.Typographer)),
		policy: p,
	}
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
	"admin_articles", "admin_editor", "admin_confirm", "admin_media", "admin_users", "renew"}

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
		"image":     func(it MediaItem) bool { return it.IsImage() },
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

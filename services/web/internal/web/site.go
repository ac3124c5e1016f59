package web

import (
	"bytes"
	"encoding/xml"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/gin-gonic/gin"

	"pressroom.dev/kit/ids"
	"pressroom.dev/kit/redirect"
	articlev1 "pressroom.dev/proto/gen/article/v1"
)

const homePageSize = 12

type listData struct {
	Articles []*articlev1.Article
	Next     string
	First    bool
	BaseURL  string
	Name     string
}

// listPublished pages through published articles; public pages never send
// the user's token, so what they show is the same for everyone.
func (a *App) listPublished(c *gin.Context, authorID, after string, size int32) (*articlev1.ListArticlesResponse, error) {
	res, err := a.opt.Articles.ListArticles(c.Request.Context(), connect.NewRequest(&articlev1.ListArticlesRequest{
		PageSize: size, PageToken: after, AuthorId: authorID,
		Status: articlev1.ArticleStatus_ARTICLE_STATUS_PUBLISHED,
	}))
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

func (a *App) htmlPage(c *gin.Context, name string, p *Page) (int, string, []byte, bool) {
	body, err := a.renderPage(c, name, p)
	if err != nil {
		a.fail(c, err)
		return 0, "", nil, false
	}
	return http.StatusOK, "text/html; charset=utf-8", body, true
}

// pageParams: list pages read only the page token.
var pageParams = []string{"after"}

func (a *App) home(c *gin.Context) {
	a.serveCacheable(c, false, pageParams, func() (int, string, []byte, bool) {
		after := c.Query("after")
		res, err := a.listPublished(c, "", after, homePageSize)
		if err != nil {
			a.fail(c, err)
			return 0, "", nil, false
		}
		return a.htmlPage(c, "home", &Page{Canonical: a.opt.Site.URL + "/", NoIndex: after != "",
			Data: listData{Articles: res.GetArticles(), Next: res.GetNextPageToken(), First: after == "", BaseURL: "/"}})
	})
}

type articleData struct {
	Article *articlev1.Article
	Body    template.HTML
	Draft   bool
}

func (a *App) article(c *gin.Context) {
	slug := c.Param("slug")
	p := principal(c)
	if p.IsStaff() {
		// Staff may look at their own drafts at the public address; never cached.
		res, err := a.opt.Articles.GetArticle(a.rpcCtx(c), connect.NewRequest(&articlev1.GetArticleRequest{
			Key: &articlev1.GetArticleRequest_Slug{Slug: slug}}))
		if err != nil {
			a.articleFail(c, err)
			return
		}
		a.page(c, http.StatusOK, "article", a.articlePage(res.Msg.GetArticle()))
		return
	}
	a.serveCacheable(c, false, nil, func() (int, string, []byte, bool) {
		res, err := a.opt.Articles.GetArticle(c.Request.Context(), connect.NewRequest(&articlev1.GetArticleRequest{
			Key: &articlev1.GetArticleRequest_Slug{Slug: slug}}))
		if err != nil {
			a.articleFail(c, err)
			return 0, "", nil, false
		}
		if res.Msg.GetArticle().GetStatus() != articlev1.ArticleStatus_ARTICLE_STATUS_PUBLISHED {
			a.problem(c, http.StatusNotFound, "")
			return 0, "", nil, false
		}
		return a.htmlPage(c, "article", a.articlePage(res.Msg.GetArticle()))
	})
}

// articleFail: a draft someone may not read looks exactly like a missing article.
func (a *App) articleFail(c *gin.Context, err error) {
	switch connect.CodeOf(err) {
	case connect.CodePermissionDenied, connect.CodeUnauthenticated, connect.CodeInvalidArgument:
		a.problem(c, http.StatusNotFound, "")
	default:
		a.fail(c, err)
	}
}

func (a *App) articlePage(art *articlev1.Article) *Page {
	draft := art.GetStatus() != articlev1.ArticleStatus_ARTICLE_STATUS_PUBLISHED
	p := &Page{Title: art.GetTitle(), Description: art.GetSummary(), OGType: "article",
		Canonical: a.opt.Site.URL + "/articles/" + url.PathEscape(art.GetSlug()), NoIndex: draft,
		Data: articleData{Article: art, Body: a.md.Render(art.GetBodyMarkdown()), Draft: draft}}
	if ids.IsMediaFilePath(art.GetCoverMedia()) {
		p.OGImage = a.absURL(art.GetCoverMedia())
	}
	return p
}

func (a *App) absURL(ref string) string {
	if strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://") {
		return ref
	}
	return a.opt.Site.URL + redirect.LocalPath(ref)
}

func (a *App) author(c *gin.Context) {
	a.serveCacheable(c, false, pageParams, func() (int, string, []byte, bool) {
		id, after := c.Param("id"), c.Query("after")
		res, err := a.listPublished(c, id, after, homePageSize)
		if err != nil {
			a.articleFail(c, err)
			return 0, "", nil, false
		}
		if len(res.GetArticles()) == 0 {
			a.problem(c, http.StatusNotFound, "This author has not published anything yet.")
			return 0, "", nil, false
		}
		name := res.GetArticles()[0].GetAuthorName()
		if name == "" {
			name = "this author"
		}
		base := "/authors/" + url.PathEscape(id)
		return a.htmlPage(c, "author", &Page{Title: "Articles by " + name, Canonical: a.opt.Site.URL + base, NoIndex: after != "",
			Data: listData{Articles: res.GetArticles(), Next: res.GetNextPageToken(), First: after == "", BaseURL: base, Name: name}})
	})
}

// ---- Atom feed and sitemap ----

type atomFeed struct {
	XMLName xml.Name    `xml:"http://www.w3.org/2005/Atom feed"`
	Title   string      `xml:"title"`
	ID      string      `xml:"id"`
	Updated string      `xml:"updated"`
	Links   []atomLink  `xml:"link"`
	Entries []atomEntry `xml:"entry"`
}

type atomLink struct {
	Href string `xml:"href,attr"`
	Rel  string `xml:"rel,attr,omitempty"`
	Type string `xml:"type,attr,omitempty"`
}

type atomEntry struct {
	Title     string     `xml:"title"`
	ID        string     `xml:"id"`
	Link      atomLink   `xml:"link"`
	Published string     `xml:"published"`
	Updated   string     `xml:"updated"`
	Author    atomAuthor `xml:"author"`
	Summary   string     `xml:"summary,omitempty"`
	Content   atomText   `xml:"content"`
}

type atomAuthor struct {
	Name string `xml:"name"`
}

type atomText struct {
	Type string `xml:"type,attr"`
	Body string `xml:",chardata"`
}

func (a *App) feed(c *gin.Context) {
	a.serveCacheable(c, true, nil, func() (int, string, []byte, bool) {
		res, err := a.listPublished(c, "", "", 20)
		if err != nil {
			a.fail(c, err)
			return 0, "", nil, false
		}
		base := a.opt.Site.URL
		f := atomFeed{Title: a.opt.Site.Title, ID: base + "/", Updated: time.Unix(0, 0).UTC().Format(time.RFC3339),
			Links: []atomLink{{Href: base + "/feed.xml", Rel: "self", Type: "application/atom+xml"}, {Href: base + "/"}}}
		for i, art := range res.GetArticles() {
			u := base + "/articles/" + url.PathEscape(art.GetSlug())
			upd := art.GetUpdatedAt().AsTime().UTC().Format(time.RFC3339)
			if i == 0 {
				f.Updated = upd
			}
			f.Entries = append(f.Entries, atomEntry{Title: art.GetTitle(), ID: u, Link: atomLink{Href: u},
				Published: art.GetPublishedAt().AsTime().UTC().Format(time.RFC3339), Updated: upd,
				Author: atomAuthor{Name: art.GetAuthorName()}, Summary: art.GetSummary(),
				Content: atomText{Type: "html", Body: string(a.md.Render(art.GetBodyMarkdown()))}})
		}
		return xmlDoc(c, a, f, "application/atom+xml; charset=utf-8")
	})
}

type urlSet struct {
	XMLName xml.Name `xml:"http://www.sitemaps.org/schemas/sitemap/0.9 urlset"`
	URLs    []sitemapURL
}

type sitemapURL struct {
	XMLName xml.Name `xml:"url"`
	Loc     string   `xml:"loc"`
	LastMod string   `xml:"lastmod,omitempty"`
}

const sitemapMax = 5000

func (a *App) sitemap(c *gin.Context) {
	a.serveCacheable(c, true, nil, func() (int, string, []byte, bool) {
		base := a.opt.Site.URL
		set := urlSet{URLs: []sitemapURL{{Loc: base + "/"}}}
		authors := map[string]bool{}
		after := ""
		for len(set.URLs) < sitemapMax {
			res, err := a.listPublished(c, "", after, 100)
			if err != nil {
				a.fail(c, err)
				return 0, "", nil, false
			}
			for _, art := range res.GetArticles() {
				set.URLs = append(set.URLs, sitemapURL{Loc: base + "/articles/" + url.PathEscape(art.GetSlug()),
					LastMod: art.GetUpdatedAt().AsTime().UTC().Format("2006-01-02")})
				if id := art.GetAuthorId(); id != "" && !authors[id] {
					authors[id] = true
					set.URLs = append(set.URLs, sitemapURL{Loc: base + "/authors/" + url.PathEscape(id)})
				}
			}
			if after = res.GetNextPageToken(); after == "" {
				break
			}
		}
		return xmlDoc(c, a, set, "application/xml; charset=utf-8")
	})
}

func xmlDoc(c *gin.Context, a *App, v any, ctype string) (int, string, []byte, bool) {
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	enc := xml.NewEncoder(&buf)
	enc.Indent("", "  ")
	if err := enc.Encode(v); err != nil {
		a.fail(c, err)
		return 0, "", nil, false
	}
	buf.WriteByte('\n')
	return http.StatusOK, ctype, buf.Bytes(), true
}

func (a *App) robots(c *gin.Context) {
	c.Header("Cache-Control", "public, max-age=3600")
	c.String(http.StatusOK, "User-agent: *\nDisallow: /admin\nDisallow: /auth/\nSitemap: %s/sitemap.xml\n", a.opt.Site.URL)
}

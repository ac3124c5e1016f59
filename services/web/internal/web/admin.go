package web

import (
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"connectrpc.com/connect"
	"github.com/gin-gonic/gin"

	"pressroom.dev/kit/ids"
	articlev1 "pressroom.dev/proto/gen/article/v1"
	authv1 "pressroom.dev/proto/gen/auth/v1"
)

// Flash messages come from a fixed list so a crafted link can't put text on the page.
var flashes = map[string]string{
	"saved":       "Draft saved.",
	"created":     "Article created as a draft.",
	"published":   "Article published. It is live on the home page.",
	"unpublished": "Article unpublished. It is no longer on the public site.",
	"deleted":     "Article deleted.",
	"uploaded":    "File uploaded.",
	"removed":     "File deleted.",
	"roles":       "Roles saved. They take effect at the user's next sign-in.",
}

func flash(c *gin.Context) string { return flashes[c.Query("done")] }

type adminListData struct {
	Articles []*articlev1.Article
	Status   string
	Next     string
}

func (a *App) adminArticles(c *gin.Context) {
	p := principal(c)
	req := &articlev1.ListArticlesRequest{PageSize: 50, PageToken: c.Query("after")}
	status := c.Query("status")
	switch status {
	case "draft":
		req.Status = articlev1.ArticleStatus_ARTICLE_STATUS_DRAFT
	case "published":
		req.Status = articlev1.ArticleStatus_ARTICLE_STATUS_PUBLISHED
	default:
		status = ""
	}
	if !p.IsAdmin() {
		req.AuthorId = p.UserID // authors manage their own articles
	}
	res, err := a.opt.Articles.ListArticles(a.rpcCtx(c), connect.NewRequest(req))
	if err != nil {
		a.fail(c, err)
		return
	}
	a.page(c, http.StatusOK, "admin_articles", &Page{Title: "Articles", Admin: "articles", Wide: true, NoIndex: true,
		Flash: flash(c), Data: adminListData{Articles: res.Msg.GetArticles(), Status: status, Next: res.Msg.GetNextPageToken()}})
}

type editorForm struct {
	Title, Slug, Summary, Body, Cover string
}

type editorData struct {
	ID         string
	Published  bool
	Form       editorForm
	Media      []MediaItem
	MediaError string
	Preview    template.HTML
}

func formFromArticle(art *articlev1.Article) editorForm {
	return editorForm{Title: art.GetTitle(), Slug: art.GetSlug(), Summary: art.GetSummary(),
		Body: art.GetBodyMarkdown(), Cover: art.GetCoverMedia()}
}

func formFromRequest(c *gin.Context) editorForm {
	return editorForm{
		Title:   strings.TrimSpace(c.PostForm("title")),
		Slug:    strings.TrimSpace(c.PostForm("slug")),
		Summary: strings.TrimSpace(c.PostForm("summary")),
		Body:    strings.ReplaceAll(c.PostForm("body"), "\r\n", "\n"),
		Cover:   strings.TrimSpace(c.PostForm("cover_media")),
	}
}

// validate catches what the user can fix before a round trip; the article
// service enforces its own rules too, and its messages are shown as they are.
func (f editorForm) validate() string {
	var probs []string
	if f.Title == "" {
		probs = append(probs, "give the article a title")
	}
	if len(f.Title) > 200 {
		probs = append(probs, "shorten the title to 200 characters")
	}
	if f.Cover != "" && !ids.IsMediaFilePath(f.Cover) {
		probs = append(probs, "pick the cover image from the media library")
	}
	if len(probs) == 0 {
		return ""
	}
	return "Please " + strings.Join(probs, " and ") + "."
}

func (a *App) editor(c *gin.Context, status int, d editorData, errMsg string) {
	items, err := a.opt.Media.List(c.Request.Context(), accessToken(c))
	if err != nil {
		d.MediaError = "The media library could not be loaded (" + errMessage(err) + "); the cover can't be changed right now."
	}
	d.Media = items
	title := "New article"
	if d.ID != "" {
		title = "Edit: " + d.Form.Title
	}
	a.page(c, status, "admin_editor", &Page{Title: title, Admin: "editor", Wide: true, NoIndex: true,
		Flash: flash(c), Error: errMsg, Data: d})
}

func (a *App) editorNew(c *gin.Context) {
	a.editor(c, http.StatusOK, editorData{}, "")
}

func (a *App) getArticle(c *gin.Context, id string) (*articlev1.Article, bool) {
	res, err := a.opt.Articles.GetArticle(a.rpcCtx(c), connect.NewRequest(&articlev1.GetArticleRequest{
		Key: &articlev1.GetArticleRequest_Id{Id: id}}))
	if err != nil {
		if connect.CodeOf(err) == connect.CodeInvalidArgument {
			a.problem(c, http.StatusNotFound, "")
			return nil, false
		}
		a.fail(c, err)
		return nil, false
	}
	return res.Msg.GetArticle(), true
}

func isPublished(art *articlev1.Article) bool {
	return art.GetStatus() == articlev1.ArticleStatus_ARTICLE_STATUS_PUBLISHED
}

func (a *App) editorEdit(c *gin.Context) {
	art, ok := a.getArticle(c, c.Param("id"))
	if !ok {
		return
	}
	if !principal(c).CanEditArticle(art.GetAuthorId()) {
		a.problem(c, http.StatusForbidden, "You can only edit your own articles.")
		return
	}
	a.editor(c, http.StatusOK, editorData{ID: art.GetId(), Published: isPublished(art), Form: formFromArticle(art)}, "")
}

// formError shows a service's refusal on the editor, keeping what was typed.
func (a *App) formError(c *gin.Context, d editorData, err error) {
	switch connect.CodeOf(err) {
	case connect.CodeInvalidArgument, connect.CodeAlreadyExists, connect.CodeFailedPrecondition, connect.CodeOutOfRange:
		a.editor(c, http.StatusUnprocessableEntity, d, "Not saved: "+errMessage(err)+".")
	case connect.CodePermissionDenied:
		a.editor(c, http.StatusForbidden, d, "Not saved: you are not allowed to do that ("+errMessage(err)+").")
	default:
		a.fail(c, err)
	}
}

func (a *App) editorCreate(c *gin.Context) {
	f := formFromRequest(c)
	d := editorData{Form: f}
	if c.PostForm("action") == "preview" {
		d.Preview = a.md.Render(f.Body)
		a.editor(c, http.StatusOK, d, "")
		return
	}
	if msg := f.validate(); msg != "" {
		a.editor(c, http.StatusUnprocessableEntity, d, msg)
		return
	}
	res, err := a.opt.Articles.CreateArticle(a.rpcCtx(c), connect.NewRequest(&articlev1.CreateArticleRequest{
		Title: f.Title, Slug: f.Slug, Summary: f.Summary, BodyMarkdown: f.Body, CoverMedia: f.Cover}))
	if err != nil {
		a.formError(c, d, err)
		return
	}
	c.Redirect(http.StatusSeeOther, "/admin/articles/"+url.PathEscape(res.Msg.GetArticle().GetId())+"/edit?done=created")
}

func (a *App) editorUpdate(c *gin.Context) {
	art, ok := a.getArticle(c, c.Param("id"))
	if !ok {
		return
	}
	f := formFromRequest(c)
	d := editorData{ID: art.GetId(), Published: isPublished(art), Form: f}
	if c.PostForm("action") == "preview" {
		d.Preview = a.md.Render(f.Body)
		a.editor(c, http.StatusOK, d, "")
		return
	}
	if msg := f.validate(); msg != "" {
		a.editor(c, http.StatusUnprocessableEntity, d, msg)
		return
	}
	req := &articlev1.UpdateArticleRequest{Id: art.GetId(), Title: &f.Title, Summary: &f.Summary,
		BodyMarkdown: &f.Body, CoverMedia: &f.Cover}
	if f.Slug != "" && f.Slug != art.GetSlug() {
		req.Slug = &f.Slug // only an explicit change moves the article
	}
	if _, err := a.opt.Articles.UpdateArticle(a.rpcCtx(c), connect.NewRequest(req)); err != nil {
		a.formError(c, d, err)
		return
	}
	if isPublished(art) {
		a.Invalidate()
	}
	c.Redirect(http.StatusSeeOther, "/admin/articles/"+url.PathEscape(art.GetId())+"/edit?done=saved")
}

type confirmData struct {
	Question, Action, Button, Cancel string
	Danger                           bool
}

func (a *App) confirmArticle(op string) gin.HandlerFunc {
	return func(c *gin.Context) {
		art, ok := a.getArticle(c, c.Param("id"))
		if !ok {
			return
		}
		id := url.PathEscape(art.GetId())
		d := confirmData{Action: "/admin/articles/" + id + "/" + op, Cancel: "/admin/articles/" + id + "/edit"}
		var title string
		switch op {
		case "publish":
			title, d.Button = "Publish article", "Publish"
			d.Question = "Publish “" + art.GetTitle() + "”? It will appear on the home page, in the feed, and readers will be notified."
		case "unpublish":
			title, d.Button = "Unpublish article", "Unpublish"
			d.Question = "Unpublish “" + art.GetTitle() + "”? It will disappear from the public site; you can publish it again later."
		case "delete":
			title, d.Button, d.Danger = "Delete article", "Delete for good", true
			d.Question = "Delete “" + art.GetTitle() + "”? This cannot be undone."
			d.Cancel = "/admin/articles"
		}
		a.page(c, http.StatusOK, "admin_confirm", &Page{Title: title, Admin: "articles", NoIndex: true, Data: d})
	}
}

func (a *App) doArticle(op string) gin.HandlerFunc {
	return func(c *gin.Context) {
		id := c.Param("id")
		ctx := a.rpcCtx(c)
		var err error
		next := "/admin/articles/" + url.PathEscape(id) + "/edit?done=" + op + "ed"
		switch op {
		case "publish":
			_, err = a.opt.Articles.PublishArticle(ctx, connect.NewRequest(&articlev1.PublishArticleRequest{Id: id}))
		case "unpublish":
			_, err = a.opt.Articles.UnpublishArticle(ctx, connect.NewRequest(&articlev1.UnpublishArticleRequest{Id: id}))
		case "delete":
			_, err = a.opt.Articles.DeleteArticle(ctx, connect.NewRequest(&articlev1.DeleteArticleRequest{Id: id}))
			next = "/admin/articles?done=deleted"
		}
		if err != nil {
			a.fail(c, err)
			return
		}
		a.Invalidate()
		c.Redirect(http.StatusSeeOther, next)
	}
}

// ---- media library ----

type mediaData struct {
	Items   []MediaItem
	MaxSize string
}

func (a *App) mediaLibrary(c *gin.Context) {
	items, err := a.opt.Media.List(c.Request.Context(), accessToken(c))
	if err != nil {
		a.fail(c, err)
		return
	}
	a.mediaPage(c, http.StatusOK, items, "")
}

func (a *App) mediaPage(c *gin.Context, status int, items []MediaItem, errMsg string) {
	a.page(c, status, "admin_media", &Page{Title: "Media library", Admin: "media", Wide: true, NoIndex: true,
		Flash: flash(c), Error: errMsg, Data: mediaData{Items: items, MaxSize: formatBytes(a.opt.MediaMaxBytes)}})
}

func (a *App) mediaUpload(c *gin.Context) {
	fh, err := c.FormFile("file")
	if err != nil {
		a.uploadError(c, http.StatusBadRequest, "Choose a file to upload first.")
		return
	}
	if fh.Size > a.opt.MediaMaxBytes {
		a.uploadError(c, http.StatusRequestEntityTooLarge, "That file is "+formatBytes(fh.Size)+"; the limit is "+formatBytes(a.opt.MediaMaxBytes)+".")
		return
	}
	f, err := fh.Open()
	if err != nil {
		a.fail(c, err)
		return
	}
	defer f.Close()
	if _, err := a.opt.Media.Upload(c.Request.Context(), accessToken(c), fh.Filename, fh.Header.Get("Content-Type"), f); err != nil {
		var me *MediaError
		if errors.As(err, &me) && me.Status >= 400 && me.Status < 500 && me.Status != http.StatusUnauthorized &&
			me.Status != http.StatusTooManyRequests {
			a.uploadError(c, me.Status, "Upload refused: "+me.Message)
			return
		}
		a.fail(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, "/admin/media?done=uploaded")
}

func (a *App) uploadError(c *gin.Context, status int, msg string) {
	items, _ := a.opt.Media.List(c.Request.Context(), accessToken(c))
	a.mediaPage(c, status, items, msg)
}

func (a *App) mediaConfirmDelete(c *gin.Context) {
	id := url.PathEscape(c.Param("id"))
	a.page(c, http.StatusOK, "admin_confirm", &Page{Title: "Delete file", Admin: "media", NoIndex: true, Data: confirmData{
		Question: "Delete this file? Articles that use it as a cover will show no image.",
		Action:   "/admin/media/" + id + "/delete", Button: "Delete for good", Cancel: "/admin/media", Danger: true}})
}

func (a *App) mediaDelete(c *gin.Context) {
	if err := a.opt.Media.Delete(c.Request.Context(), accessToken(c), c.Param("id")); err != nil {
		a.fail(c, err)
		return
	}
	a.Invalidate()
	c.Redirect(http.StatusSeeOther, "/admin/media?done=removed")
}

// ---- users (admins) ----

type usersData struct {
	Users []*authv1.User
	Query string
	Next  string
}

func (a *App) users(c *gin.Context) {
	q := strings.TrimSpace(c.Query("q"))
	res, err := a.opt.Auth.ListUsers(a.rpcCtx(c), connect.NewRequest(&authv1.ListUsersRequest{
		PageSize: 50, PageToken: c.Query("after"), EmailQuery: q}))
	if err != nil {
		a.fail(c, err)
		return
	}
	a.page(c, http.StatusOK, "admin_users", &Page{Title: "Users", Admin: "users", Wide: true, NoIndex: true,
		Flash: flash(c), Data: usersData{Users: res.Msg.GetUsers(), Query: q, Next: res.Msg.GetNextPageToken()}})
}

func (a *App) setRoles(c *gin.Context) {
	roles := c.PostFormArray("roles")
	if len(roles) == 0 {
		roles = []string{"reader"}
	}
	if _, err := a.opt.Auth.SetRoles(a.rpcCtx(c), connect.NewRequest(&authv1.SetRolesRequest{
		UserId: c.Param("id"), Roles: roles})); err != nil {
		a.fail(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, "/admin/users?done=roles")
}

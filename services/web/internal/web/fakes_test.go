package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"pressroom.dev/kit/authz"
	"pressroom.dev/kit/connectkit"
	"pressroom.dev/kit/token"
	articlev1 "pressroom.dev/proto/gen/article/v1"
	"pressroom.dev/proto/gen/article/v1/articlev1connect"
	authv1 "pressroom.dev/proto/gen/auth/v1"
	"pressroom.dev/proto/gen/auth/v1/authv1connect"
)

// These are fakes of the *services* (their Connect contracts), served over
// real HTTP with the kit's real auth interceptor; the e2e test uses the real ones.

type fakeArticles struct {
	articlev1connect.UnimplementedArticleServiceHandler
	mu       sync.Mutex
	byID     map[string]*articlev1.Article
	seq      int
	calls    map[string]int
	lastTok  string
	failWith error         // returned by the next call, then cleared
	gate     chan struct{} // when set, every call waits for it to close (or its request to end)
	limited  bool          // every call is refused by a rate limit
}

// rateLimited is what a service's limit answers (auth's, with Retry-After).
func rateLimited() error {
	ce := connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("too many requests from this address: retry in 17s"))
	ce.Meta().Set("Retry-After", "17")
	return ce
}

func newFakeArticles() *fakeArticles {
	return &fakeArticles{byID: map[string]*articlev1.Article{}, calls: map[string]int{}}
}

var nonSlug = regexp.MustCompile(`[^a-z0-9]+`)

func (f *fakeArticles) enter(ctx context.Context, name string) (authz.Principal, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[name]++
	if tok, ok := connectkit.TokenFromContext(ctx); ok {
		f.lastTok = tok
	}
	p, _ := authz.FromContext(ctx)
	failWith := f.failWith
	f.failWith = nil
	if f.limited {
		failWith = rateLimited()
	}
	if gate := f.gate; gate != nil {
		f.mu.Unlock()
		select {
		case <-gate:
		case <-ctx.Done():
		}
		f.mu.Lock()
	}
	return p, failWith
}

func (f *fakeArticles) callCount(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[name]
}

func (f *fakeArticles) add(a *articlev1.Article) *articlev1.Article {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	if a.Id == "" {
		a.Id = fmt.Sprintf("a%03d", f.seq)
	}
	now := timestamppb.New(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC).Add(time.Duration(f.seq) * time.Hour))
	a.CreatedAt, a.UpdatedAt = now, now
	if a.Status == articlev1.ArticleStatus_ARTICLE_STATUS_PUBLISHED && a.PublishedAt == nil {
		a.PublishedAt = now
	}
	if a.Status == articlev1.ArticleStatus_ARTICLE_STATUS_UNSPECIFIED {
		a.Status = articlev1.ArticleStatus_ARTICLE_STATUS_DRAFT
	}
	f.byID[a.Id] = a
	return a
}

func (f *fakeArticles) visible(p authz.Principal, a *articlev1.Article) bool {
	return p.CanReadArticle(a.Status == articlev1.ArticleStatus_ARTICLE_STATUS_PUBLISHED, a.AuthorId)
}

func (f *fakeArticles) ListArticles(ctx context.Context, req *connect.Request[articlev1.ListArticlesRequest]) (*connect.Response[articlev1.ListArticlesResponse], error) {
	p, err := f.enter(ctx, "ListArticles")
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*articlev1.Article
	for _, a := range f.byID {
		if !f.visible(p, a) || (req.Msg.Status != 0 && a.Status != req.Msg.Status) || (req.Msg.AuthorId != "" && a.AuthorId != req.Msg.AuthorId) {
			continue
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id > out[j].Id })
	size := int(req.Msg.PageSize)
	if size <= 0 {
		size = 20
	}
	start := 0
	if req.Msg.PageToken != "" {
		fmt.Sscanf(req.Msg.PageToken, "%d", &start)
	}
	if start > len(out) {
		start = len(out)
	}
	res := &articlev1.ListArticlesResponse{}
	end := min(start+size, len(out))
	res.Articles = out[start:end]
	if end < len(out) {
		res.NextPageToken = fmt.Sprint(end)
	}
	return connect.NewResponse(res), nil
}

func (f *fakeArticles) find(p authz.Principal, id, slug string) (*articlev1.Article, error) {
	for _, a := range f.byID {
		if (id != "" && a.Id == id) || (slug != "" && a.Slug == slug) {
			if !f.visible(p, a) {
				return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("article not found"))
			}
			return a, nil
		}
	}
	return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("article not found"))
}

func (f *fakeArticles) GetArticle(ctx context.Context, req *connect.Request[articlev1.GetArticleRequest]) (*connect.Response[articlev1.GetArticleResponse], error) {
	p, err := f.enter(ctx, "GetArticle")
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a, err := f.find(p, req.Msg.GetId(), req.Msg.GetSlug())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&articlev1.GetArticleResponse{Article: a}), nil
}

func (f *fakeArticles) CreateArticle(ctx context.Context, req *connect.Request[articlev1.CreateArticleRequest]) (*connect.Response[articlev1.CreateArticleResponse], error) {
	p, err := f.enter(ctx, "CreateArticle")
	if err != nil {
		return nil, err
	}
	if !p.CanCreateArticle() {
		return nil, connectkit.PermissionDenied("only authors and admins write articles")
	}
	slug := req.Msg.Slug
	if slug == "" {
		slug = strings.Trim(nonSlug.ReplaceAllString(strings.ToLower(req.Msg.Title), "-"), "-")
	}
	f.mu.Lock()
	for _, a := range f.byID {
		if a.Slug == slug {
			f.mu.Unlock()
			return nil, connectkit.AlreadyExists(fmt.Sprintf("the slug %q is taken; choose another", slug))
		}
	}
	f.mu.Unlock()
	a := f.add(&articlev1.Article{Title: req.Msg.Title, Slug: slug, Summary: req.Msg.Summary, BodyMarkdown: req.Msg.BodyMarkdown,
		CoverMedia: req.Msg.CoverMedia, AuthorId: p.UserID, AuthorName: p.Name})
	return connect.NewResponse(&articlev1.CreateArticleResponse{Article: a}), nil
}

func (f *fakeArticles) editable(ctx context.Context, name, id string) (*articlev1.Article, error) {
	p, err := f.enter(ctx, name)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a, err := f.find(p, id, "")
	if err != nil {
		return nil, err
	}
	if !p.CanEditArticle(a.AuthorId) {
		return nil, connectkit.PermissionDenied("you can only change your own articles")
	}
	return a, nil
}

func (f *fakeArticles) UpdateArticle(ctx context.Context, req *connect.Request[articlev1.UpdateArticleRequest]) (*connect.Response[articlev1.UpdateArticleResponse], error) {
	a, err := f.editable(ctx, "UpdateArticle", req.Msg.Id)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	m := req.Msg
	if m.Title != nil {
		a.Title = *m.Title
	}
	if m.Slug != nil {
		a.Slug = *m.Slug
	}
	if m.Summary != nil {
		a.Summary = *m.Summary
	}
	if m.BodyMarkdown != nil {
		a.BodyMarkdown = *m.BodyMarkdown
	}
	if m.CoverMedia != nil {
		a.CoverMedia = *m.CoverMedia
	}
	return connect.NewResponse(&articlev1.UpdateArticleResponse{Article: a}), nil
}

func (f *fakeArticles) setStatus(ctx context.Context, name, id string, s articlev1.ArticleStatus) (*articlev1.Article, error) {
	a, err := f.editable(ctx, name, id)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a.Status = s
	if s == articlev1.ArticleStatus_ARTICLE_STATUS_PUBLISHED {
		a.PublishedAt = timestamppb.Now()
	} else {
		a.PublishedAt = nil
	}
	return a, nil
}

func (f *fakeArticles) PublishArticle(ctx context.Context, req *connect.Request[articlev1.PublishArticleRequest]) (*connect.Response[articlev1.PublishArticleResponse], error) {
	a, err := f.setStatus(ctx, "PublishArticle", req.Msg.Id, articlev1.ArticleStatus_ARTICLE_STATUS_PUBLISHED)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&articlev1.PublishArticleResponse{Article: a}), nil
}

func (f *fakeArticles) UnpublishArticle(ctx context.Context, req *connect.Request[articlev1.UnpublishArticleRequest]) (*connect.Response[articlev1.UnpublishArticleResponse], error) {
	a, err := f.setStatus(ctx, "UnpublishArticle", req.Msg.Id, articlev1.ArticleStatus_ARTICLE_STATUS_DRAFT)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&articlev1.UnpublishArticleResponse{Article: a}), nil
}

func (f *fakeArticles) DeleteArticle(ctx context.Context, req *connect.Request[articlev1.DeleteArticleRequest]) (*connect.Response[articlev1.DeleteArticleResponse], error) {
	if _, err := f.editable(ctx, "DeleteArticle", req.Msg.Id); err != nil {
		return nil, err
	}
	f.mu.Lock()
	delete(f.byID, req.Msg.Id)
	f.mu.Unlock()
	return connect.NewResponse(&articlev1.DeleteArticleResponse{}), nil
}

// fakeAuth signs real tokens with the test key, like auth does.
type fakeAuth struct {
	authv1connect.UnimplementedAuthServiceHandler
	signer   *token.Signer
	mu       sync.Mutex
	users    []*authv1.User
	signOuts []string
	setRoles map[string][]string
	lastXFF  string
	returnTo string // what FinishSignIn answers; "" = /admin
	calls    map[string]int
	limited  bool // every call is refused by a rate limit
}

// enter counts a call and applies the rate limit when one is on.
func (f *fakeAuth) enter(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[name]++
	if f.limited {
		return rateLimited()
	}
	return nil
}

func (f *fakeAuth) callCount(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[name]
}

func (f *fakeAuth) tokens(u *authv1.User) *authv1.Tokens {
	tok, err := f.signer.Sign(u.Id, u.Email, u.Name, u.Roles)
	if err != nil {
		panic(err)
	}
	return &authv1.Tokens{AccessToken: tok, AccessTokenExpiresAt: timestamppb.New(time.Now().Add(15 * time.Minute)),
		RefreshToken: "rt-" + u.Id, RefreshTokenExpiresAt: timestamppb.New(time.Now().Add(24 * time.Hour))}
}

func (f *fakeAuth) user(id string) *authv1.User {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, u := range f.users {
		if u.Id == id {
			return u
		}
	}
	return nil
}

func (f *fakeAuth) StartSignIn(_ context.Context, req *connect.Request[authv1.StartSignInRequest]) (*connect.Response[authv1.StartSignInResponse], error) {
	if err := f.enter("StartSignIn"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.lastXFF = req.Header().Get("X-Forwarded-For")
	f.mu.Unlock()
	return connect.NewResponse(&authv1.StartSignInResponse{
		AuthorizationUrl: "https://id.example.com/authorize?state=st-123&return=" + req.Msg.ReturnTo, State: "st-123"}), nil
}

func (f *fakeAuth) FinishSignIn(_ context.Context, req *connect.Request[authv1.FinishSignInRequest]) (*connect.Response[authv1.FinishSignInResponse], error) {
	if err := f.enter("FinishSignIn"); err != nil {
		return nil, err
	}
	u := f.user(strings.TrimPrefix(req.Msg.Code, "code-"))
	if u == nil || req.Msg.State != "st-123" {
		return nil, connectkit.InvalidArgument("the sign-in code is invalid or expired")
	}
	f.mu.Lock()
	ret := f.returnTo
	f.mu.Unlock()
	if ret == "" {
		ret = "/admin"
	}
	return connect.NewResponse(&authv1.FinishSignInResponse{User: u, Tokens: f.tokens(u), ReturnTo: ret}), nil
}

func (f *fakeAuth) Refresh(_ context.Context, req *connect.Request[authv1.RefreshRequest]) (*connect.Response[authv1.RefreshResponse], error) {
	if err := f.enter("Refresh"); err != nil {
		return nil, err
	}
	u := f.user(strings.TrimPrefix(req.Msg.RefreshToken, "rt-"))
	if u == nil {
		return nil, connectkit.Unauthenticated("refresh token is invalid")
	}
	return connect.NewResponse(&authv1.RefreshResponse{User: u, Tokens: f.tokens(u)}), nil
}

func (f *fakeAuth) SignOut(_ context.Context, req *connect.Request[authv1.SignOutRequest]) (*connect.Response[authv1.SignOutResponse], error) {
	if err := f.enter("SignOut"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.signOuts = append(f.signOuts, req.Msg.RefreshToken)
	f.mu.Unlock()
	return connect.NewResponse(&authv1.SignOutResponse{}), nil
}

func (f *fakeAuth) ListUsers(ctx context.Context, req *connect.Request[authv1.ListUsersRequest]) (*connect.Response[authv1.ListUsersResponse], error) {
	if err := f.enter("ListUsers"); err != nil {
		return nil, err
	}
	if p, _ := authz.FromContext(ctx); !p.CanManageUsers() {
		return nil, connectkit.PermissionDenied("admins only")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*authv1.User
	for _, u := range f.users {
		if strings.Contains(u.Email, req.Msg.EmailQuery) {
			out = append(out, u)
		}
	}
	return connect.NewResponse(&authv1.ListUsersResponse{Users: out}), nil
}

func (f *fakeAuth) SetRoles(ctx context.Context, req *connect.Request[authv1.SetRolesRequest]) (*connect.Response[authv1.SetRolesResponse], error) {
	if err := f.enter("SetRoles"); err != nil {
		return nil, err
	}
	if p, _ := authz.FromContext(ctx); !p.CanManageUsers() {
		return nil, connectkit.PermissionDenied("admins only")
	}
	if _, err := authz.ParseRoles(req.Msg.Roles); err != nil {
		return nil, connectkit.InvalidArgument(err.Error())
	}
	u := f.user(req.Msg.UserId)
	if u == nil {
		return nil, connectkit.NotFound("no such user")
	}
	f.mu.Lock()
	u.Roles = req.Msg.Roles
	f.setRoles[u.Id] = req.Msg.Roles
	f.mu.Unlock()
	return connect.NewResponse(&authv1.SetRolesResponse{User: u}), nil
}

// fakeMedia implements the media HTTP API and checks the bearer token.
type fakeMedia struct {
	verifier *token.Verifier
	mu       sync.Mutex
	items    []MediaItem
	uploads  [][]byte
	calls    int
	limited  bool // every request is refused by a rate limit
}

func (f *fakeMedia) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.calls++
	limited := f.limited
	f.mu.Unlock()
	if limited {
		w.Header().Set("Retry-After", "17")
		http.Error(w, `{"error":"too many uploads"}`, http.StatusTooManyRequests)
		return
	}
	auth := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	claims, err := f.verifier.Verify(auth)
	if err != nil {
		http.Error(w, `{"error":"sign in first"}`, http.StatusUnauthorized)
		return
	}
	p, _ := authz.FromClaims(claims)
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/media/api/items":
		_ = json.NewEncoder(w).Encode(map[string]any{"items": f.items})
	case r.Method == http.MethodPost && r.URL.Path == "/media/upload":
		if !p.CanUploadMedia() {
			http.Error(w, `{"error":"authors only"}`, http.StatusForbidden)
			return
		}
		file, hdr, err := r.FormFile("file")
		if err != nil {
			http.Error(w, `{"error":"no file"}`, http.StatusBadRequest)
			return
		}
		b, _ := io.ReadAll(file)
		if !strings.HasPrefix(hdr.Header.Get("Content-Type"), "image/") {
			w.WriteHeader(http.StatusUnsupportedMediaType)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "only images are accepted"})
			return
		}
		it := MediaItem{ID: fmt.Sprintf("m%d", len(f.items)+1), Name: hdr.Filename, URL: "/media/" + hdr.Filename,
			ContentType: hdr.Header.Get("Content-Type"), Size: int64(len(b)), UploaderID: p.UserID}
		f.items = append(f.items, it)
		f.uploads = append(f.uploads, b)
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(it)
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/media/api/items/"):
		id := strings.TrimPrefix(r.URL.Path, "/media/api/items/")
		for i, it := range f.items {
			if it.ID == id {
				f.items = append(f.items[:i], f.items[i+1:]...)
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
	default:
		http.NotFound(w, r)
	}
}

func serveConnect(path string, h http.Handler) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle(path, h)
	return httptest.NewServer(mux)
}

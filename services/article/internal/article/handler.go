package article

import (
	"context"
	"errors"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"pressroom.dev/kit/authz"
	"pressroom.dev/kit/connectkit"
	articlev1 "pressroom.dev/proto/gen/article/v1"
	"pressroom.dev/proto/gen/article/v1/articlev1connect"
)

// AnonymousProcedures may be called without a token (public reads).
var AnonymousProcedures = []string{
	articlev1connect.ArticleServiceGetArticleProcedure,
	articlev1connect.ArticleServiceListArticlesProcedure,
}

// Handler is the Connect transport of ArticleService.
type Handler struct{ svc *Service }

var _ articlev1connect.ArticleServiceHandler = (*Handler)(nil)

func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

func principal(ctx context.Context) authz.Principal {
	p, _ := authz.FromContext(ctx)
	return p
}

// toConnect maps domain errors to Connect codes; anything else is internal
// and its message hidden (connectkit.ErrorFrom).
func toConnect(err error) error {
	var de *Error
	if errors.As(err, &de) {
		switch de.Kind {
		case KindInvalid:
			return connectkit.InvalidArgument(de.Msg)
		case KindNotFound:
			return connectkit.NotFound(de.Msg)
		case KindPermission:
			return connectkit.PermissionDenied(de.Msg)
		case KindUnauthenticated:
			return connectkit.Unauthenticated(de.Msg)
		case KindConflict:
			return connectkit.AlreadyExists(de.Msg)
		}
	}
	return connectkit.ErrorFrom(err)
}

func toProto(a *Article) *articlev1.Article {
	out := &articlev1.Article{
		Id: a.ID, Slug: a.Slug, Title: a.Title, Summary: a.Summary, BodyMarkdown: a.BodyMarkdown,
		CoverMedia: a.CoverMedia, AuthorId: a.AuthorID, AuthorName: a.AuthorName,
		Status:    articlev1.ArticleStatus_ARTICLE_STATUS_DRAFT,
		CreatedAt: timestamppb.New(a.CreatedAt), UpdatedAt: timestamppb.New(a.UpdatedAt),
	}
	if a.Status == StatusPublished {
		out.Status = articlev1.ArticleStatus_ARTICLE_STATUS_PUBLISHED
	}
	if a.PublishedAt != nil {
		out.PublishedAt = timestamppb.New(*a.PublishedAt)
	}
	return out
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (h *Handler) CreateArticle(ctx context.Context, req *connect.Request[articlev1.CreateArticleRequest]) (*connect.Response[articlev1.CreateArticleResponse], error) {
	m := req.Msg
	a, err := h.svc.Create(ctx, principal(ctx), Fields{Title: &m.Title, Slug: nonEmpty(m.Slug),
		Summary: &m.Summary, BodyMarkdown: &m.BodyMarkdown, CoverMedia: &m.CoverMedia})
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&articlev1.CreateArticleResponse{Article: toProto(a)}), nil
}

func (h *Handler) UpdateArticle(ctx context.Context, req *connect.Request[articlev1.UpdateArticleRequest]) (*connect.Response[articlev1.UpdateArticleResponse], error) {
	m := req.Msg
	a, err := h.svc.Update(ctx, principal(ctx), m.Id, Fields{Title: m.Title, Slug: m.Slug,
		Summary: m.Summary, BodyMarkdown: m.BodyMarkdown, CoverMedia: m.CoverMedia})
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&articlev1.UpdateArticleResponse{Article: toProto(a)}), nil
}

func (h *Handler) DeleteArticle(ctx context.Context, req *connect.Request[articlev1.DeleteArticleRequest]) (*connect.Response[articlev1.DeleteArticleResponse], error) {
	if err := h.svc.Delete(ctx, principal(ctx), req.Msg.Id); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&articlev1.DeleteArticleResponse{}), nil
}

func (h *Handler) GetArticle(ctx context.Context, req *connect.Request[articlev1.GetArticleRequest]) (*connect.Response[articlev1.GetArticleResponse], error) {
	a, err := h.svc.Get(ctx, principal(ctx), req.Msg.GetId(), req.Msg.GetSlug())
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&articlev1.GetArticleResponse{Article: toProto(a)}), nil
}

func (h *Handler) ListArticles(ctx context.Context, req *connect.Request[articlev1.ListArticlesRequest]) (*connect.Response[articlev1.ListArticlesResponse], error) {
	m := req.Msg
	q := ListQuery{PageSize: int(m.PageSize), PageToken: m.PageToken, AuthorID: m.AuthorId}
	switch m.Status {
	case articlev1.ArticleStatus_ARTICLE_STATUS_UNSPECIFIED:
	case articlev1.ArticleStatus_ARTICLE_STATUS_DRAFT:
		q.Status = StatusDraft
	case articlev1.ArticleStatus_ARTICLE_STATUS_PUBLISHED:
		q.Status = StatusPublished
	default:
		return nil, connectkit.InvalidArgument("status must be ARTICLE_STATUS_DRAFT, ARTICLE_STATUS_PUBLISHED or unset")
	}
	rows, next, err := h.svc.List(ctx, principal(ctx), q)
	if err != nil {
		return nil, toConnect(err)
	}
	out := &articlev1.ListArticlesResponse{NextPageToken: next, Articles: make([]*articlev1.Article, len(rows))}
	for i, a := range rows {
		out.Articles[i] = toProto(a)
	}
	return connect.NewResponse(out), nil
}

func (h *Handler) PublishArticle(ctx context.Context, req *connect.Request[articlev1.PublishArticleRequest]) (*connect.Response[articlev1.PublishArticleResponse], error) {
	a, err := h.svc.Publish(ctx, principal(ctx), req.Msg.Id)
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&articlev1.PublishArticleResponse{Article: toProto(a)}), nil
}

func (h *Handler) UnpublishArticle(ctx context.Context, req *connect.Request[articlev1.UnpublishArticleRequest]) (*connect.Response[articlev1.UnpublishArticleResponse], error) {
	a, err := h.svc.Unpublish(ctx, principal(ctx), req.Msg.Id)
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&articlev1.UnpublishArticleResponse{Article: toProto(a)}), nil
}

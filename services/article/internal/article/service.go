package article

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"pressroom.dev/kit/authz"
	"pressroom.dev/kit/ids"
)

// Limits on what a caller may store.
const (
	MaxTitleLen    = 200
	MaxSummaryLen  = 1000
	MaxBodyBytes   = 512 << 10
	MaxCoverLen    = 500
	DefaultPage    = 20
	MaxPage        = 100
	maxSlugRetries = 5
)

// Kind classifies domain errors; the transport maps each to a status code.
type Kind int

const (
	KindInvalid Kind = iota + 1
	KindNotFound
	KindPermission
	KindUnauthenticated
	KindConflict
)

// Error is a domain error whose message is safe to show to the caller.
type Error struct {
	Kind Kind
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

func invalid(format string, a ...any) error { return &Error{KindInvalid, fmt.Sprintf(format, a...)} }

var (
	errNotFound     = &Error{KindNotFound, "article not found"}
	errUnauthorized = &Error{KindUnauthenticated, "sign in first: this needs a valid bearer token"}
)

// Service holds the article rules: who may do what, slugs, and the domain
// events written with each change.
type Service struct {
	store     *Store
	publicURL string
	now       func() time.Time
}

func NewService(store *Store, publicURL string) *Service {
	return &Service{store: store, publicURL: publicURL, now: time.Now}
}

// Fields are the editable parts of an article; nil means "leave unchanged".
type Fields struct {
	Title, Slug, Summary, BodyMarkdown, CoverMedia *string
}

func validate(f Fields) error {
	var probs []string
	if f.Title != nil {
		t := strings.TrimSpace(*f.Title)
		switch {
		case t == "":
			probs = append(probs, "title is required")
		case utf8.RuneCountInString(t) > MaxTitleLen:
			probs = append(probs, fmt.Sprintf("title is longer than %d characters", MaxTitleLen))
		}
	}
	if f.Slug != nil && *f.Slug != "" {
		if err := ValidateSlug(*f.Slug); err != nil {
			probs = append(probs, err.Error())
		}
	}
	if f.Summary != nil && utf8.RuneCountInString(*f.Summary) > MaxSummaryLen {
		probs = append(probs, fmt.Sprintf("summary is longer than %d characters", MaxSummaryLen))
	}
	if f.BodyMarkdown != nil && len(*f.BodyMarkdown) > MaxBodyBytes {
		probs = append(probs, fmt.Sprintf("body_markdown is larger than %d KiB", MaxBodyBytes>>10))
	}
	if f.CoverMedia != nil && *f.CoverMedia != "" {
		c := *f.CoverMedia
		if len(c) > MaxCoverLen || !ids.IsMediaFilePath(c) {
			probs = append(probs, fmt.Sprintf("cover_media %q must be empty or the path of a media file, \"/media/<hash>.<ext>\" as the media library lists it", c))
		}
	}
	for _, s := range []*string{f.Title, f.Summary, f.BodyMarkdown} {
		if s != nil && !ids.IsText(*s) {
			probs = append(probs, "text must be valid UTF-8 without NUL characters")
			break
		}
	}
	if len(probs) > 0 {
		return invalid("%s", strings.Join(probs, "; "))
	}
	return nil
}

func checkID(id string) error {
	if !ids.IsUUID(id) {
		return invalid("id %q is not an article id (a UUID such as 3f2b…)", id)
	}
	return nil
}

// Create stores a draft owned by the caller.
func (s *Service) Create(ctx context.Context, p authz.Principal, f Fields) (*Article, error) {
	if !p.Authenticated() {
		return nil, errUnauthorized
	}
	if !p.CanCreateArticle() {
		return nil, &Error{KindPermission, "only authors and admins can write articles"}
	}
	if f.Title == nil {
		f.Title = new(string)
	}
	if err := validate(f); err != nil {
		return nil, err
	}
	a := &Article{
		Title:    strings.TrimSpace(*f.Title),
		AuthorID: p.UserID,
		// The byline is the name only: an e-mail address is never published,
		// so an author without a name gets no byline.
		AuthorName: strings.TrimSpace(p.Name),
		SlugAuto:   f.Slug == nil || *f.Slug == "",
	}
	if strings.Contains(a.AuthorName, "@") {
		a.AuthorName = ""
	}
	if f.Summary != nil {
		a.Summary = *f.Summary
	}
	if f.BodyMarkdown != nil {
		a.BodyMarkdown = *f.BodyMarkdown
	}
	if f.CoverMedia != nil {
		a.CoverMedia = *f.CoverMedia
	}
	var out *Article
	err := s.store.InTx(ctx, func(tx pgx.Tx) error {
		var err error
		if !a.SlugAuto {
			a.Slug = *f.Slug
			out, err = insertArticle(ctx, tx, a)
			if errors.Is(err, errSlugTaken) {
				return &Error{KindConflict, fmt.Sprintf("slug %q is already used by another article; choose another", a.Slug)}
			}
			return err
		}
		return withFreeSlug(ctx, tx, baseSlug(a.Title), func(slug string) error {
			a.Slug = slug
			out, err = insertArticle(ctx, tx, a)
			return err
		})
	})
	return out, err
}

// baseSlug is the slug generated for a title, short enough to take a
// "-N" suffix.
func baseSlug(title string) string {
	s := Slugify(title)
	if len(s) > MaxSlugLen-8 {
		s = strings.TrimRight(s[:MaxSlugLen-8], "-")
	}
	if s == "" {
		return "article"
	}
	return s
}

// withFreeSlug calls try with base, or base-N for the next free N when base
// is taken (a random suffix once N would pass maxSlugNumber, see freeSlug).
// A concurrent writer may take the same slug first; then it looks again, a
// few times. If the lookup offers a slug already refused in this loop,
// numbering is stuck, so that attempt draws a random suffix instead.
func withFreeSlug(ctx context.Context, tx pgx.Tx, base string, try func(slug string) error) error {
	refused := make([]string, 0, maxSlugRetries)
	for range maxSlugRetries {
		slug, err := freeSlug(ctx, tx, base)
		if err == nil && slices.Contains(refused, slug) {
			slug, err = withRandomSuffix(base)
		}
		if err != nil {
			return err
		}
		if err := try(slug); !errors.Is(err, errSlugTaken) {
			return err
		}
		refused = append(refused, slug)
	}
	return &Error{KindConflict, fmt.Sprintf("no free slug near %q; set one explicitly", base)}
}

// loadForWrite locks the article and checks the caller may change it.
// A draft the caller may not read answers NotFound, like a missing id; what
// that does and does not hide is spelled out on checkWrite.
func (s *Service) loadForWrite(ctx context.Context, tx pgx.Tx, p authz.Principal, id string, deleting bool) (*Article, error) {
	if !p.Authenticated() {
		return nil, errUnauthorized
	}
	if err := checkID(id); err != nil {
		return nil, err
	}
	a, err := getByID(ctx, tx, id, true)
	if errors.Is(err, ErrNoRow) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	return a, checkWrite(p, a, deleting)
}

// checkWrite says whether p may change (or delete) a. A draft p may not read
// answers NotFound here, as it does from GetArticle (by id or slug), and
// ListArticles leaves it out: no call shows such a draft. Its slug is not
// hidden, though: slugs are unique across all articles, so the namespace is
// shared and a taken slug is visible as taken (CreateArticle or UpdateArticle
// with that slug answers AlreadyExists; a same-titled article gets "-2").
func checkWrite(p authz.Principal, a *Article, deleting bool) error {
	if !p.CanReadArticle(a.Status == StatusPublished, a.AuthorID) {
		return errNotFound
	}
	allowed := p.CanEditArticle(a.AuthorID)
	if deleting {
		allowed = p.CanDeleteArticle(a.AuthorID)
	}
	if !allowed {
		return &Error{KindPermission, "only the article's author or an admin can change it"}
	}
	return nil
}

// Update changes the given fields. A draft whose slug was generated follows
// its title; a published article keeps its slug unless one is given.
func (s *Service) Update(ctx context.Context, p authz.Principal, id string, f Fields) (*Article, error) {
	if err := validate(f); err != nil {
		return nil, err
	}
	var out *Article
	err := s.store.InTx(ctx, func(tx pgx.Tx) error {
		a, err := s.loadForWrite(ctx, tx, p, id, false)
		if err != nil {
			return err
		}
		if f.Title != nil {
			a.Title = strings.TrimSpace(*f.Title)
		}
		if f.Summary != nil {
			a.Summary = *f.Summary
		}
		if f.BodyMarkdown != nil {
			a.BodyMarkdown = *f.BodyMarkdown
		}
		if f.CoverMedia != nil {
			a.CoverMedia = *f.CoverMedia
		}
		switch {
		case f.Slug != nil && *f.Slug != "":
			a.Slug, a.SlugAuto = *f.Slug, false
			out, err = updateArticle(ctx, tx, a)
			if errors.Is(err, errSlugTaken) {
				return &Error{KindConflict, fmt.Sprintf("slug %q is already used by another article; choose another", a.Slug)}
			}
			return err
		case f.Slug != nil: // explicit "" asks for a slug generated from the title again
			a.SlugAuto = true
			fallthrough
		case a.SlugAuto && a.Status == StatusDraft && f.Title != nil:
			base := baseSlug(a.Title)
			if base == a.Slug || isSuffixOf(a.Slug, base) {
				out, err = updateArticle(ctx, tx, a)
				return err
			}
			return withFreeSlug(ctx, tx, base, func(slug string) error {
				a.Slug = slug
				out, err = updateArticle(ctx, tx, a)
				return err
			})
		default:
			out, err = updateArticle(ctx, tx, a)
			return err
		}
	})
	return out, err
}

// isSuffixOf reports whether slug is base plus a "-N" suffix from withFreeSlug,
// so a draft that got "title-2" keeps it when the title is saved unchanged.
func isSuffixOf(slug, base string) bool {
	rest := strings.TrimPrefix(slug, base+"-")
	if rest == "" || rest == slug {
		return false
	}
	for _, r := range rest {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// Delete removes the article and records articles.deleted.
func (s *Service) Delete(ctx context.Context, p authz.Principal, id string) error {
	return s.store.InTx(ctx, func(tx pgx.Tx) error {
		a, err := s.loadForWrite(ctx, tx, p, id, true)
		if err != nil {
			return err
		}
		if err := deleteArticle(ctx, tx, a.ID); err != nil {
			return err
		}
		ev, err := newEvent(ctx, SubjectDeleted, a, s.publicURL, s.now())
		if err != nil {
			return err
		}
		return insertOutbox(ctx, tx, ev)
	})
}

// Publish makes a draft public and records articles.published. Publishing a
// published article changes nothing and records nothing (safe to retry).
func (s *Service) Publish(ctx context.Context, p authz.Principal, id string) (*Article, error) {
	return s.setStatus(ctx, p, id, StatusPublished)
}

// Unpublish turns a published article back into a draft and records
// articles.unpublished; on a draft it changes nothing.
func (s *Service) Unpublish(ctx context.Context, p authz.Principal, id string) (*Article, error) {
	return s.setStatus(ctx, p, id, StatusDraft)
}

func (s *Service) setStatus(ctx context.Context, p authz.Principal, id, status string) (*Article, error) {
	if !p.Authenticated() {
		return nil, errUnauthorized
	}
	if err := checkID(id); err != nil {
		return nil, err
	}
	a, err := s.store.changeStatus(ctx, id, func(a *Article) (*OutboxEvent, error) {
		if err := checkWrite(p, a, false); err != nil {
			return nil, err
		}
		if a.Status == status {
			return nil, nil
		}
		now := s.now()
		a.Status = status
		subject := SubjectPublished
		if status == StatusPublished {
			a.PublishedAt = &now
		} else {
			a.PublishedAt = nil
			subject = SubjectUnpublished
		}
		// The event needs only fields the status change leaves alone.
		ev, err := newEvent(ctx, subject, a, s.publicURL, now)
		return &ev, err
	})
	if errors.Is(err, ErrNoRow) {
		return nil, errNotFound
	}
	return a, err
}

// Get finds an article by id or slug (exactly one of them).
func (s *Service) Get(ctx context.Context, p authz.Principal, id, slug string) (*Article, error) {
	var (
		a   *Article
		err error
	)
	switch {
	case id != "" && slug != "":
		return nil, invalid("give either id or slug, not both")
	case id != "":
		if err := checkID(id); err != nil {
			return nil, err
		}
		a, err = getByID(ctx, s.store.pool, id, false)
	case slug != "":
		if ValidateSlug(slug) != nil {
			return nil, errNotFound // no article can have it
		}
		a, err = getBySlug(ctx, s.store.pool, slug)
	default:
		return nil, invalid("give the article's id or slug")
	}
	if errors.Is(err, ErrNoRow) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	if !p.CanReadArticle(a.Status == StatusPublished, a.AuthorID) {
		return nil, errNotFound
	}
	return a, nil
}

// ListQuery selects a page; Status is "", StatusDraft or StatusPublished.
type ListQuery struct {
	PageSize  int
	PageToken string
	Status    string
	AuthorID  string
}

// List returns what the caller may see, newest first, and the next page token.
func (s *Service) List(ctx context.Context, p authz.Principal, q ListQuery) ([]*Article, string, error) {
	if q.PageSize < 0 || q.PageSize > MaxPage {
		return nil, "", invalid("page_size %d is out of range: use 1..%d (0 means %d)", q.PageSize, MaxPage, DefaultPage)
	}
	if q.PageSize == 0 {
		q.PageSize = DefaultPage
	}
	if q.AuthorID != "" && !ids.IsUUID(q.AuthorID) {
		return nil, "", invalid("author_id %q is not a user id (a UUID)", q.AuthorID)
	}
	f := ListFilter{Status: q.Status, AuthorID: q.AuthorID, Limit: q.PageSize + 1, AllDrafts: p.IsAdmin()}
	// Own drafts are listed to whoever may still edit them: an author who
	// lost the role no longer sees them, as GetArticle no longer shows them.
	if p.CanCreateArticle() {
		f.ViewerID = p.UserID
	}
	if q.PageToken != "" {
		c, err := decodeCursor(q.PageToken)
		if err != nil {
			return nil, "", invalid("%s", err.Error())
		}
		f.After = &c
	}
	rows, err := s.store.List(ctx, f)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(rows) > q.PageSize {
		rows = rows[:q.PageSize]
		last := rows[len(rows)-1]
		next = cursor{SortAt: last.SortAt, ID: last.ID}.encode()
	}
	return rows, next, nil
}

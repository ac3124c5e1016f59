package article

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Status values as stored.
const (
	StatusDraft     = "draft"
	StatusPublished = "published"
)

// Article is one row of the articles table.
type Article struct {
	ID           string     `db:"id"`
	Slug         string     `db:"slug"`
	SlugAuto     bool       `db:"slug_auto"`
	Title        string     `db:"title"`
	Summary      string     `db:"summary"`
	BodyMarkdown string     `db:"body_markdown"`
	CoverMedia   string     `db:"cover_media"`
	Status       string     `db:"status"`
	AuthorID     string     `db:"author_id"`
	AuthorName   string     `db:"author_name"`
	CreatedAt    time.Time  `db:"created_at"`
	UpdatedAt    time.Time  `db:"updated_at"`
	PublishedAt  *time.Time `db:"published_at"`
	SortAt       time.Time  `db:"sort_at"`
}

// OutboxEvent is a row to add to the outbox.
type OutboxEvent struct {
	EventID string
	Subject string
	Payload []byte
	Headers map[string]string
}

const columns = `id::text, slug, slug_auto, title, summary, body_markdown, cover_media, status,
	author_id, author_name, created_at, updated_at, published_at, sort_at`

// db is what both the pool and a transaction offer.
type db interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Store reads and writes article_db.
type Store struct {
	pool    *pgxpool.Pool
	changes *statusChanges
}

func NewStore(pool *pgxpool.Pool) *Store {
	s := &Store{pool: pool}
	// Up to two groups in flight (one on a pool of one or two connections);
	// when the second may start, see statusChanges.do.
	s.changes = &statusChanges{store: s, maxWorkers: max(1, min(2, int(pool.Config().MaxConns)/2))}
	return s
}

// ErrNoRow means the article does not exist.
var ErrNoRow = errors.New("article not found")

// errSlugTaken means the unique slug index refused the row.
var errSlugTaken = errors.New("slug taken")

// InTx runs fn in one transaction: committed when fn returns nil.
func (s *Store) InTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, fn)
}

func scanOne(rows pgx.Rows) (*Article, error) {
	a, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[Article])
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNoRow
	}
	return a, err
}

func getByID(ctx context.Context, q db, id string, forUpdate bool) (*Article, error) {
	sql := `SELECT ` + columns + ` FROM articles WHERE id = $1`
	if forUpdate {
		sql += ` FOR UPDATE`
	}
	rows, err := q.Query(ctx, sql, id)
	if err != nil {
		return nil, err
	}
	return scanOne(rows)
}

func getBySlug(ctx context.Context, q db, slug string) (*Article, error) {
	rows, err := q.Query(ctx, `SELECT `+columns+` FROM articles WHERE slug = $1`, slug)
	if err != nil {
		return nil, err
	}
	return scanOne(rows)
}

func isSlugViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "articles_slug_key"
}

// insertArticle adds a row; a taken slug returns errSlugTaken. A savepoint
// keeps the surrounding transaction usable so the caller can try another slug.
func insertArticle(ctx context.Context, tx pgx.Tx, a *Article) (*Article, error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := sp.Query(ctx, `INSERT INTO articles (slug, slug_auto, title, summary, body_markdown, cover_media, author_id, author_name)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING `+columns,
		a.Slug, a.SlugAuto, a.Title, a.Summary, a.BodyMarkdown, a.CoverMedia, a.AuthorID, a.AuthorName)
	if err != nil {
		_ = sp.Rollback(ctx)
		return nil, err
	}
	out, err := scanOne(rows)
	if err != nil {
		_ = sp.Rollback(ctx)
		if isSlugViolation(err) {
			return nil, errSlugTaken
		}
		return nil, err
	}
	return out, sp.Commit(ctx)
}

// updateArticle writes every editable field of a; a taken slug returns errSlugTaken.
func updateArticle(ctx context.Context, tx pgx.Tx, a *Article) (*Article, error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := sp.Query(ctx, `UPDATE articles SET slug = $2, slug_auto = $3, title = $4, summary = $5,
		body_markdown = $6, cover_media = $7, status = $8, published_at = $9, updated_at = now()
		WHERE id = $1 RETURNING `+columns,
		a.ID, a.Slug, a.SlugAuto, a.Title, a.Summary, a.BodyMarkdown, a.CoverMedia, a.Status, a.PublishedAt)
	if err != nil {
		_ = sp.Rollback(ctx)
		return nil, err
	}
	out, err := scanOne(rows)
	if err != nil {
		_ = sp.Rollback(ctx)
		if isSlugViolation(err) {
			return nil, errSlugTaken
		}
		return nil, err
	}
	return out, sp.Commit(ctx)
}

// freeSlug returns base when no article uses it, else base-N with N one
// past the highest suffix in use. Past maxSlugNumber (anyone may set the
// slug base-999999 by hand) it returns a random suffix instead, which the
// lookup never counts, so numbering cannot be pushed into a dead end.
func freeSlug(ctx context.Context, q db, base string) (string, error) {
	var taken bool
	var maxN int
	err := q.QueryRow(ctx, freeSlugSQL, base).Scan(&taken, &maxN)
	if err != nil || !taken {
		return base, err
	}
	if maxN >= maxSlugNumber {
		return withRandomSuffix(base)
	}
	return withSuffix(base, maxN+1), nil
}

// freeSlugSQL: every "<base>-…" sorts, byte-wise, from "<base>-" up to
// "<base>." ('-' and '.' are adjacent; base holds only [a-z0-9-]): a range
// the articles_slug_bytes index serves, where a LIKE with a parameter would
// scan every article. Only 1–6 digit suffixes count (maxSlugNumber), so the
// cast stays an int and 7-digit random suffixes never raise the maximum.
const freeSlugSQL = `SELECT coalesce(bool_or(slug = $1), false),
	coalesce(max(substring(slug FROM length($1) + 2)::int) FILTER (WHERE slug ~ ('^' || $1 || '-[0-9]{1,6}$')), 1)
	FROM articles WHERE slug = $1
		OR (slug COLLATE "C" >= $1 || '-' AND slug COLLATE "C" < $1 || '.')`

// changeStatus locks the article, lets decide look at it (nil event =
// nothing to do), and writes the change and its outbox event together,
// sharing the transaction with concurrent changes (see statusChanges).
func (s *Store) changeStatus(ctx context.Context, id string, decide func(a *Article) (*OutboxEvent, error)) (*Article, error) {
	return s.changes.do(ctx, id, decide)
}

// changeStatusAlone is one change in its own transaction, in two round trips
// instead of four: "BEGIN + SELECT … FOR UPDATE" as one batch, then decide,
// then "UPDATE + INSERT outbox + COMMIT" as another.
func (s *Store) changeStatusAlone(ctx context.Context, id string, decide func(a *Article) (*OutboxEvent, error)) (*Article, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	done := false
	defer func() {
		if !done { // any early return: end the transaction before the connection goes back
			_, _ = conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(`SELECT `+columns+` FROM articles WHERE id = $1 FOR UPDATE`, id)
	br := conn.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		br.Close()
		return nil, err
	}
	a, err := scanOne(rows)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	ev, err := decide(a)
	if err != nil || ev == nil {
		return a, err
	}
	hdr, err := json.Marshal(ev.Headers)
	if err != nil {
		return nil, err
	}
	b = &pgx.Batch{}
	b.Queue(`WITH u AS (
			UPDATE articles SET status = $2, published_at = $3, updated_at = now() WHERE id = $1 RETURNING *),
		o AS (INSERT INTO outbox (event_id, subject, payload, headers) SELECT $4, $5, $6, $7 FROM u)
		SELECT `+columns+` FROM u`, a.ID, a.Status, a.PublishedAt, ev.EventID, ev.Subject, ev.Payload, hdr)
	b.Queue("COMMIT")
	br = conn.SendBatch(ctx, b)
	defer br.Close()
	if rows, err = br.Query(); err != nil {
		return nil, err
	}
	if a, err = scanOne(rows); err != nil {
		return nil, err
	}
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	done = true
	return a, nil
}

func deleteArticle(ctx context.Context, q db, id string) error {
	_, err := q.Exec(ctx, `DELETE FROM articles WHERE id = $1`, id)
	return err
}

// insertOutbox adds a domain event; it must run in the transaction of the change.
func insertOutbox(ctx context.Context, tx pgx.Tx, e OutboxEvent) error {
	hdr, err := json.Marshal(e.Headers)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO outbox (event_id, subject, payload, headers) VALUES ($1, $2, $3, $4)`,
		e.EventID, e.Subject, e.Payload, hdr)
	if err != nil {
		return fmt.Errorf("write outbox event %s: %w", e.Subject, err)
	}
	return nil
}

// ListFilter selects a page of articles. Visibility is expressed in SQL so
// paging never returns short pages because of filtering in Go.
type ListFilter struct {
	Status   string // "" = any
	AuthorID string // "" = any
	// When set, drafts are only included if written by this user (authors).
	// When AllDrafts is true every draft is visible (admins).
	ViewerID  string
	AllDrafts bool
	After     *cursor
	Limit     int
}

func (s *Store) List(ctx context.Context, f ListFilter) ([]*Article, error) {
	sql := `SELECT ` + columns + ` FROM articles WHERE true`
	var args []any
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	if f.Status != "" {
		sql += ` AND status = ` + arg(f.Status)
	}
	if f.AuthorID != "" {
		sql += ` AND author_id = ` + arg(f.AuthorID)
	}
	if !f.AllDrafts {
		if f.ViewerID != "" {
			sql += ` AND (status = 'published' OR author_id = ` + arg(f.ViewerID) + `)`
		} else {
			sql += ` AND status = 'published'`
		}
	}
	if f.After != nil {
		sql += ` AND (sort_at, id) < (` + arg(f.After.SortAt) + `, ` + arg(f.After.ID) + `::uuid)`
	}
	sql += ` ORDER BY sort_at DESC, id DESC LIMIT ` + arg(f.Limit)
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToAddrOfStructByName[Article])
}

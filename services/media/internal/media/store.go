package media

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Item is one media record.
type Item struct {
	ID          string
	Name        Name
	ContentType string
	Size        int64
	Width       int
	Height      int
	UploaderID  string
	Filename    string // as uploaded, cleaned; display only
	CreatedAt   time.Time
}

// Store is media_db.
type Store struct{ pool *pgxpool.Pool }

func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// ErrNotFound: no such record.
var ErrNotFound = errors.New("no such media item")

const itemCols = `id::text, hash, ext, content_type, size, width, height, uploader_id, filename, created_at`

func scanItem(row pgx.Row) (Item, error) {
	var it Item
	var ext string
	err := row.Scan(&it.ID, &it.Name.Hash, &ext, &it.ContentType, &it.Size, &it.Width, &it.Height, &it.UploaderID, &it.Filename, &it.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Item{}, ErrNotFound
	}
	if err != nil {
		return Item{}, err
	}
	n, err := ParseName(it.Name.Hash + "." + ext)
	if err != nil {
		return Item{}, fmt.Errorf("media row %s holds a bad name: %w", it.ID, err)
	}
	it.Name = n
	return it, nil
}

// lockClass namespaces our advisory locks ("medi") away from goose's.
const lockClass = 0x6d656469

// hashLockKey maps a hash to the second advisory-lock key.
func hashLockKey(hash string) int32 {
	b, _ := hex.DecodeString(hash[:8])
	return int32(binary.BigEndian.Uint32(b))
}

// WithHashLock runs fn while holding a session advisory lock on hash, so
// publishing a file + inserting its row never interleaves with deleting the
// last row + removing the file (across replicas too). fn gets a connection
// that holds the lock; the lock is released when fn returns.
func (s *Store) WithHashLock(ctx context.Context, hash string, fn func(conn *pgxpool.Conn) error) (err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1, $2)`, int32(lockClass), hashLockKey(hash)); err != nil {
		return err
	}
	defer func() {
		// Unlock even when ctx is done; a dead connection drops the lock anyway.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, uerr := conn.Exec(uctx, `SELECT pg_advisory_unlock($1, $2)`, int32(lockClass), hashLockKey(hash)); uerr != nil {
			conn.Conn().Close(uctx) // never return a connection that may still hold the lock
			err = errors.Join(err, uerr)
		}
	}()
	return fn(conn)
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// insertOrGet stores it, or returns the row the same uploader already has
// for the same bytes.
func insertOrGet(ctx context.Context, q querier, it Item) (Item, bool, error) {
	row := q.QueryRow(ctx, `INSERT INTO media (hash, ext, content_type, size, width, height, uploader_id, filename)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (uploader_id, hash) DO NOTHING
		RETURNING `+itemCols,
		it.Name.Hash, it.Name.Format.Ext, it.ContentType, it.Size, it.Width, it.Height, it.UploaderID, it.Filename)
	got, err := scanItem(row)
	if err == nil {
		return got, true, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return Item{}, false, err
	}
	got, err = scanItem(q.QueryRow(ctx, `SELECT `+itemCols+` FROM media WHERE uploader_id = $1 AND hash = $2`, it.UploaderID, it.Name.Hash))
	return got, false, err
}

func countHash(ctx context.Context, q querier, hash string) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, `SELECT count(*) FROM media WHERE hash = $1`, hash).Scan(&n)
	return n, err
}

// Get returns the record with id (a UUID).
func (s *Store) Get(ctx context.Context, id string) (Item, error) {
	return scanItem(s.pool.QueryRow(ctx, `SELECT `+itemCols+` FROM media WHERE id = $1`, id))
}

// ContentTypeOf returns the content type recorded for a published name, or
// ErrNotFound when no record references it.
func (s *Store) ContentTypeOf(ctx context.Context, n Name) (string, error) {
	var ct string
	err := s.pool.QueryRow(ctx, `SELECT content_type FROM media WHERE hash = $1 AND ext = $2 LIMIT 1`, n.Hash, n.Format.Ext).Scan(&ct)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", ErrNotFound
	}
	return ct, err
}

// Cursor is a position in the newest-first listing.
type Cursor struct {
	CreatedAt time.Time
	ID        string
}

// List returns up to limit records, newest first, after cur (nil = start),
// only uploader's when uploader is not empty.
func (s *Store) List(ctx context.Context, uploader string, cur *Cursor, limit int) ([]Item, error) {
	var (
		after   *time.Time
		afterID *string
	)
	if cur != nil {
		after, afterID = &cur.CreatedAt, &cur.ID
	}
	rows, err := s.pool.Query(ctx, `SELECT `+itemCols+` FROM media
		WHERE ($1 = '' OR uploader_id = $1)
		  AND ($2::uuid IS NULL OR (created_at, id) < ($3::timestamptz, $2::uuid))
		ORDER BY created_at DESC, id DESC
		LIMIT $4`, uploader, afterID, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Item
	for rows.Next() {
		it, err := scanItem(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, rows.Err()
}

// Hashes returns every hash some record references (for the orphan sweep).
func (s *Store) Hashes(ctx context.Context) (map[string]bool, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT hash FROM media`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			return nil, err
		}
		out[h] = true
	}
	return out, rows.Err()
}

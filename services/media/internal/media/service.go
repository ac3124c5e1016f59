package media

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"

	"pressroom.dev/kit/authz"
	"pressroom.dev/services/media/internal/imaging"
)

// Domain errors; the transport maps each to a status code.
var (
	ErrForbidden   = errors.New("forbidden")
	ErrEmpty       = errors.New("the file is empty")
	ErrTooLarge    = errors.New("the file is too large")
	ErrInterrupted = errors.New("the upload was interrupted before the file was complete")
)

// Service is the media domain: upload, list, delete, serve.
type Service struct {
	store    *Store
	files    *Files
	maxBytes int64
	log      *slog.Logger
	served   *nameCache
}

// NewService wires the store and the file tree; maxBytes limits one file.
func NewService(store *Store, files *Files, maxBytes int64, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{store: store, files: files, maxBytes: maxBytes, log: log, served: newNameCache(4096, time.Minute)}
}

// MaxBytes is the largest accepted file.
func (s *Service) MaxBytes() int64 { return s.maxBytes }

// Upload streams r to a temp file while hashing it, validates the bytes,
// and publishes them under their content name. filename is the client's
// name for the file, kept for display only. On any error nothing is left
// behind: no file, no row.
func (s *Service) Upload(ctx context.Context, p authz.Principal, filename string, r io.Reader) (Item, bool, error) {
	if !p.CanUploadMedia() {
		return Item{}, false, fmt.Errorf("%w: only authors and admins may upload media", ErrForbidden)
	}
	head := make([]byte, imaging.SniffLen)
	n, err := io.ReadFull(r, head)
	more := err == nil // head is full: the body may go on
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		head = head[:n] // a small file: all of it is in head
	case err != nil:
		return Item{}, false, readErr(err)
	}
	if n == 0 {
		return Item{}, false, ErrEmpty
	}
	// Refuse non-images before writing anything to disk.
	if _, ok := imaging.Sniff(head); !ok {
		return Item{}, false, imaging.ErrUnsupported
	}
	if int64(n) > s.maxBytes {
		return Item{}, false, ErrTooLarge
	}

	tmp, err := s.files.CreateTemp()
	if err != nil {
		return Item{}, false, err
	}
	published := false
	defer func() {
		tmp.Close()
		if !published {
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	w := io.MultiWriter(tmp, h)
	if _, err := w.Write(head); err != nil {
		return Item{}, false, err
	}
	size := int64(n)
	if more {
		// Read one byte past the limit to tell "exactly max" from "more".
		copied, err := io.Copy(w, io.LimitReader(r, s.maxBytes-size+1))
		size += copied
		if err != nil {
			return Item{}, false, readErr(err)
		}
		if size > s.maxBytes {
			return Item{}, false, ErrTooLarge
		}
	}
	if err := tmp.Sync(); err != nil {
		return Item{}, false, err
	}
	info, err := imaging.Inspect(tmp, size)
	if err != nil {
		return Item{}, false, err
	}
	if err := tmp.Close(); err != nil {
		return Item{}, false, err
	}
	name := Name{Hash: HashOf(h.Sum(nil)), Format: info.Format}
	want := Item{Name: name, ContentType: info.Format.ContentType, Size: size,
		Width: info.Width, Height: info.Height, UploaderID: p.UserID, Filename: CleanFilename(filename)}

	var (
		item    Item
		created bool
	)
	err = s.store.WithHashLock(ctx, name.Hash, func(conn *pgxpool.Conn) error {
		fileCreated, err := s.files.Publish(tmp.Name(), name)
		if err != nil {
			return err
		}
		published = true // the temp file is gone either way
		item, created, err = insertOrGet(ctx, conn, want)
		if err != nil && fileCreated {
			// The file is new and no row references it: take it back.
			if rerr := s.files.Remove(name); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
		return err
	})
	if err != nil {
		return Item{}, false, err
	}
	return item, created, nil
}

// MaxFilename is how many characters of a client's file name are kept.
const MaxFilename = 200

// CleanFilename keeps the last path element of a client-supplied name,
// without control characters or invalid UTF-8, at most MaxFilename runes.
func CleanFilename(s string) string {
	if i := strings.LastIndexAny(s, `/\`); i >= 0 {
		s = s[i+1:]
	}
	s = strings.ToValidUTF8(s, "")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if utf8.RuneCountInString(s) > MaxFilename {
		s = string([]rune(s)[:MaxFilename])
	}
	if s == "." || s == ".." {
		return ""
	}
	return s
}

// readErr classifies a failure to read the request body.
func readErr(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return ErrTooLarge
	}
	return fmt.Errorf("%w: %v", ErrInterrupted, err)
}

// List pages through the records p may see: admins all, authors their own.
func (s *Service) List(ctx context.Context, p authz.Principal, cur *Cursor, limit int) ([]Item, error) {
	if !p.CanUploadMedia() {
		return nil, fmt.Errorf("%w: only authors and admins may list media", ErrForbidden)
	}
	owner := p.UserID
	if p.IsAdmin() {
		owner = ""
	}
	return s.store.List(ctx, owner, cur, limit)
}

// Delete removes a record (admins any, authors their own) and the file once
// no other record references its bytes.
func (s *Service) Delete(ctx context.Context, p authz.Principal, id string) error {
	it, err := s.store.Get(ctx, id)
	if err != nil {
		return err
	}
	if !p.CanDeleteMedia(it.UploaderID) {
		return fmt.Errorf("%w: only its uploader or an admin may delete this item", ErrForbidden)
	}
	return s.store.WithHashLock(ctx, it.Name.Hash, func(conn *pgxpool.Conn) error {
		tag, err := conn.Exec(ctx, `DELETE FROM media WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound // deleted concurrently
		}
		left, err := countHash(ctx, conn, it.Name.Hash)
		if err != nil {
			return err
		}
		if left == 0 {
			s.served.forget(it.Name)
			return s.files.Remove(it.Name)
		}
		return nil
	})
}

// Open returns a published file and its content type; ErrNotFound for any
// name that is malformed or has no record.
func (s *Service) Open(ctx context.Context, raw string) (*os.File, Name, string, error) {
	n, err := ParseName(raw)
	if err != nil {
		return nil, Name{}, "", ErrNotFound
	}
	ct, ok := s.served.get(n)
	if !ok {
		ct, err = s.store.ContentTypeOf(ctx, n)
		if err != nil {
			return nil, Name{}, "", err
		}
		s.served.put(n, ct)
	}
	f, err := s.files.Open(n)
	if errors.Is(err, os.ErrNotExist) {
		// The last record went away (maybe on another replica).
		s.served.forget(n)
		return nil, Name{}, "", ErrNotFound
	}
	if err != nil {
		return nil, Name{}, "", err
	}
	return f, n, ct, nil
}

// SweepOrphans removes stale temp files and published files that no record
// references (a crash between publishing and inserting), both only when
// older than StaleTemp so running uploads are never touched.
func (s *Service) SweepOrphans(ctx context.Context, now time.Time) (int, error) {
	removed, err := s.files.SweepTemp(now)
	if err != nil {
		return removed, err
	}
	names, err := s.files.Published()
	if err != nil {
		return removed, err
	}
	known, err := s.store.Hashes(ctx)
	if err != nil {
		return removed, err
	}
	for n, mod := range names {
		if now.Sub(mod) < StaleTemp || known[n.Hash] {
			continue
		}
		// Re-check under the lock: an upload may have inserted it since.
		err := s.store.WithHashLock(ctx, n.Hash, func(conn *pgxpool.Conn) error {
			left, err := countHash(ctx, conn, n.Hash)
			if err != nil || left > 0 {
				return err
			}
			removed++
			return s.files.Remove(n)
		})
		if err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// nameCache remembers names known to have a record, so serving skips the
// database. A stale entry is harmless: the file is removed together with the
// last record, and serving always opens the file.
type nameCache struct {
	mu  sync.RWMutex
	m   map[Name]cacheEntry
	max int
	ttl time.Duration
}

type cacheEntry struct {
	contentType string
	expires     time.Time
}

func newNameCache(max int, ttl time.Duration) *nameCache {
	return &nameCache{m: make(map[Name]cacheEntry), max: max, ttl: ttl}
}

func (c *nameCache) get(n Name) (string, bool) {
	c.mu.RLock()
	e, ok := c.m[n]
	c.mu.RUnlock()
	if !ok || time.Now().After(e.expires) {
		return "", false
	}
	return e.contentType, true
}

func (c *nameCache) put(n Name, ct string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		clear(c.m) // crude but bounded; misses only cost a query
	}
	c.m[n] = cacheEntry{contentType: ct, expires: time.Now().Add(c.ttl)}
}

func (c *nameCache) forget(n Name) {
	c.mu.Lock()
	delete(c.m, n)
	c.mu.Unlock()
}

package media

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"pressroom.dev/kit/authz"
	"pressroom.dev/kit/ids"
	"pressroom.dev/kit/token"
	"pressroom.dev/services/media/internal/imaging"
)

// AccessCookie is the cookie web sets with the access token; the two must agree.
const AccessCookie = "pressroom_at"

// multipartSlack is what a multipart body may hold besides the file's bytes
// (boundaries, part headers, a few small fields).
const multipartSlack = 64 << 10

// Listing page sizes.
const (
	DefaultPageSize = 50
	MaxPageSize     = 200
)

// Served files' headers: immutable content, never sniffed, never active.
const (
	CacheControl = "public, max-age=31536000, immutable"
	ServeCSP     = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"
)

// Verifier checks access tokens (kit/token.Verifier).
type Verifier interface {
	Verify(tok string) (*token.Claims, error)
}

// HTTP is the media service's HTTP transport.
type HTTP struct {
	svc       *Service
	verifier  Verifier
	publicURL *url.URL
	log       *slog.Logger
}

// NewHTTP builds the transport; publicURL is the site's origin for CSRF checks.
func NewHTTP(svc *Service, v Verifier, publicURL string, log *slog.Logger) (*HTTP, error) {
	u, err := url.Parse(publicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("PUBLIC_URL %q must be an absolute http(s) URL such as https://example.com", publicURL)
	}
	if log == nil {
		log = slog.Default()
	}
	return &HTTP{svc: svc, verifier: v, publicURL: u, log: log}, nil
}

// Register mounts the routes on r:
//
//	POST   /media/upload             multipart field "file" → 201 item
//	GET    /media/<name>             public file (HEAD too)
//	GET    /media/api/items          list (page_size, page_token)
//	DELETE /media/api/items/<id>     delete → 204
func (h *HTTP) Register(r gin.IRouter) {
	r.POST("/media/upload", h.upload)
	r.GET("/media/api/items", h.list)
	r.DELETE("/media/api/items/:id", h.delete)
	r.GET("/media/:name", h.serve)
	r.HEAD("/media/:name", h.serve)
}

type itemJSON struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	URL         string    `json:"url"`
	ContentType string    `json:"content_type"`
	Size        int64     `json:"size"`
	Width       int       `json:"width"`
	Height      int       `json:"height"`
	UploaderID  string    `json:"uploader_id"`
	Filename    string    `json:"filename"`
	CreatedAt   time.Time `json:"created_at"`
}

func toJSON(it Item) itemJSON {
	return itemJSON{ID: it.ID, Name: it.Name.String(), URL: "/media/" + it.Name.String(),
		ContentType: it.ContentType, Size: it.Size, Width: it.Width, Height: it.Height,
		UploaderID: it.UploaderID, Filename: it.Filename, CreatedAt: it.CreatedAt.UTC()}
}

func fail(c *gin.Context, status int, msg string) {
	c.AbortWithStatusJSON(status, gin.H{"error": msg})
}

// principal authenticates the request. Cookie-authenticated requests that
// change state must come from our own origin (CSRF); bearer requests carry
// no ambient credential and need no such check.
func (h *HTTP) principal(c *gin.Context) (authz.Principal, bool) {
	tok, fromCookie := "", false
	if a := c.GetHeader("Authorization"); a != "" {
		scheme, rest, ok := strings.Cut(a, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(rest) == "" {
			fail(c, http.StatusUnauthorized, "the Authorization header must be \"Bearer <access token>\"")
			return authz.Principal{}, false
		}
		tok = strings.TrimSpace(rest)
	} else if ck, err := c.Request.Cookie(AccessCookie); err == nil && ck.Value != "" {
		tok, fromCookie = ck.Value, true
	}
	if tok == "" {
		fail(c, http.StatusUnauthorized, "sign in first: send an access token as a Bearer header or the "+AccessCookie+" cookie")
		return authz.Principal{}, false
	}
	claims, err := h.verifier.Verify(tok)
	if err != nil {
		fail(c, http.StatusUnauthorized, "the access token is invalid or expired: sign in again")
		return authz.Principal{}, false
	}
	p, err := authz.FromClaims(claims)
	if err != nil || !p.Authenticated() {
		fail(c, http.StatusUnauthorized, "the access token does not name a user with known roles: sign in again")
		return authz.Principal{}, false
	}
	if fromCookie && !safeMethod(c.Request.Method) && !h.sameOrigin(c.Request) {
		fail(c, http.StatusForbidden, "cross-site request refused: the Origin (or Referer) header must be "+h.origin())
		return authz.Principal{}, false
	}
	return p, true
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

func (h *HTTP) origin() string { return h.publicURL.Scheme + "://" + h.publicURL.Host }

func (h *HTTP) sameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" {
		return o == h.origin()
	}
	ref, err := url.Parse(r.Header.Get("Referer"))
	return err == nil && ref.Scheme == h.publicURL.Scheme && ref.Host == h.publicURL.Host
}

func (h *HTTP) upload(c *gin.Context) {
	p, ok := h.principal(c)
	if !ok {
		return
	}
	if !p.CanUploadMedia() {
		fail(c, http.StatusForbidden, "only authors and admins may upload media")
		return
	}
	limit := h.svc.MaxBytes() + multipartSlack
	// Refuse a declared oversize body before reading any of it.
	if c.Request.ContentLength > limit {
		c.Header("Connection", "close")
		fail(c, http.StatusRequestEntityTooLarge, h.tooLarge())
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, limit)
	mr, err := c.Request.MultipartReader()
	if err != nil {
		fail(c, http.StatusBadRequest, "send the image as multipart/form-data in a field named \"file\"")
		return
	}
	// Stream the "file" part; skip (bounded by the limit) anything before it.
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			fail(c, http.StatusBadRequest, "the form has no field named \"file\"")
			return
		}
		if err != nil {
			if errors.Is(readErr(err), ErrTooLarge) {
				h.uploadError(c, ErrTooLarge)
			} else {
				fail(c, http.StatusBadRequest, "the multipart/form-data body is malformed or was cut short: "+err.Error())
			}
			return
		}
		if part.FormName() != "file" {
			part.Close()
			continue
		}
		item, _, err := h.svc.Upload(c.Request.Context(), p, part.FileName(), part)
		if err != nil {
			h.uploadError(c, err)
			return
		}
		// A re-upload of the same bytes by the same user returns the existing
		// record, also with 201: the client's intent ("store this") is done.
		c.JSON(http.StatusCreated, toJSON(item))
		return
	}
}

func (h *HTTP) tooLarge() string {
	return fmt.Sprintf("the file is larger than the limit of %d bytes (MEDIA_MAX_BYTES)", h.svc.MaxBytes())
}

func (h *HTTP) uploadError(c *gin.Context, err error) {
	switch {
	case errors.Is(err, ErrTooLarge):
		c.Header("Connection", "close")
		fail(c, http.StatusRequestEntityTooLarge, h.tooLarge())
	case errors.Is(err, imaging.ErrUnsupported):
		fail(c, http.StatusUnsupportedMediaType, err.Error())
	case errors.Is(err, imaging.ErrCorrupt), errors.Is(err, ErrEmpty), errors.Is(err, ErrInterrupted):
		fail(c, http.StatusBadRequest, err.Error())
	case errors.Is(err, ErrForbidden):
		fail(c, http.StatusForbidden, err.Error())
	default:
		h.internal(c, "upload", err)
	}
}

func (h *HTTP) internal(c *gin.Context, op string, err error) {
	h.log.ErrorContext(c.Request.Context(), "media "+op+" failed", "err", err)
	fail(c, http.StatusInternalServerError, "internal error; try again later")
}

type listJSON struct {
	Items         []itemJSON `json:"items"`
	NextPageToken string     `json:"next_page_token"`
}

func (h *HTTP) list(c *gin.Context) {
	p, ok := h.principal(c)
	if !ok {
		return
	}
	size := DefaultPageSize
	if s := c.Query("page_size"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageSize {
			fail(c, http.StatusBadRequest, fmt.Sprintf("page_size must be a whole number from 1 to %d", MaxPageSize))
			return
		}
		size = n
	}
	var cur *Cursor
	if t := c.Query("page_token"); t != "" {
		cc, err := decodeCursor(t)
		if err != nil {
			fail(c, http.StatusBadRequest, "page_token is not one this service issued: start again without it")
			return
		}
		cur = &cc
	}
	// One extra row tells whether another page exists.
	items, err := h.svc.List(c.Request.Context(), p, cur, size+1)
	if errors.Is(err, ErrForbidden) {
		fail(c, http.StatusForbidden, "only authors and admins may list media")
		return
	}
	if err != nil {
		h.internal(c, "list", err)
		return
	}
	out := listJSON{Items: []itemJSON{}}
	if len(items) > size {
		items = items[:size]
		last := items[size-1]
		out.NextPageToken = encodeCursor(Cursor{CreatedAt: last.CreatedAt, ID: last.ID})
	}
	for _, it := range items {
		out.Items = append(out.Items, toJSON(it))
	}
	c.JSON(http.StatusOK, out)
}

func encodeCursor(c Cursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.CreatedAt.UnixMicro(), 10) + "," + c.ID))
}

func decodeCursor(s string) (Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, err
	}
	ts, id, ok := strings.Cut(string(b), ",")
	if !ok || !ids.IsUUID(id) {
		return Cursor{}, errors.New("bad page token")
	}
	us, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return Cursor{}, err
	}
	// Postgres refuses timestamps past its range with an error (22008); no
	// item is older than 1970 or newer than year 9999.
	if us < 0 || us > maxCursorMicros {
		return Cursor{}, errors.New("bad page token")
	}
	return Cursor{CreatedAt: time.UnixMicro(us), ID: id}, nil
}

// maxCursorMicros is 9999-12-31T23:59:59.999999Z in Unix microseconds.
const maxCursorMicros = 253402300799999999

func (h *HTTP) delete(c *gin.Context) {
	p, ok := h.principal(c)
	if !ok {
		return
	}
	id := c.Param("id")
	if !ids.IsUUID(id) {
		fail(c, http.StatusNotFound, "no such media item: ids look like 0b5c0c3e-3f4a-4c1e-9d8f-2a6b7c8d9e0f")
		return
	}
	err := h.svc.Delete(c.Request.Context(), p, strings.ToLower(id))
	switch {
	case err == nil:
		c.Status(http.StatusNoContent)
	case errors.Is(err, ErrNotFound):
		fail(c, http.StatusNotFound, "no such media item")
	case errors.Is(err, ErrForbidden):
		fail(c, http.StatusForbidden, err.Error())
	default:
		h.internal(c, "delete", err)
	}
}

func (h *HTTP) serve(c *gin.Context) {
	f, n, ct, err := h.svc.Open(c.Request.Context(), c.Param("name"))
	if errors.Is(err, ErrNotFound) {
		c.Header("Cache-Control", "no-store")
		fail(c, http.StatusNotFound, "no such media file")
		return
	}
	if err != nil {
		h.internal(c, "serve", err)
		return
	}
	defer f.Close()
	hd := c.Writer.Header()
	hd.Set("Content-Type", ct)
	hd.Set("ETag", `"`+n.Hash+`"`)
	hd.Set("Cache-Control", CacheControl)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Security-Policy", ServeCSP)
	hd.Set("Cross-Origin-Resource-Policy", "same-site")
	// ServeContent answers If-None-Match (304), Range (206) and If-Range
	// from the ETag; the zero time omits Last-Modified (content never changes).
	http.ServeContent(fileWriter{c.Writer}, c.Request, "", time.Time{}, f)
}

// fileWriter lets ServeContent reach the server's own ReadFrom (sendfile)
// through gin's and the middlewares' wrappers, instead of copying the file
// through user space in 32 KiB writes.
type fileWriter struct{ gin.ResponseWriter }

func (w fileWriter) ReadFrom(r io.Reader) (int64, error) {
	w.WriteHeaderNow() // gin holds the status until the first write
	var inner http.ResponseWriter = w.ResponseWriter
	for {
		u, ok := inner.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			break
		}
		inner = u.Unwrap()
		if rf, ok := inner.(io.ReaderFrom); ok {
			return rf.ReadFrom(r)
		}
	}
	return io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
}

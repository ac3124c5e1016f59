package media

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"pressroom.dev/kit/pg"
	"pressroom.dev/kit/server"
	"pressroom.dev/kit/testkit"
	"pressroom.dev/kit/token"
)

func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }

const (
	testIssuer   = "pressroom-auth"
	testAudience = "pressroom"
	testOrigin   = "https://example.com"
)

// env is a running media service: real Postgres, a temp MEDIA_DIR, the
// kit's HTTP server on a loopback port.
type env struct {
	t      testing.TB
	base   string
	addr   string
	svc    *Service
	files  *Files
	pool   *pgxpool.Pool
	signer *token.Signer
	stop   func() // stops the server, waiting for in-flight requests
}

func newEnv(t testing.TB, maxBytes int64) *env {
	t.Helper()
	ctx := context.Background()
	pool, err := pg.Open(ctx, testkit.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := pg.Migrate(ctx, pool, Migrations); err != nil {
		t.Fatal(err)
	}
	files, err := OpenFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	keys := testkit.JWTKeys(t)
	signer := token.NewSigner(keys.Private, testIssuer, []string{testAudience}, time.Hour)
	verifier, err := token.NewVerifier([]*rsa.PublicKey{&keys.Private.PublicKey}, testIssuer, testAudience)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := NewService(NewStore(pool), files, maxBytes, log)
	h, err := NewHTTP(svc, verifier, testOrigin, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Options{Name: "media-test", Logger: log, ShutdownTimeout: 10 * time.Second})
	srv.AddCheck("media_dir", func(context.Context) error { return files.CheckWritable() })
	h.Register(srv.Engine())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	e := &env{t: t, base: "http://" + ln.Addr().String(), addr: ln.Addr().String(), svc: svc,
		files: files, pool: pool, signer: signer}
	stopped := false
	e.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("server did not stop")
		}
	}
	t.Cleanup(e.stop)
	return e
}

// tok signs an access token for user with roles.
func (e *env) tok(user string, roles ...string) string {
	e.t.Helper()
	s, err := e.signer.Sign(user, user+"@example.com", user, roles)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

type result struct {
	status int
	header http.Header
	body   []byte
}

func (r result) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("status %d, body %q: %v", r.status, r.body, err)
	}
}

func (r result) errMsg(t testing.TB) string {
	t.Helper()
	var v struct {
		Error string `json:"error"`
	}
	r.json(t, &v)
	if v.Error == "" {
		t.Fatalf("status %d without an error message: %s", r.status, r.body)
	}
	return v.Error
}

func (e *env) do(req *http.Request) result {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return result{resp.StatusCode, resp.Header, b}
}

func multipartBody(t testing.TB, field, filename, contentType string, data []byte) (*bytes.Buffer, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	hdr := make(map[string][]string)
	hdr["Content-Disposition"] = []string{fmt.Sprintf(`form-data; name=%q; filename=%q`, field, filename)}
	hdr["Content-Type"] = []string{contentType}
	w, err := mw.CreatePart(hdr)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	mw.Close()
	return &buf, mw.FormDataContentType()
}

// uploadReq builds an upload; tok "" = anonymous.
func (e *env) uploadReq(tok, filename, contentType string, data []byte) *http.Request {
	e.t.Helper()
	body, ct := multipartBody(e.t, "file", filename, contentType, data)
	req, err := http.NewRequest(http.MethodPost, e.base+"/media/upload", body)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return req
}

func (e *env) upload(tok, filename string, data []byte) result {
	e.t.Helper()
	return e.do(e.uploadReq(tok, filename, "application/octet-stream", data))
}

func (e *env) mustUpload(tok, filename string, data []byte) itemJSON {
	e.t.Helper()
	r := e.upload(tok, filename, data)
	if r.status != http.StatusCreated {
		e.t.Fatalf("upload %s: %d %s", filename, r.status, r.body)
	}
	var it itemJSON
	r.json(e.t, &it)
	return it
}

func (e *env) get(path string, hdr ...string) result {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.base+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return e.do(req)
}

func (e *env) authed(method, path, tok string) result {
	e.t.Helper()
	req, err := http.NewRequest(method, e.base+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return e.do(req)
}

// raw sends bytes as they are (no client-side cleaning of the path) and
// reads one response.
func (e *env) raw(request string) result {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		e.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{resp.StatusCode, resp.Header, b}
}

func (e *env) rowCount() int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM media`).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// diskFiles lists every regular file under MEDIA_DIR (temp files included).
func (e *env) diskFiles() []string {
	e.t.Helper()
	var out []string
	filepath.WalkDir(e.files.Root(), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// Test images: distinct seeds give distinct bytes.
func pngBytes(t testing.TB, w, h int, seed uint64) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = byte(r.Uint32())
	}
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.NoCompression}).Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func jpegBytes(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(x + y), 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// withTextChunk returns a PNG with an extra tEXt chunk (distinct bytes, same image).
func withTextChunk(p []byte, text string) []byte {
	data := append([]byte("Comment\x00"), text...)
	chunk := make([]byte, 0, len(data)+12)
	chunk = append(chunk, byte(len(data)>>24), byte(len(data)>>16), byte(len(data)>>8), byte(len(data)))
	chunk = append(chunk, "tEXt"...)
	chunk = append(chunk, data...)
	sum := crc32.ChecksumIEEE(chunk[4:])
	chunk = append(chunk, byte(sum>>24), byte(sum>>16), byte(sum>>8), byte(sum))
	out := make([]byte, 0, len(p)+len(chunk))
	out = append(out, p[:33]...) // signature + IHDR
	out = append(out, chunk...)
	return append(out, p[33:]...)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

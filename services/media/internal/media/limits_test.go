package media

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// multipartHead is the start of a multipart body up to the file's bytes.
func multipartHead(boundary string) string {
	return "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\nContent-Type: image/png\r\n\r\n"
}

func TestDeclaredOversizeRefusedBeforeReading(t *testing.T) {
	e := newEnv(t, 1<<20)
	tok := e.tok("alice", "author")
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// Only the headers are sent: the answer must come without the body.
	fmt.Fprintf(c, "POST /media/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: multipart/form-data; boundary=b0und\r\nContent-Length: %d\r\n\r\n", tok, int64(1)<<30)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !bytes.Contains(body, []byte("MEDIA_MAX_BYTES")) {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
	if len(e.diskFiles()) != 0 {
		t.Fatalf("files: %v", e.diskFiles())
	}
}

// An endless body of unknown length is cut off at the limit; the server
// streams to disk, so its memory does not grow with the body.
func TestStreamedOversizeHasBoundedMemory(t *testing.T) {
	const limit = 32 << 20
	e := newEnv(t, limit)
	tok := e.tok("alice", "author")
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	fmt.Fprintf(c, "POST /media/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: multipart/form-data; boundary=b0und\r\nTransfer-Encoding: chunked\r\n\r\n", tok)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	var sent atomic.Int64
	go func() {
		cw := httputilChunked(c)
		io.WriteString(cw, multipartHead("b0und"))
		io.Copy(cw, bytes.NewReader(pngBytes(t, 64, 64, 1)))
		chunk := make([]byte, 64<<10)
		for sent.Load() < 1<<30 {
			n, err := cw.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	c.Close()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
	if s := sent.Load(); s > limit+24<<20 {
		t.Fatalf("the server kept reading: %d bytes sent for a %d limit", s, limit)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
		t.Fatalf("allocated %d MiB while refusing a %d MiB-limited stream", grew>>20, limit>>20)
	}
	e.stop()
	if files := e.diskFiles(); len(files) != 0 || e.rowCount() != 0 {
		t.Fatalf("left behind: files %v, rows %d", files, e.rowCount())
	}
}

// httputilChunked writes HTTP/1.1 chunked encoding to w.
func httputilChunked(w io.Writer) io.Writer { return chunkedWriter{w} }

type chunkedWriter struct{ w io.Writer }

func (c chunkedWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if _, err := fmt.Fprintf(c.w, "%x\r\n", len(p)); err != nil {
		return 0, err
	}
	if _, err := c.w.Write(p); err != nil {
		return 0, err
	}
	_, err := io.WriteString(c.w, "\r\n")
	return len(p), err
}

// A client that goes away mid-upload leaves neither a file nor a row.
func TestInterruptedUploadLeavesNothing(t *testing.T) {
	e := newEnv(t, 8<<20)
	tok := e.tok("alice", "author")
	img := pngBytes(t, 400, 400, 3) // ~640 KB
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="file"; filename="a.png"`)
	pw, _ := mw.CreatePart(h)
	pw.Write(img)
	mw.Close()

	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "POST /media/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: %s\r\nContent-Length: %d\r\n\r\n", tok, mw.FormDataContentType(), body.Len())
	c.Write(body.Bytes()[:body.Len()/2])
	// Wait until the upload is really being written to a temp file.
	deadline := time.Now().Add(10 * time.Second)
	for {
		tmp, _ := os.ReadDir(filepath.Join(e.files.Root(), ".tmp"))
		if len(tmp) > 0 && strings.HasPrefix(tmp[0].Name(), "upload-") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the upload never reached a temp file")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.Close() // the client vanishes mid-body
	e.stop()  // waits for the handler to finish
	if files := e.diskFiles(); len(files) != 0 {
		t.Fatalf("files left: %v", files)
	}
	if n := e.rowCount(); n != 0 {
		t.Fatalf("%d rows left", n)
	}
}

func TestSweepRemovesOnlyStaleLeftovers(t *testing.T) {
	e := newEnv(t, 1<<20)
	kept := e.mustUpload(e.tok("alice", "author"), "a.png", pngBytes(t, 4, 4, 1))
	old := time.Now().Add(-2 * StaleTemp)
	write := func(path string, data []byte, mod time.Time) {
		os.MkdirAll(filepath.Dir(path), 0o750)
		if err := os.WriteFile(path, data, 0o640); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(path, mod, mod)
	}
	staleTmp := filepath.Join(e.files.Root(), ".tmp", "upload-stale")
	freshTmp := filepath.Join(e.files.Root(), ".tmp", "upload-fresh")
	write(staleTmp, []byte("half"), old)
	write(freshTmp, []byte("half"), time.Now())
	orphanBytes, freshBytes := pngBytes(t, 4, 4, 2), pngBytes(t, 4, 4, 3)
	orphan, _ := ParseName(sha256Hex(orphanBytes) + ".png")
	fresh, _ := ParseName(sha256Hex(freshBytes) + ".png")
	write(e.files.Path(orphan), orphanBytes, old)
	write(e.files.Path(fresh), freshBytes, time.Now())
	keptName, _ := ParseName(kept.Name)
	os.Chtimes(e.files.Path(keptName), old, old)
	foreign := filepath.Join(e.files.Root(), "README")
	write(foreign, []byte("not ours"), old)

	n, err := e.svc.SweepOrphans(t.Context(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("removed %d, want 2 (stale temp + old orphan)", n)
	}
	for path, want := range map[string]bool{staleTmp: false, e.files.Path(orphan): false,
		freshTmp: true, e.files.Path(fresh): true, e.files.Path(keptName): true, foreign: true} {
		if _, err := os.Stat(path); (err == nil) != want {
			t.Errorf("%s exists=%v, want %v", path, err == nil, want)
		}
	}
}

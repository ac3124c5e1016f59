package server

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/sys/unix"
)

// dataSegmentsIn counts the data segments a client socket has received.
func dataSegmentsIn(t *testing.T, c *net.TCPConn) uint32 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	var serr error
	if err := rc.Control(func(fd uintptr) { info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return info.Data_segs_in
}

// pattern is n bytes that differ from position to position, so a reordered
// or dropped piece cannot go unnoticed.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i*7%26)
	}
	return b
}

// Responses of every size around net/http's buffer boundaries arrive whole
// and as one TCP segment, request after request on a kept-alive connection.
// Sizes whose headers and body fill the buffer exactly are among them: their
// last full buffer is sent when the connection goes idle.
func TestResponsesLeaveWholeInOneSegment(t *testing.T) {
	// Every response must be complete without the stall timer. Restored
	// after the server stops (cleanups run last-in first-out).
	restore := stallFlush
	t.Cleanup(func() { stallFlush = restore })
	stallFlush = time.Hour
	s := New(Options{Logger: quietLogger()})
	s.Engine().GET("/page/:n", func(c *gin.Context) {
		var n int
		_, _ = fmt.Sscan(c.Param("n"), &n)
		c.Data(http.StatusOK, "text/html", pattern(n))
	})
	base := start(t, s)

	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tc := conn.(*net.TCPConn)
	br := bufio.NewReader(conn)
	var sizes []int
	for _, around := range []int{4 << 10, 8 << 10, 12 << 10} {
		for n := around - 300; n <= around+50; n++ {
			sizes = append(sizes, n)
		}
	}
	sizes = append(sizes, 1, 100, 20<<10, 40<<10)
	for _, n := range sizes {
		before := dataSegmentsIn(t, tc)
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(conn, "GET /page/%d HTTP/1.1\r\nHost: x\r\n\r\n", n); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%d-byte page: %v", n, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(body, pattern(n)) {
			t.Fatalf("%d-byte page: got %d bytes (intact: %v), err %v", n, len(body), bytes.Equal(body, pattern(n)), err)
		}
		if got := dataSegmentsIn(t, tc) - before; got != 1 {
			t.Errorf("%d-byte page came in %d segments, want 1", n, got)
		}
	}
}

// Only bodiless HTTP/1 requests are held (a request with a body may wait
// for "100 Continue"), and a hijacked connection writes straight through.
func TestHoldOnlyWhereSafe(t *testing.T) {
	holding := func(r *http.Request) string {
		cc, ok := r.Context().Value(connKey{}).(*coalescingConn)
		if !ok {
			return "no connection in the request context"
		}
		cc.mu.Lock()
		defer cc.mu.Unlock()
		return fmt.Sprint(cc.holding)
	}
	s := New(Options{Logger: quietLogger()})
	s.Engine().GET("/state", func(c *gin.Context) { c.String(http.StatusOK, holding(c.Request)) })
	s.Engine().POST("/state", func(c *gin.Context) {
		_, _ = io.Copy(io.Discard, c.Request.Body)
		c.String(http.StatusOK, holding(c.Request))
	})
	s.Engine().GET("/hijack", func(c *gin.Context) {
		conn, _, err := http.NewResponseController(c.Writer).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n%-5s", holding(c.Request))
	})
	base := start(t, s)

	if code, body := get(t, base+"/state"); code != 200 || body != "true" {
		t.Errorf("GET: %d holding=%s, want true", code, body)
	}
	if code, body := post(t, base+"/state", "text/plain", "a body"); code != 200 || body != "false" {
		t.Errorf("POST with a body: %d holding=%s, want false", code, body)
	}
	if code, body := get(t, base+"/hijack"); code != 200 || body != "false" {
		t.Errorf("hijacked: %d holding=%q, want false", code, body)
	}
}

// connPair is a connected loopback pair: a holding server side and a client.
func connPair(t *testing.T) (*coalescingConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := coalescingListener{Listener: ln}.Accept()
	if err != nil {
		t.Fatal(err)
	}
	cc := server.(*coalescingConn)
	cc.holding = true
	t.Cleanup(func() { cc.Close(); client.Close() })
	return cc, client
}

func readN(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

// A handler that flushes and then waits (a stream) still gets its bytes to
// the client.
func TestStalledResponseIsSent(t *testing.T) {
	server, client := connPair(t)
	chunk := pattern(300)
	if _, err := server.Write(chunk); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, client, len(chunk)); !bytes.Equal(got, chunk) {
		t.Fatal("the held buffer arrived changed")
	}
}

// sendfile writes around Write: held bytes (the headers) must go first, in
// the file's first segment, and Close must not drop what is held.
func TestHeldBytesPrecedeSendfileAndSurviveClose(t *testing.T) {
	server, client := connPair(t)
	file := filepath.Join(t.TempDir(), "image")
	fileBytes := bytes.ToUpper(pattern(10 << 10))
	if err := os.WriteFile(file, fileBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head := pattern(300) // headers
	if _, err := server.Write(head); err != nil {
		t.Fatal(err)
	}
	if _, err := server.ReadFrom(f); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, client, len(head)+len(fileBytes)); !bytes.Equal(got, append(append([]byte{}, head...), fileBytes...)) {
		t.Fatal("headers and file arrived changed or out of order")
	}
	if n := dataSegmentsIn(t, client.(*net.TCPConn)); n != 1 {
		t.Errorf("headers and file came in %d segments, want 1 (MSG_MORE)", n)
	}
	tail := pattern(5000) // held again, then the connection closes
	if _, err := server.Write(tail); err != nil {
		t.Fatal(err)
	}
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}
	want := tail
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("after close: got %d bytes, want the %d held", len(got), len(want))
	}
}

// http.Server.Close closes connections from another goroutine to interrupt
// writes stuck on a client that does not read: holding must not make it wait.
func TestCloseInterruptsABlockedWrite(t *testing.T) {
	server, _ := connPair(t) // the client never reads
	// Bounds the test should Close wait after all.
	_ = server.SetWriteDeadline(time.Now().Add(30 * time.Second))
	writeDone := make(chan error, 1)
	go func() {
		_, err := server.Write(make([]byte, 256<<20)) // far more than the socket buffers hold
		writeDone <- err
	}()
	time.Sleep(200 * time.Millisecond) // let the write fill the buffers and block
	closed := make(chan error, 1)
	go func() { closed <- server.Close() }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for a write that cannot finish")
	}
	select {
	case err := <-writeDone:
		if err == nil {
			t.Fatal("the interrupted write reported success")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the blocked write was not interrupted by Close")
	}
}

// Held bytes go out when the connection turns idle, after net/http has
// cleared its write deadline: the server's WriteTimeout must still bound
// that send, or a client that pipelines requests and never reads keeps the
// connection's goroutine and buffer forever (a review saw one stuck 40 s
// with WriteTimeout 1s).
func TestHeldBytesAreSentWithinTheWriteTimeout(t *testing.T) {
	server, client := connPair(t) // the client never reads
	server.writeTimeout = 200 * time.Millisecond
	_ = client.(*net.TCPConn).SetReadBuffer(1024)
	_ = server.TCPConn.SetWriteBuffer(1024)
	// Fill both socket buffers, as earlier responses would.
	_ = server.TCPConn.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	for {
		if _, err := server.TCPConn.Write(make([]byte, 64<<10)); err != nil {
			break
		}
	}
	_ = server.TCPConn.SetWriteDeadline(time.Time{}) // as net/http leaves it at idle
	if _, err := server.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { flushWhenDone(server, http.StateIdle); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the idle flush is still blocked on a client that never reads")
	}
	if _, err := server.Write([]byte("next")); err == nil {
		t.Fatal("the connection carries on after its held bytes timed out")
	}
}

package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"

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

func corkedNow(c *corkingConn) (bool, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return false, err
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK) }); err != nil {
		return false, err
	}
	return v == 1, gerr
}

// A page bigger than net/http's 4 KiB write buffer reaches the client as one
// TCP segment, request after request on a kept-alive connection.
func TestLargeResponseLeavesInOneSegment(t *testing.T) {
	page := strings.Repeat("<p>The tide came in over the flats.</p>\n", 180) // ~7 KiB
	s := New(Options{Logger: quietLogger()})
	s.Engine().GET("/page", func(c *gin.Context) { c.Data(http.StatusOK, "text/html", []byte(page)) })
	base := start(t, s)

	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tc := conn.(*net.TCPConn)
	br := bufio.NewReader(conn)
	for i := range 5 {
		before := dataSegmentsIn(t, tc)
		if _, err := fmt.Fprintf(conn, "GET /page HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != page {
			t.Fatalf("request %d: body %d bytes, err %v", i, len(body), err)
		}
		if got := dataSegmentsIn(t, tc) - before; got != 1 {
			t.Errorf("request %d: the %d-byte response came in %d segments, want 1", i, len(body), got)
		}
	}
}

// Only bodiless HTTP/1 requests are corked (a request with a body may wait
// for "100 Continue"), and a hijacked connection is handed over uncorked.
func TestCorkOnlyWhereSafe(t *testing.T) {
	s := New(Options{Logger: quietLogger()})
	report := func(c *gin.Context) {
		cc, ok := c.Request.Context().Value(connKey{}).(*corkingConn)
		if !ok {
			c.String(http.StatusInternalServerError, "no connection in the request context")
			return
		}
		on, err := corkedNow(cc)
		if err != nil {
			c.String(http.StatusInternalServerError, err.Error())
			return
		}
		c.String(http.StatusOK, "%v", on)
	}
	s.Engine().GET("/state", report)
	s.Engine().POST("/state", func(c *gin.Context) { _, _ = io.Copy(io.Discard, c.Request.Body); report(c) })
	s.Engine().GET("/hijack", func(c *gin.Context) {
		conn, _, err := http.NewResponseController(c.Writer).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		on, err := corkedNow(conn.(*corkingConn))
		fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n%-5v", on && err == nil)
	})
	base := start(t, s)

	if code, body := get(t, base+"/state"); code != 200 || body != "true" {
		t.Errorf("GET: %d corked=%s, want corked", code, body)
	}
	resp, err := http.Post(base+"/state", "text/plain", strings.NewReader("a body"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "false" {
		t.Errorf("POST with a body: corked=%s, want not corked", b)
	}
	if code, body := get(t, base+"/hijack"); code != 200 || body != "false" {
		t.Errorf("hijacked: %d corked=%q, want uncorked", code, body)
	}
}

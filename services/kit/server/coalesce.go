package server

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// net/http writes an HTTP/1 response through a 4 KiB buffer, so anything
// larger (an article page) reaches the socket in two or more write calls, and
// a file goes out as a header write and a sendfile; on the loopback and
// in-cluster each send is a TCP push and a wake-up of the reader. While a
// bodiless HTTP/1 request is served, the connection keeps what net/http
// writes and sends it when the response is done (the connection goes idle):
// one write or writev, as few segments as the bytes need. A file's headers go
// out with MSG_MORE so the kernel joins them to the sendfile that follows.
// This is TCP_CORK (nginx's tcp_nopush) done in user space: the cork it
// replaced cost two more system calls per request, setting and clearing it,
// and perf on web under load put a quarter of its CPU in them.
//
// Requests with a body are never held (one may be waiting for "100
// Continue"), nor is HTTP/2, which multiplexes streams on one connection.

// maxHeld bounds the bytes held for one response: past it they go out with
// the write that would pass it, and later writes go straight through. Pages
// fit; a large body is written in pieces of 32 KiB (io.Copy) that are sends
// of a good size already, and holding them only delayed the reader.
const maxHeld = 16 << 10

// heldBuffers lends a connection a buffer only while it holds a response, so
// idle kept-alive connections cost no more memory than before.
var heldBuffers = sync.Pool{New: func() any { b := make([]byte, 0, maxHeld); return &b }}

// stallFlush sends held bytes when a handler flushes and then waits (a
// stream) instead of finishing, as the kernel's 200 ms limit did for a cork.
// A variable so tests can prove the other flushes do not lean on it.
var stallFlush = 5 * time.Millisecond

// coalescingListener hands out TCP connections that can hold a response.
// writeTimeout is the server's WriteTimeout (0 = none): net/http clears its
// write deadline before the connection goes idle, which is when held bytes
// are sent, so the connection bounds that send itself.
type coalescingListener struct {
	net.Listener
	writeTimeout time.Duration
}

func (l coalescingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		return &coalescingConn{TCPConn: tc, writeTimeout: l.writeTimeout}, nil
	}
	return c, err
}

// coalescingConn embeds *net.TCPConn so net/http still finds its methods; the
// ones that write (Write, ReadFrom, CloseWrite, Close) send held bytes first.
type coalescingConn struct {
	*net.TCPConn
	writeTimeout time.Duration

	mu      sync.Mutex
	holding bool    // a bodiless HTTP/1 response is being written
	held    []byte  // written by net/http, not yet sent
	buf     *[]byte // held's storage, from heldBuffers
	err     error   // a failed send of held bytes, reported by the next write
	stall   *time.Timer
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.holding && len(c.held)+len(p) <= maxHeld {
		if c.buf == nil {
			c.buf = heldBuffers.Get().(*[]byte)
			c.held = (*c.buf)[:0]
			c.armStall()
		}
		c.held = append(c.held, p...) // p is net/http's buffer, reused after we return
		return len(p), nil
	}
	if len(c.held) == 0 {
		return c.TCPConn.Write(p)
	}
	held := len(c.held)
	bufs := net.Buffers{c.held, p}
	n, err := bufs.WriteTo(c.TCPConn) // one writev
	c.releaseHeld()
	if err != nil {
		c.err = err
		return max(0, int(n)-held), err
	}
	return len(p), nil
}

// sendHeld sends whatever is held; with more, the kernel keeps the last
// partial segment for what the caller sends next. The caller holds c.mu.
func (c *coalescingConn) sendHeld(more bool) error {
	if c.err != nil || len(c.held) == 0 {
		return c.err
	}
	var err error
	if more {
		err = c.sendMore(c.held)
	} else {
		_, err = c.TCPConn.Write(c.held)
	}
	c.releaseHeld()
	if err != nil {
		c.err = err
	}
	return err
}

// sendMore is Write with MSG_MORE, waiting on the poller like Write does.
func (c *coalescingConn) sendMore(p []byte) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	werr := rc.Write(func(fd uintptr) bool {
		for len(p) > 0 {
			n, err := unix.SendmsgN(int(fd), p, nil, nil, unix.MSG_MORE|unix.MSG_NOSIGNAL)
			if err == unix.EAGAIN {
				return false // wait until writable, then try again
			}
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				serr = err
				return true
			}
			p = p[n:]
		}
		return true
	})
	if werr != nil {
		return werr
	}
	return serr
}

func (c *coalescingConn) releaseHeld() {
	if c.stall != nil {
		c.stall.Stop()
	}
	if c.buf != nil {
		heldBuffers.Put(c.buf)
	}
	c.buf, c.held = nil, nil
}

func (c *coalescingConn) armStall() {
	if c.stall == nil {
		c.stall = time.AfterFunc(stallFlush, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			_ = c.sendHeld(false)
		})
		return
	}
	c.stall.Reset(stallFlush)
}

// endResponse sends what is held and stops holding.
func (c *coalescingConn) endResponse() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holding = false
	c.sendHeldInTime()
}

// sendHeldInTime sends what is held within the server's WriteTimeout: it
// runs where net/http has no deadline of its own (idle, hijacked, closing),
// and a client that never reads must not keep the connection's goroutine
// forever. The deadline is cleared after, as net/http left it. The caller
// holds c.mu.
func (c *coalescingConn) sendHeldInTime() {
	if c.writeTimeout > 0 && len(c.held) > 0 && c.err == nil {
		_ = c.TCPConn.SetWriteDeadline(time.Now().Add(c.writeTimeout))
		defer func() { _ = c.TCPConn.SetWriteDeadline(time.Time{}) }()
	}
	_ = c.sendHeld(false)
}

// ReadFrom (sendfile, splice) writes around Write: held bytes go first, with
// MSG_MORE so they share segments with the file.
func (c *coalescingConn) ReadFrom(r io.Reader) (int64, error) {
	c.mu.Lock()
	err := c.sendHeld(true)
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return c.TCPConn.ReadFrom(r)
}

func (c *coalescingConn) CloseWrite() error {
	c.endResponse()
	return c.TCPConn.CloseWrite()
}

// Close sends what is held first, unless a write is under way (net/http's or
// the stall timer's): closing the socket is what interrupts that write, as
// http.Server.Close expects, so it does not wait for it.
func (c *coalescingConn) Close() error {
	if c.mu.TryLock() {
		c.holding = false
		c.sendHeldInTime()
		c.mu.Unlock()
	}
	return c.TCPConn.Close()
}

type connKey struct{}

// rememberConn is http.Server.ConnContext: the handler finds its connection.
func rememberConn(ctx context.Context, c net.Conn) context.Context {
	if cc, ok := c.(*coalescingConn); ok {
		return context.WithValue(ctx, connKey{}, cc)
	}
	return ctx
}

// holdResponse lets the request's connection hold the response until it is
// done, when the request qualifies.
func holdResponse(r *http.Request) {
	if r.ProtoMajor != 1 || r.Body != http.NoBody {
		return
	}
	if cc, ok := r.Context().Value(connKey{}).(*coalescingConn); ok {
		cc.mu.Lock()
		cc.holding = true
		cc.mu.Unlock()
	}
}

// flushWhenDone is http.Server.ConnState: once a response is written (idle)
// or the handler took the connection over (hijacked), held bytes go out and
// the connection writes straight through again.
func flushWhenDone(c net.Conn, state http.ConnState) {
	if state != http.StateIdle && state != http.StateHijacked {
		return
	}
	if cc, ok := c.(*coalescingConn); ok {
		cc.endResponse()
	}
}

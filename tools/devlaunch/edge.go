package devlaunch

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/valyala/fasthttp"

	"pressroom.dev/kit/server"
)

// Edge routes like the cluster's Ingress: /media and /media/* to media,
// the servers' probes and metrics nowhere (403), the rest to web. The Host header is kept and X-Forwarded-* are set from the
// connection, replacing what a client sent, as Traefik does for untrusted
// clients. Bodies larger than a page are streamed both ways, so uploads and
// downloads of any size pass without being held in memory.
//
// It is built on fasthttp rather than httputil.ReverseProxy: the standard
// proxy adds two goroutine hand-offs and a background read per request,
// and on a small machine the edge is the platform's largest CPU cost
// (tools/bench/decisions/0004-one-write-per-response.md).
type Edge struct {
	srv        *fasthttp.Server
	web, media *fasthttp.HostClient
}

// edgeBufferSize bounds a request's or response's header block. Session
// cookies carry two signed tokens and CSP headers are long: fasthttp's 4 KiB
// default is not enough (TestEdgePassesTrafficThrough sends 8 KiB).
const edgeBufferSize = 64 << 10

// NewEdge proxies to the web and media base URLs (http://host:port).
func NewEdge(webURL, mediaURL string) (*Edge, error) {
	web, err := upstream("web", webURL)
	if err != nil {
		return nil, err
	}
	media, err := upstream("media", mediaURL)
	if err != nil {
		return nil, err
	}
	e := &Edge{web: web, media: media}
	e.srv = &fasthttp.Server{
		Handler:                      e.serve,
		NoDefaultServerHeader:        true, // the backend's headers pass through unchanged
		NoDefaultDate:                true,
		NoDefaultContentType:         true,
		StreamRequestBody:            true, // bodies over MaxRequestBodySize are streamed, not refused
		DisablePreParseMultipartForm: true, // forward uploads as raw bytes
		MaxRequestBodySize:           1 << 20,
		ReadBufferSize:               edgeBufferSize,
		WriteBufferSize:              32 << 10, // a whole page in one write, not 4 KiB pieces
		IdleTimeout:                  90 * time.Second,
		ReadTimeout:                  10 * time.Minute, // the whole request, large uploads included
		CloseOnShutdown:              true,
	}
	return e, nil
}

func upstream(name, raw string) (*fasthttp.HostClient, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("edge: %s upstream %q must be http://host:port", name, raw)
	}
	return &fasthttp.HostClient{
		Name:                     name,
		Addr:                     u.Host,
		MaxConns:                 1024,
		MaxIdleConnDuration:      90 * time.Second,
		ReadBufferSize:           edgeBufferSize,
		StreamResponseBody:       true, // bodies over MaxResponseBodySize are streamed
		MaxResponseBodySize:      1 << 20,
		NoDefaultUserAgentHeader: true,
	}, nil
}

// hopByHop are connection-scoped headers a proxy must not forward (RFC 9110 §7.6.1).
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "TE", "Trailer", "Upgrade"}

func (e *Edge) serve(ctx *fasthttp.RequestCtx) {
	if isInternal(ctx.Path()) {
		// As the Ingress does: probes and metrics answer inside the platform only.
		ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
		ctx.Response.SetStatusCode(fasthttp.StatusForbidden)
		ctx.Response.SetBodyString(fmt.Sprintf("edge: %s answers inside the platform only (each service's own port)\n", ctx.Path()))
		return
	}
	target := e.web
	if p := ctx.Path(); bytes.Equal(p, []byte("/media")) || bytes.HasPrefix(p, []byte("/media/")) {
		target = e.media
	}
	req := &ctx.Request
	dropHopByHop(&req.Header)
	req.Header.Del("Forwarded")
	req.Header.Del("X-Forwarded-For") // every line a client sent: Set replaces only the first
	req.Header.Set("X-Forwarded-For", ctx.RemoteIP().String())
	req.Header.SetBytesV("X-Forwarded-Host", req.Header.Host())
	req.Header.Set("X-Forwarded-Proto", "http")
	req.Header.Del("X-Forwarded-Port")
	req.Header.Del("X-Real-Ip")

	if err := target.Do(req, &ctx.Response); err != nil {
		ctx.Response.Reset()
		ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
		ctx.Response.SetStatusCode(fasthttp.StatusBadGateway)
		ctx.Response.SetBodyString(fmt.Sprintf("edge: %s at %s did not answer: %v\n", target.Name, target.Addr, err))
		return
	}
	dropHopByHop(&ctx.Response.Header)
}

type headers interface {
	Peek(key string) []byte
	Del(key string)
}

// dropHopByHop removes the standard hop-by-hop headers and any header the
// Connection header names. Keep-alive is decided per side by fasthttp, which
// reads a client's Connection: close before the handler runs.
func dropHopByHop(h headers) {
	for _, name := range bytes.Split(h.Peek("Connection"), []byte(",")) {
		if name = bytes.TrimSpace(name); len(name) > 0 && !bytes.EqualFold(name, []byte("close")) && !bytes.EqualFold(name, []byte("keep-alive")) {
			h.Del(string(name))
		}
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
}

// isInternal reports a kit server's probe or metrics path; comparing
// string(p) == x does not copy p, as passing string(p) on would, per request.
func isInternal(p []byte) bool {
	for _, x := range server.InternalPaths {
		if string(p) == x {
			return true
		}
	}
	return false
}

// Serve answers on ln until Shutdown.
func (e *Edge) Serve(ln net.Listener) error { return e.srv.Serve(ln) }

// Shutdown stops accepting, lets in-flight requests finish until ctx ends,
// and closes idle upstream connections.
func (e *Edge) Shutdown(ctx context.Context) error {
	err := e.srv.ShutdownWithContext(ctx)
	e.web.CloseIdleConnections()
	e.media.CloseIdleConnections()
	return err
}

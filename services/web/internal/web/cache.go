package web

// The page cache: anonymous public pages for a short TTL, with an ETag.

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

type cachedPage struct {
	status int
	ctype  string
	body   []byte
	etag   string
	exp    time.Time
}

type pageCache struct {
	ttl   time.Duration
	now   func() time.Time
	mu    sync.RWMutex
	m     map[string]cachedPage
	bytes int    // the bodies held
	gen   uint64 // raised by clear: a page built before it is not kept after it
}

// The cache starts over when either bound would be passed. Keys hold only
// what a page depends on (see cacheKey), so the bounds are reached by many
// real pages, never by one page under many query strings.
const (
	pageCacheMax      = 2000
	pageCacheMaxBytes = 64 << 20
)

func newPageCache(ttl time.Duration, now func() time.Time) *pageCache {
	return &pageCache{ttl: ttl, now: now, m: map[string]cachedPage{}}
}

func (pc *pageCache) get(key string) (cachedPage, bool) {
	if pc.ttl <= 0 {
		return cachedPage{}, false
	}
	pc.mu.RLock()
	p, ok := pc.m[key]
	pc.mu.RUnlock()
	if ok && pc.now().After(p.exp) {
		pc.mu.Lock()
		if cur, still := pc.m[key]; still && cur.exp.Equal(p.exp) {
			delete(pc.m, key)
			pc.bytes -= len(cur.body)
		}
		pc.mu.Unlock()
		return cachedPage{}, false
	}
	return p, ok
}

// generation is the cache's generation, to pass to put after building a page.
func (pc *pageCache) generation() uint64 {
	pc.mu.RLock()
	defer pc.mu.RUnlock()
	return pc.gen
}

// put keeps p unless the cache was cleared since gen: an article unpublished
// while its page was being built must not come back from the cache.
func (pc *pageCache) put(key string, p cachedPage, gen uint64) {
	if pc.ttl <= 0 {
		return
	}
	if len(p.body) > pageCacheMaxBytes/16 {
		return // one huge page would crowd out the rest
	}
	p.exp = pc.now().Add(pc.ttl)
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.gen != gen {
		return
	}
	if old, ok := pc.m[key]; ok {
		pc.bytes -= len(old.body)
	}
	if len(pc.m) >= pageCacheMax || pc.bytes+len(p.body) > pageCacheMaxBytes {
		pc.m, pc.bytes = map[string]cachedPage{}, 0
	}
	pc.m[key] = p
	pc.bytes += len(p.body)
}

func (pc *pageCache) clear() {
	pc.mu.Lock()
	pc.m, pc.bytes = map[string]cachedPage{}, 0
	pc.gen++
	pc.mu.Unlock()
}

func etagOf(b []byte) string {
	sum := sha256.Sum256(b)
	return `"` + hex.EncodeToString(sum[:10]) + `"`
}

// cacheKey is the path and the query parameters the page reads (params),
// nothing else: /feed.xml?x=1 … ?x=9999 are one entry, not ten thousand
// misses filling memory.
func cacheKey(c *gin.Context, params []string) string {
	key, sep := c.Request.URL.Path, "?"
	for _, name := range params { // a fixed order: no map, no sort
		if v := c.Query(name); v != "" {
			key += sep + name + "=" + url.QueryEscape(v)
			sep = "&"
		}
	}
	return key
}

// serveCacheable writes a public response with an ETag, answering 304 when
// the browser already has it, and keeps anonymous copies for PageCacheTTL.
// shared=true means the body does not depend on the user at all (feeds);
// params are the query parameters build reads.
func (a *App) serveCacheable(c *gin.Context, shared bool, params []string, build func() (int, string, []byte, bool)) {
	key := cacheKey(c, params)
	cacheable := shared || !principal(c).Authenticated()
	if cacheable {
		if p, ok := a.cache.get(key); ok {
			a.writeCached(c, p, shared)
			return
		}
	}
	if !cacheable {
		if p, ok := buildPage(build); ok {
			a.writeCached(c, p, shared)
		}
		return
	}
	// When a page expires under load, every visitor asking for it meanwhile
	// waits for one build instead of each calling the article service.
	// The generation is part of the flight's key: after an edit clears the
	// cache, visitors wait for a new build, not one that began before it.
	gen := a.cache.generation()
	ran := false
	v, err, _ := a.builds.Do(strconv.FormatUint(gen, 10)+" "+key, func() (any, error) {
		ran = true
		if p, ok := a.cache.get(key); ok { // filled between our miss and now
			return p, nil
		}
		p, ok := buildPage(build)
		if !ok {
			return nil, errBuildFailed
		}
		if p.status == http.StatusOK {
			a.cache.put(key, p, gen)
		}
		return p, nil
	})
	if err != nil {
		if ran {
			return // build already wrote this request's error page
		}
		// Another request's build failed (perhaps its visitor left): this
		// request builds its own, so it gets its own page or error.
		p, ok := buildPage(build)
		if !ok {
			return
		}
		v = p
	}
	a.writeCached(c, v.(cachedPage), shared)
}

var errBuildFailed = errors.New("web: page build failed")

// buildPage runs build; false when build already wrote an error page.
func buildPage(build func() (int, string, []byte, bool)) (cachedPage, bool) {
	status, ctype, body, ok := build()
	if !ok {
		return cachedPage{}, false
	}
	return cachedPage{status: status, ctype: ctype, body: body, etag: etagOf(body)}, true
}

func (a *App) writeCached(c *gin.Context, p cachedPage, shared bool) {
	h := c.Writer.Header()
	h.Set("ETag", p.etag)
	if !shared {
		h.Set("Vary", "Cookie")
	}
	if principal(c).Authenticated() && !shared {
		h.Set("Cache-Control", "private, no-cache")
	} else {
		h.Set("Cache-Control", "public, no-cache")
	}
	if p.status == http.StatusOK && etagMatch(c.GetHeader("If-None-Match"), p.etag) {
		c.Status(http.StatusNotModified)
		c.Writer.WriteHeaderNow()
		return
	}
	c.Data(p.status, p.ctype, p.body)
}

func etagMatch(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(t), "W/"))
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}

package media

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"pressroom.dev/kit/server"
)

// benchImage is a ~200 KB PNG (224x224 RGBA, stored uncompressed).
func benchImage(b testing.TB) []byte { return pngBytes(b, 224, 224, 2024) }

// serveSetup uploads the image to the media service and puts the same
// file behind Go's http.FileServer, bare and behind the kit's server stack
// (same middleware as media: logs, metrics, tracing); it returns the URLs.
func serveSetup(b *testing.B) (mediaURL, fsURL, fsKitURL string, size int) {
	e := newEnv(b, 10<<20)
	img := benchImage(b)
	it := e.mustUpload(e.tok("bench", "author"), "bench.png", img)
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, it.Name), img, 0o640); err != nil {
		b.Fatal(err)
	}
	fs := httptest.NewServer(http.FileServer(http.Dir(dir)))
	b.Cleanup(fs.Close)
	kit := server.New(server.Options{Name: "fileserver", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	kit.Engine().GET("/fs/*path", gin.WrapH(http.StripPrefix("/fs", http.FileServer(http.Dir(dir)))))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { kit.Serve(ctx, ln); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	return e.base + it.URL, fs.URL + "/" + it.Name, "http://" + ln.Addr().String() + "/fs/" + it.Name, len(img)
}

func fetch(b *testing.B, c *http.Client, url string, size int) {
	if err := get(c, url, size); err != nil {
		b.Fatal(err)
	}
}

// get GETs url and checks it answered 200 with size bytes.
func get(c *http.Client, url string, size int) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || n != int64(size) {
		return fmt.Errorf("GET %s: %d, %d bytes, %v", url, resp.StatusCode, n, err)
	}
	return nil
}

// BenchmarkServe: GET of a 200 KB image from the media service (kit server,
// middleware, name check, headers) and from http.FileServer, same file,
// same run. Target: media >= 0.8x the FileServer's throughput (see
// BenchmarkServeRatio).
func BenchmarkServe(b *testing.B) {
	mediaURL, fsURL, fsKitURL, size := serveSetup(b)
	for _, c := range []struct{ name, url string }{{"media", mediaURL}, {"fileserver", fsURL}, {"fileserver-kit", fsKitURL}} {
		b.Run(c.name, func(b *testing.B) {
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			defer client.CloseIdleConnections()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					fetch(b, client, c.url, size)
				}
			})
		})
	}
}

// BenchmarkServeRatio measures serving throughput: each round every server
// answers the same number of GETs from serveWorkers concurrent clients, in
// a rotating order. A round's servers run back to back, so the median of the
// per-round ratios is robust to bursts of machine noise. It reports media's
// throughput relative to the bare FileServer ("x-fileserver"; target >= 0.8)
// and to the FileServer behind the same kit middleware ("x-fileserver-kit":
// media's own handler cost).
func BenchmarkServeRatio(b *testing.B) {
	mediaURL, fsURL, fsKitURL, size := serveSetup(b)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: serveWorkers}}
	defer client.CloseIdleConnections()
	urls := []string{mediaURL, fsURL, fsKitURL}
	for _, u := range urls { // warm caches and connections
		concurrentFetches(b, client, u, size, 4*serveWorkers)
	}
	var vsFS, vsFSKit []float64
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i, round := 0, 0; i < b.N; round++ {
		batch := min(200, b.N-i)
		spent := make([]time.Duration, len(urls))
		for j := range urls {
			k := (j + round) % len(urls)
			start := time.Now()
			concurrentFetches(b, client, urls[k], size, batch)
			spent[k] = time.Since(start)
		}
		vsFS = append(vsFS, float64(spent[1])/float64(spent[0]))
		vsFSKit = append(vsFSKit, float64(spent[2])/float64(spent[0]))
		i += batch
	}
	b.ReportMetric(median(vsFS), "x-fileserver")
	b.ReportMetric(median(vsFSKit), "x-fileserver-kit")
}

func median(xs []float64) float64 {
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// serveWorkers is the number of concurrent clients in BenchmarkServeRatio.
const serveWorkers = 8

// concurrentFetches GETs url n times from serveWorkers goroutines.
func concurrentFetches(b *testing.B, c *http.Client, url string, size, n int) {
	var next atomic.Int64
	errs := make(chan error, serveWorkers)
	for range serveWorkers {
		go func() {
			var err error
			for err == nil && next.Add(1) <= int64(n) {
				err = get(c, url, size)
			}
			errs <- err
		}()
	}
	for range serveWorkers {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpload: authenticated multipart upload of distinct ~200 KB PNGs
// (sniff, hash, fsync, validate, rename, insert).
func BenchmarkUpload(b *testing.B) {
	e := newEnv(b, 10<<20)
	tok := e.tok("bench", "author")
	base := benchImage(b)
	client := &http.Client{}
	b.SetBytes(int64(len(base)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		body, ct := multipartBody(b, "file", "b.png", "image/png", withTextChunk(base, fmt.Sprint(i)))
		req, _ := http.NewRequest(http.MethodPost, e.base+"/media/upload", bytes.NewReader(body.Bytes()))
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Authorization", "Bearer "+tok)
		b.StartTimer()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			b.Fatalf("upload: %d", resp.StatusCode)
		}
	}
}

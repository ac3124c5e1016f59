package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"pressroom.dev/tools/devlaunch"

	articlev1 "pressroom.dev/proto/gen/article/v1"
	"pressroom.dev/proto/gen/article/v1/articlev1connect"
)

// BenchmarkSite loads GET / and an article page through the edge of a real
// platform (as a browser reaches it), next to a bare net/http hello-world on
// the same loopback, and reports rps and latency percentiles. Targets (issue
// 6): the site's rps at least 0.3x the bare server's, and p99 under 15 ms at
// a steady 500 rps. Saturated rates are measured in rounds, every target
// back to back in a rotating order, and each ratio is the median round's, so
// a burst of machine noise cannot decide it.
//
// Every server runs in a process of its own, the load generator alone in
// this one: the edge as in `make dev` (there it lives in the launcher), web
// as always, and the hello-world as the program it is. "bare-inproc" is the
// same hello-world inside the generator's process, reported for comparison
// only: sharing the generator's Go runtime makes it faster than any server
// that runs apart from its clients. The "-direct" targets are web's own
// port without the edge, to show what the proxy hop costs.
func BenchmarkSite(b *testing.B) {
	p := startPlatform(b)
	slug := seedArticle(b, p)
	bare := startServer(b, "hello")
	edge := startServer(b, "edge", edgeWebEnv+"="+p.ServiceURLs["web"], edgeMediaEnv+"="+p.ServiceURLs["media"])

	inproc := &http.Server{Handler: helloWorld}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = inproc.Serve(ln) }()
	defer inproc.Close()

	targets := []struct{ name, url string }{
		{"bare", "http://" + bare + "/"},
		{"home", "http://" + edge + "/"},
		{"article", "http://" + edge + "/articles/" + slug},
		{"home-direct", p.ServiceURLs["web"] + "/"},
		{"article-direct", p.ServiceURLs["web"] + "/articles/" + slug},
		{"bare-inproc", "http://" + ln.Addr().String() + "/"},
	}
	const (
		rounds    = 5
		roundTime = 1500 * time.Millisecond
		paceTime  = 10 * time.Second // 5,000 requests: one VM hiccup cannot be the whole top 1%
	)
	b.ResetTimer()
	for b.Loop() {
		rps := make([][]float64, len(targets))      // per target, per round
		ratio := make([][]float64, len(targets))    // per target, per round, vs bare
		vsInproc := make([][]float64, len(targets)) // per target, per round, vs bare-inproc
		for round := range rounds {
			got := make([]loadResult, len(targets))
			for j := range targets {
				k := (j + round) % len(targets)
				got[k] = closedLoop(b, targets[k].url, 32, roundTime)
				if got[k].errors > 0 {
					b.Errorf("%s: %d failed requests", targets[k].name, got[k].errors)
				}
			}
			for k := range targets {
				rps[k] = append(rps[k], got[k].rps)
				ratio[k] = append(ratio[k], got[k].rps/got[0].rps)
				vsInproc[k] = append(vsInproc[k], got[k].rps/got[len(targets)-1].rps)
			}
		}
		bareRPS := median(rps[0])
		b.ReportMetric(bareRPS, "bare-rps")
		// The bare server's latency at 500 rps is the floor the generator and
		// the machine give any server.
		barePaced, steal := pacedWithSteal(b, targets[0].url, paceTime)
		b.Logf("%-14s saturated %.0f rps in the median round; at 500 rps p50 %s p99 %s%s",
			"bare", bareRPS, barePaced.p50, barePaced.p99, steal)
		for k, target := range targets[1:] {
			k++
			b.ReportMetric(median(rps[k]), target.name+"-rps")
			if target.name == "bare-inproc" {
				b.Logf("%-14s saturated %.0f rps, %.2fx bare (%.0f rps) in the median round: the hello-world inside the generator's process",
					target.name, median(rps[k]), median(ratio[k]), bareRPS)
				continue
			}
			b.ReportMetric(median(ratio[k]), target.name+"-x-bare")
			line := fmt.Sprintf("%-14s %5.1f KiB page, saturated %.0f rps, %.2fx bare (%.0f rps), %.2fx bare-inproc in the median round",
				target.name, float64(len(body(b, target.url)))/1024, median(rps[k]), median(ratio[k]), bareRPS, median(vsInproc[k]))
			if !strings.HasSuffix(target.name, "-direct") {
				b.ReportMetric(median(vsInproc[k]), target.name+"-x-bare-inproc")
				paced, steal := pacedWithSteal(b, target.url, paceTime)
				b.ReportMetric(float64(paced.p50.Microseconds())/1000, target.name+"-p50-ms@500rps")
				b.ReportMetric(float64(paced.p99.Microseconds())/1000, target.name+"-p99-ms@500rps")
				line += fmt.Sprintf("; at 500 rps p50 %s p99 %s%s", paced.p50, paced.p99, steal)
				line += fmt.Sprintf(" (targets: %.2fx >= 0.30x %s, p99 < 15ms %s)",
					median(ratio[k]), verdict(median(ratio[k]) >= 0.3), verdict(paced.p99 < 15*time.Millisecond))
			}
			b.Log(line)
		}
	}
}

// pacedWithSteal loads url at 500 rps for d and says how much of the
// machine's CPU time its hypervisor took meanwhile ("steal" in /proc/stat):
// on a shared virtual machine that, not the platform, is what stretches the
// tail.
func pacedWithSteal(b *testing.B, url string, d time.Duration) (loadResult, string) {
	steal0, total0, ok0 := cpuSteal()
	r := openLoop(b, url, 500, d)
	if r.errors > 0 {
		b.Errorf("%s: %d failed requests at 500 rps", url, r.errors)
	}
	steal1, total1, ok1 := cpuSteal()
	if !ok0 || !ok1 || total1 <= total0 {
		return r, ""
	}
	return r, fmt.Sprintf(", %.0f%% CPU steal", 100*float64(steal1-steal0)/float64(total1-total0))
}

// cpuSteal reads the steal and total jiffies of all CPUs from /proc/stat.
func cpuSteal() (steal, total uint64, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, false
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, false
		}
		if i < 8 { // user … steal; guest time is already counted in user
			total += n
		}
		if i == 7 {
			steal = n
		}
	}
	return steal, total, true
}

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "MISSED"
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// seedArticle publishes one article through the real article service with a
// token minted by the launch's signing key (as auth would issue it).
func seedArticle(b *testing.B, pl *devlaunch.Platform) string {
	b.Helper()
	tok, err := pl.Signer.Sign("00000000-0000-4000-8000-00000000be01", "bench@example.com", "Bench Author", []string{"author"})
	if err != nil {
		b.Fatal(err)
	}
	client := articlev1connect.NewArticleServiceClient(http.DefaultClient, pl.ServiceURLs["article"])
	body := ""
	for i := 0; i < 30; i++ {
		body += fmt.Sprintf("## Part %d\n\nThe tide came in over the *flats*, as it does, with gulls and [a link](https://example.org).\n\n", i)
	}
	ctx := context.Background()
	create := connect.NewRequest(&articlev1.CreateArticleRequest{Title: "A benchmark of tides", Summary: "Load test article", BodyMarkdown: body})
	create.Header().Set("Authorization", "Bearer "+tok)
	res, err := client.CreateArticle(ctx, create)
	if err != nil {
		b.Fatalf("seed article: %v", err)
	}
	pub := connect.NewRequest(&articlev1.PublishArticleRequest{Id: res.Msg.GetArticle().GetId()})
	pub.Header().Set("Authorization", "Bearer "+tok)
	if _, err := client.PublishArticle(ctx, pub); err != nil {
		b.Fatalf("publish seed article: %v", err)
	}
	return res.Msg.GetArticle().GetSlug()
}

type loadResult struct {
	rps      float64
	p50, p99 time.Duration
	errors   int64
}

func newClient(conns int) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		MaxIdleConns: conns * 2, MaxIdleConnsPerHost: conns * 2, IdleConnTimeout: time.Minute}}
}

func get(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// closedLoop: workers request back to back for d; throughput and latency.
func closedLoop(b *testing.B, url string, workers int, d time.Duration) loadResult {
	return closedLoopWith(newClient(workers), url, workers, d)
}

// closedLoopWith is closedLoop with a client of the caller's (how it dials).
func closedLoopWith(c *http.Client, url string, workers int, d time.Duration) loadResult {
	defer c.CloseIdleConnections() // none left open for the next target, or to hold up a server's shutdown
	var mu sync.Mutex
	var lat []time.Duration
	var errs atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := get(c, url); err != nil {
					errs.Add(1)
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	r := summarize(lat, d)
	r.errors = errs.Load()
	return r
}

// openLoop: requests start at a fixed rate whatever the latency (no coordinated omission).
func openLoop(b *testing.B, url string, rate int, d time.Duration) loadResult {
	return openLoopWith(newClient(64), url, rate, d)
}

// openLoopWith is openLoop with a client of the caller's.
func openLoopWith(c *http.Client, url string, rate int, d time.Duration) loadResult {
	defer c.CloseIdleConnections()
	var mu sync.Mutex
	var lat []time.Duration
	var errs atomic.Int64
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if at.Sub(start) >= d {
			break
		}
		time.Sleep(time.Until(at))
		wg.Add(1)
		go func(at time.Time) {
			defer wg.Done()
			if err := get(c, url); err != nil {
				errs.Add(1)
				return
			}
			l := time.Since(at)
			mu.Lock()
			lat = append(lat, l)
			mu.Unlock()
		}(at)
	}
	wg.Wait()
	r := summarize(lat, d)
	r.errors = errs.Load()
	return r
}

func summarize(lat []time.Duration, d time.Duration) loadResult {
	if len(lat) == 0 {
		return loadResult{}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(float64(len(lat))*p))] }
	return loadResult{rps: float64(len(lat)) / d.Seconds(), p50: pct(0.50), p99: pct(0.99)}
}

package e2e

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"pressroom.dev/kit/token"
	"pressroom.dev/tools/devlaunch"
	"pressroom.dev/tools/localkube"
	"pressroom.dev/tools/localstack"

	articlev1 "pressroom.dev/proto/gen/article/v1"
	"pressroom.dev/proto/gen/article/v1/articlev1connect"
)

// BenchmarkLiveSite deploys the local stack onto a fresh node and loads
// GET / and an article page through Traefik (https://example.com, as a
// visitor arrives) and on web's own port (a pod address), in the same run,
// from inside the node (where kubelet probes come from: the only place
// besides Traefik web's NetworkPolicy admits). It reports each one's
// saturated rate, the Traefik/direct ratio, and p50/p99 at a steady rate
// (200 rps, or half the slowest saturated rate on a busy machine).
func BenchmarkLiveSite(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("the live node needs root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	repo, err := devlaunch.FindRepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	c, err := localkube.Start(ctx, localkube.Options{Node: true, Slot: localkube.AnySlot, Log: os.Stderr})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Stop()
	inet, err := localstack.StartInternet(ctx, c, filepath.Join(c.Dir, "internet"))
	if err != nil {
		b.Fatal(err)
	}
	defer inet.Close()
	p, _, err := localstack.Prepare(ctx, repo, localstack.Describe(c, inet), filepath.Join(c.Dir, "local-stack"), os.Stderr)
	if err != nil {
		b.Fatal(err)
	}
	if out, err := p.Run(ctx, "", "up", "-s", localstack.StackName, "--yes", "--skip-preview"); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	slug := seedLiveArticle(ctx, b, c)
	webPod := podIP(ctx, b, c, "web")

	viaTraefik := func(conns int) *http.Client { return nodeClient(c, conns, c.NodeIP) }
	direct := func(conns int) *http.Client { return nodeClient(c, conns, "") }
	targets := []struct {
		name, url string
		client    func(int) *http.Client
	}{
		{"home-traefik", "https://" + localstack.Domain + "/", viaTraefik},
		{"home-direct", "http://" + webPod + ":8080/", direct},
		{"article-traefik", "https://" + localstack.Domain + "/articles/" + slug, viaTraefik},
		{"article-direct", "http://" + webPod + ":8080/articles/" + slug, direct},
	}
	const rounds, roundTime, paceTime = 5, 1500 * time.Millisecond, 10 * time.Second
	b.ResetTimer()
	for b.Loop() {
		rps := make([][]float64, len(targets))
		for round := range rounds {
			for j := range targets {
				k := (j + round) % len(targets)
				r := closedLoopWith(targets[k].client(32), targets[k].url, 32, roundTime)
				if r.errors > 0 {
					b.Errorf("%s: %d failed requests", targets[k].name, r.errors)
				}
				rps[k] = append(rps[k], r.rps)
			}
		}
		// Latency at a steady rate every path sustains: 200 rps, or half the
		// slowest saturated rate when the machine is busier than that.
		pace := 200
		for k := range targets {
			pace = min(pace, int(median(rps[k])/2))
		}
		for k, tg := range targets {
			paced := openLoopWith(tg.client(64), tg.url, pace, paceTime)
			if paced.errors > 0 {
				b.Errorf("%s: %d failed requests at %d rps", tg.name, paced.errors, pace)
			}
			b.ReportMetric(median(rps[k]), tg.name+"-rps")
			b.ReportMetric(float64(paced.p99.Microseconds())/1000, tg.name+"-p99-ms-paced")
			line := fmt.Sprintf("%-16s saturated %6.0f rps (median of %d rounds); at %d rps p50 %s p99 %s", tg.name, median(rps[k]), rounds, pace, paced.p50, paced.p99)
			if strings.HasSuffix(tg.name, "-traefik") {
				ratio := median(rps[k]) / median(rps[k+1])
				b.ReportMetric(ratio, tg.name+"-x-direct")
				line += fmt.Sprintf("; %.2fx web's own port", ratio)
			}
			b.Log(line)
		}
	}
}

// nodeClient dials from inside the node's network namespace: to node (its
// Traefik, TLS for the site's name) when set, else to the URL's address.
func nodeClient(c *localkube.Cluster, conns int, node string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConns: conns * 2, MaxIdleConnsPerHost: conns * 2, IdleConnTimeout: time.Minute,
		DialContext: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
			if node != "" {
				_, port, _ := net.SplitHostPort(addr)
				addr = net.JoinHostPort(node, port)
			}
			err = localkube.InNamespace(c.NodePID(), func() error {
				conn, err = d.DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
		// Traefik serves its default certificate until the stack's is issued.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
	}}
}

func podIP(ctx context.Context, b *testing.B, c *localkube.Cluster, app string) string {
	out, err := c.Kubectl(ctx, "get", "pods", "-n", "pressroom", "-l", "app.kubernetes.io/name="+app, "-o", "jsonpath={.items[0].status.podIP}")
	if err != nil || len(out) == 0 {
		b.Fatalf("pod IP of %s: %v %s", app, err, out)
	}
	return string(out)
}

// seedLiveArticle publishes an article through the article service with a
// token signed by the stack's own JWT key (read from its Secret), as auth
// would issue one.
func seedLiveArticle(ctx context.Context, b *testing.B, c *localkube.Cluster) string {
	out, err := c.Kubectl(ctx, "get", "secret", "jwt-keys", "-n", "pressroom", "-o", `jsonpath={.data.jwt_private\.pem}`)
	if err != nil {
		b.Fatal(err)
	}
	pem, err := base64.StdEncoding.DecodeString(string(out))
	if err != nil {
		b.Fatal(err)
	}
	key, err := token.ParsePrivateKey(pem)
	if err != nil {
		b.Fatal(err)
	}
	tok, err := token.NewSigner(key, "pressroom-auth", []string{"pressroom"}, 15*time.Minute).
		Sign("00000000-0000-4000-8000-00000000be02", "bench@example.com", "Bench Author", []string{"author"})
	if err != nil {
		b.Fatal(err)
	}
	client := articlev1connect.NewArticleServiceClient(nodeClient(c, 1, ""), "http://"+podIP(ctx, b, c, "article")+":8082")
	body := ""
	for i := 0; i < 30; i++ {
		body += fmt.Sprintf("## Part %d\n\nThe tide came in over the *flats*, as it does, with gulls and [a link](https://example.org).\n\n", i)
	}
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

// Package devlaunch runs the whole pressroom platform on one machine: a
// throw-away Postgres with the four service databases, Redis, embedded NATS
// JetStream, a JWT key pair, the local OIDC provider, the five service
// binaries and an edge proxy routing /media/* to media and the rest to web,
// like the cluster's Ingress. `make dev` (tools/cmd/dev) and the browser
// tests (tools/e2e) both use it.
package devlaunch

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"pressroom.dev/kit/token"
	"pressroom.dev/tools/devoidc"
)

// Services in start order: web last, behind everything it calls.
var Services = []string{"auth", "article", "media", "notification", "web"}

// Options configures a launch. The zero value works from the repository root.
type Options struct {
	RepoRoot    string    // where go.work lives; "" = found from the working directory
	DataDir     string    // keep state here across runs (DEV_DATA); "" = a temp dir removed at Stop
	EdgeAddr    string    // the public listener; default 127.0.0.1:8080, "127.0.0.1:0" picks a free port
	PublicHost  string    // host name in PUBLIC_URL; default localhost (browsers allow Secure cookies there)
	AdminEmails []string  // default admin@example.com; auth makes each admin when it signs in
	Log         io.Writer // every process's log lines, prefixed by its name; nil = discarded
	// Env adds or overrides variables per service (e.g. {"web": {"LOG_LEVEL": "debug"}}).
	Env map[string]map[string]string
	// BinDir holds the built service binaries; default <state>/bin. Build=false reuses them.
	BinDir  string
	NoBuild bool
}

// Platform is a running launch.
type Platform struct {
	URL         string            // public origin, e.g. http://localhost:8080
	EdgeAddr    string            // host:port the edge listens on
	ServiceURLs map[string]string // service name → http://127.0.0.1:port
	DSNs        map[string]string // database (auth, article, media, notification) → owner DSN
	RedisAddr   string
	NATSURL     string
	OIDCIssuer  string
	KeysDir     string
	AdminEmails []string
	// Signer mints access tokens exactly like auth does (for benchmarks that seed data).
	Signer *token.Signer

	l *Launcher
}

// Launcher owns every process and server of a launch.
type Launcher struct {
	opt        Options
	stateDir   string
	tempState  bool
	secretsDir string

	logMu sync.Mutex
	mu    sync.Mutex
	procs []*proc
	nats  *natsserver.Server
	oidc  *devoidc.Server
	edge  *Edge
	stop  sync.Once
	// stopping is set once Stop begins: exits after that are expected.
	stopping atomic.Bool
	exits    chan error
	lock     *os.File // held on a kept DEV_DATA while this launch runs
}

// FindRepoRoot walks up from the working directory to the directory holding go.work.
func FindRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.work not found above the working directory: run from the pressroom checkout")
		}
		dir = parent
	}
}

// Start brings everything up and returns once every service answers /readyz.
// On error, whatever was started is stopped again.
func Start(ctx context.Context, o Options) (p *Platform, err error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.EdgeAddr == "" {
		o.EdgeAddr = "127.0.0.1:8080"
	}
	if o.PublicHost == "" {
		o.PublicHost = "localhost"
	}
	if len(o.AdminEmails) == 0 {
		o.AdminEmails = []string{"admin@example.com"}
	}
	if o.RepoRoot == "" {
		if o.RepoRoot, err = FindRepoRoot(); err != nil {
			return nil, err
		}
	}
	l := &Launcher{opt: o, exits: make(chan error, 1)}
	if o.DataDir != "" {
		l.stateDir, err = filepath.Abs(o.DataDir)
		if err == nil {
			err = os.MkdirAll(l.stateDir, 0o755)
		}
	} else {
		l.stateDir, err = os.MkdirTemp("", "pressroom-dev-")
		l.tempState = true
	}
	if err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	if !l.tempState {
		if l.lock, err = lockState(l.stateDir); err != nil {
			return nil, err
		}
	}
	// Postgres runs as its own user when we are root: it must be able to reach its data dir.
	_ = os.Chmod(l.stateDir, 0o755)
	p = &Platform{l: l, ServiceURLs: map[string]string{}, AdminEmails: o.AdminEmails}
	defer func() {
		if err != nil {
			_ = p.Stop()
			p = nil
		}
	}()
	l.secretsDir = filepath.Join(l.stateDir, "secrets")
	if err = os.MkdirAll(l.secretsDir, 0o700); err != nil {
		return p, err
	}

	// The edge listener first: its port is part of PUBLIC_URL, which services need.
	edgeLn, err := net.Listen("tcp", o.EdgeAddr)
	if err != nil {
		return p, fmt.Errorf("edge: listen on %s: %w (is another `make dev` running? set DEV_ADDR)", o.EdgeAddr, err)
	}
	p.EdgeAddr = edgeLn.Addr().String()
	p.URL = "http://" + net.JoinHostPort(o.PublicHost, strconv.Itoa(edgeLn.Addr().(*net.TCPAddr).Port))

	// Build while the datastores start.
	binDir := o.BinDir
	if binDir == "" {
		binDir = filepath.Join(l.stateDir, "bin")
	}
	buildErr := make(chan error, 1)
	go func() {
		if o.NoBuild {
			buildErr <- nil
			return
		}
		buildErr <- l.build(ctx, binDir)
	}()

	if p.KeysDir, p.Signer, err = l.keys(); err != nil {
		edgeLn.Close()
		return p, err
	}
	pg, dsns, err := l.startPostgres(ctx, filepath.Join(l.stateDir, "postgres"))
	if err != nil {
		edgeLn.Close()
		return p, err
	}
	_ = pg
	p.DSNs = dsns
	rd, err := l.startRedis(ctx, filepath.Join(l.stateDir, "redis"), !l.tempState)
	if err != nil {
		edgeLn.Close()
		return p, err
	}
	p.RedisAddr = rd.addr
	if l.nats, err = startNATS(filepath.Join(l.stateDir, "nats")); err != nil {
		edgeLn.Close()
		return p, err
	}
	p.NATSURL = l.nats.ClientURL()

	clientSecret, err := readSecret(filepath.Join(l.secretsDir, "oidc-client"))
	if err != nil {
		edgeLn.Close()
		return p, err
	}
	l.oidc, err = devoidc.New(devoidc.Options{ClientID: "pressroom-dev", ClientSecret: clientSecret,
		RedirectURIs: []string{p.URL + "/auth/callback"}})
	if err == nil {
		err = l.oidc.Start("127.0.0.1:0")
	}
	if err != nil {
		edgeLn.Close()
		return p, fmt.Errorf("oidc provider: %w", err)
	}
	p.OIDCIssuer = l.oidc.Issuer()

	if err = <-buildErr; err != nil {
		edgeLn.Close()
		return p, err
	}
	ports := map[string]int{}
	for _, s := range Services {
		if ports[s], err = freePort(); err != nil {
			edgeLn.Close()
			return p, err
		}
		p.ServiceURLs[s] = fmt.Sprintf("http://127.0.0.1:%d", ports[s])
	}
	mediaDir := filepath.Join(l.stateDir, "media")
	if err = os.MkdirAll(mediaDir, 0o755); err != nil {
		edgeLn.Close()
		return p, err
	}
	common := map[string]string{
		"LOG_LEVEL":           "info",
		"SHUTDOWN_TIMEOUT":    "5s",
		"JWT_PUBLIC_KEY_PATH": filepath.Join(p.KeysDir, "jwt_public.pem"),
		"JWT_ISSUER":          jwtIssuer,
		"JWT_AUDIENCE":        jwtAudience,
		"PUBLIC_URL":          p.URL,
		// The edge in front of web is this machine's one proxy, as Traefik is the cluster's.
		"TRUSTED_PROXIES": "127.0.0.1",
	}
	env := map[string]map[string]string{
		"auth": {
			"DATABASE_URL": dsns["auth"], "REDIS_ADDR": rd.addr, "REDIS_PASSWORD": rd.password,
			"JWT_PRIVATE_KEY_PATH": filepath.Join(p.KeysDir, "jwt_private.pem"),
			"OIDC_ISSUER_URL":      p.OIDCIssuer, "GOOGLE_CLIENT_ID": "pressroom-dev", "GOOGLE_CLIENT_SECRET": clientSecret,
			"GOOGLE_LOGIN_ENABLED": "true", "OIDC_REDIRECT_URL": p.URL + "/auth/callback",
			"ADMIN_EMAILS": strings.Join(o.AdminEmails, ","),
		},
		"article":      {"DATABASE_URL": dsns["article"], "NATS_URL": p.NATSURL, "OUTBOX_POLL_INTERVAL": "1s"},
		"media":        {"DATABASE_URL": dsns["media"], "MEDIA_DIR": mediaDir},
		"notification": {"DATABASE_URL": dsns["notification"], "NATS_URL": p.NATSURL, "EMAIL_FROM": "pressroom@example.com", "NOTIFY_EMAIL": "editors@example.com"},
		"web": {"AUTH_URL": p.ServiceURLs["auth"], "ARTICLE_URL": p.ServiceURLs["article"],
			"MEDIA_URL": p.ServiceURLs["media"]},
	}
	for _, s := range Services {
		vars := map[string]string{"HTTP_ADDR": fmt.Sprintf("127.0.0.1:%d", ports[s])}
		for k, v := range common {
			vars[k] = v
		}
		for k, v := range env[s] {
			vars[k] = v
		}
		for k, v := range o.Env[s] {
			vars[k] = v
		}
		if _, err = l.spawn(s, filepath.Join(binDir, s), nil, environ(vars), nil); err != nil {
			edgeLn.Close()
			return p, err
		}
	}
	for _, s := range Services {
		if err = l.waitReady(ctx, s, p.ServiceURLs[s]); err != nil {
			edgeLn.Close()
			return p, err
		}
	}
	edge, err := NewEdge(p.ServiceURLs["web"], p.ServiceURLs["media"])
	if err != nil {
		edgeLn.Close()
		return p, err
	}
	l.edge = edge
	go func() { _ = edge.Serve(edgeLn) }()
	return p, nil
}

const (
	jwtIssuer   = "pressroom-auth"
	jwtAudience = "pressroom"
)

// environ is a minimal environment: PATH and HOME from ours, plus vars.
func environ(vars map[string]string) []string {
	out := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TZ=UTC"}
	for k, v := range vars {
		out = append(out, k+"="+v)
	}
	return out
}

// build compiles the five services in one go command (they share the cache).
func (l *Launcher) build(ctx context.Context, binDir string) error {
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	args := []string{"build", "-o", binDir + string(filepath.Separator)}
	for _, s := range Services {
		args = append(args, "./services/"+s)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = l.opt.RepoRoot
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("build services (go %s): %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// keys creates (or reuses, with DEV_DATA) the RS256 key pair auth signs with.
func (l *Launcher) keys() (string, *token.Signer, error) {
	dir := filepath.Join(l.stateDir, "keys")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	privPath := filepath.Join(dir, "jwt_private.pem")
	var key *rsa.PrivateKey
	if b, err := os.ReadFile(privPath); err == nil {
		if key, err = token.ParsePrivateKey(b); err != nil {
			return "", nil, fmt.Errorf("%s: %w (delete it to get a new key)", privPath, err)
		}
	} else {
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return "", nil, err
		}
		if err := os.WriteFile(privPath, token.EncodePrivateKey(key), 0o600); err != nil {
			return "", nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "jwt_public.pem"), token.EncodePublicKey(&key.PublicKey), 0o644); err != nil {
		return "", nil, err
	}
	return dir, token.NewSigner(key, jwtIssuer, []string{jwtAudience}, 15*time.Minute), nil
}

func (l *Launcher) waitReady(ctx context.Context, name, base string) error {
	l.mu.Lock()
	var pr *proc
	for _, p := range l.procs {
		if p.name == name {
			pr = p
		}
	}
	l.mu.Unlock()
	deadline := time.Now().Add(90 * time.Second)
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		if pr != nil && pr.exited() {
			return fmt.Errorf("%s exited during start-up (%v); its log lines above say why", name, pr.err)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not ready at %s/readyz after 90s: %s", name, base, last)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// lockState takes an exclusive lock on a kept state directory, so a second
// launch on the same DEV_DATA says so instead of failing inside Postgres
// ("postmaster.pid already exists" behind a bare "connection refused").
// The kernel drops the lock when the process ends, however it ends.
func lockState(dir string) (*os.File, error) {
	path := filepath.Join(dir, "launch.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s is in use by another launch (pid %s): stop it first, or use another DEV_DATA", dir, strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// Exited reports the first process that exits on its own after Start
// (a crashed service, a killed datastore): the platform is broken then.
func (p *Platform) Exited() <-chan error { return p.l.exits }

// Stop stops every process (the services together, then Redis and Postgres)
// and, for a temporary launch, removes its state.
func (p *Platform) Stop() error {
	if p == nil || p.l == nil {
		return nil
	}
	l := p.l
	var errs []error
	l.stop.Do(func() {
		l.stopping.Store(true)
		if l.edge != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			_ = l.edge.Shutdown(ctx)
			cancel()
		}
		l.mu.Lock()
		procs := append([]*proc(nil), l.procs...)
		l.mu.Unlock()
		// Services at once, each within its grace; then the datastores they
		// used (spawned first), so no service loses its database mid-shutdown.
		var services, datastores []*proc
		for _, pr := range procs {
			if pr.name == "postgres" || pr.name == "redis" {
				datastores = append(datastores, pr)
			} else {
				services = append(services, pr)
			}
		}
		errs = append(errs, stopAll(services, 15*time.Second)...)
		errs = append(errs, stopAll(datastores, 15*time.Second)...)
		if l.oidc != nil {
			_ = l.oidc.Close()
		}
		if l.nats != nil {
			l.nats.Shutdown()
			l.nats.WaitForShutdown()
		}
		if l.tempState {
			if err := os.RemoveAll(l.stateDir); err != nil {
				errs = append(errs, err)
			}
		}
		if l.lock != nil {
			l.lock.Close() // releases the flock
		}
	})
	return errors.Join(errs...)
}

// Kill ends every process still running at once (SIGKILL), for a second
// Ctrl-C during Stop; Stop then finishes without waiting out the graces.
func (p *Platform) Kill() {
	if p == nil || p.l == nil {
		return
	}
	p.l.stopping.Store(true)
	p.l.mu.Lock()
	defer p.l.mu.Unlock()
	for _, pr := range p.l.procs {
		if !pr.exited() {
			_ = pr.cmd.Process.Kill()
		}
	}
}

func stopAll(procs []*proc, grace time.Duration) []error {
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, pr := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = pr.stop(grace)
		}()
	}
	wg.Wait()
	return errs
}

// StateDir is where this launch keeps its data.
func (p *Platform) StateDir() string { return p.l.stateDir }

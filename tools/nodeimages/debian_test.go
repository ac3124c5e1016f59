package nodeimages

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// These tests unpack the image, chroot into it and run the programs as the
// platform's pods do (their uid, their commands): a missing library, locale
// or data file fails here.

type rootfs struct {
	dir string
	cfg *v1.ConfigFile
}

func buildRootfs(t *testing.T, spec Spec) rootfs {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs a Debian image")
	}
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	start := time.Now()
	built, err := Build(spec, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	img, _ := readImage(t, built)
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "rootfs")
	unpackRootfs(t, img, dir)
	t.Logf("%s: %.1f MiB compressed, built and unpacked in %v", built.TagRef(), float64(built.Size)/(1<<20), time.Since(start).Round(time.Millisecond))
	// What the runtime provides in /dev.
	if err := os.MkdirAll(filepath.Join(dir, "dev/shm"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "dev/shm"), os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	for name, minor := range map[string]int{"null": 3, "zero": 5, "random": 8, "urandom": 9} {
		p := filepath.Join(dir, "dev", name)
		if err := syscall.Mknod(p, syscall.S_IFCHR|0o666, 1<<8|minor); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o666); err != nil {
			t.Fatal(err)
		}
	}
	return rootfs{dir: dir, cfg: cfg}
}

// cmd runs args[0] (looked up on the image's PATH) inside the rootfs.
func (r rootfs) cmd(t *testing.T, uid int, env []string, args ...string) *exec.Cmd {
	t.Helper()
	bin := args[0]
	if !strings.Contains(bin, "/") {
		for _, e := range r.cfg.Config.Env {
			if p, ok := strings.CutPrefix(e, "PATH="); ok {
				for _, d := range strings.Split(p, ":") {
					if _, err := os.Lstat(filepath.Join(r.dir, d, bin)); err == nil {
						bin = path.Join(d, bin)
						break
					}
				}
			}
		}
	}
	c := &exec.Cmd{Path: bin, Args: args, Env: append(append([]string{}, r.cfg.Config.Env...), env...), Dir: "/"}
	if r.cfg.Config.WorkingDir != "" {
		c.Dir = r.cfg.Config.WorkingDir
	}
	c.SysProcAttr = &syscall.SysProcAttr{Chroot: r.dir, Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	return c
}

func (r rootfs) run(t *testing.T, uid int, env []string, args ...string) string {
	t.Helper()
	out, err := r.cmd(t, uid, env, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// serve starts a server and stops it by its PID at cleanup.
func serve(t *testing.T, c *exec.Cmd, stop os.Signal) (logs func() string) {
	t.Helper()
	logFile := filepath.Join(t.TempDir(), "server.log")
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	c.Stdout, c.Stderr = f, f
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { c.Wait(); f.Close(); close(exited) }()
	t.Cleanup(func() {
		c.Process.Signal(stop)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			c.Process.Kill()
			<-exited
		}
	})
	return func() string { b, _ := os.ReadFile(logFile); return string(b) }
}

func waitFor(t *testing.T, what string, timeout time.Duration, logs func() string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !ok(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not ready after %v; server log:\n%s", what, timeout, logs())
		}
	}
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// platformScript returns one of infra/datastores' Postgres scripts (const
// name), formatted as the ConfigMap carries it, read from its source (tools
// does not depend on the infra module).
func platformScript(t *testing.T, name, databases string) string {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "../../infra/datastores/datastores.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range f.Decls {
		if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.CONST {
			for _, s := range g.Specs {
				vs := s.(*ast.ValueSpec)
				if vs.Names[0].Name == name {
					raw, err := strconv.Unquote(vs.Values[0].(*ast.BasicLit).Value)
					if err != nil {
						t.Fatal(err)
					}
					return fmt.Sprintf(raw, databases)
				}
			}
		}
	}
	t.Fatalf("%s not found in infra/datastores", name)
	return ""
}

func TestPostgresImageRuns(t *testing.T) {
	spec, err := PostgresSpec()
	if err != nil {
		t.Fatal(err)
	}
	r := buildRootfs(t, spec)
	start := time.Now()
	// The pod's command: the postgres-init ConfigMap's start.sh, mounted at /scripts.
	if err := os.MkdirAll(filepath.Join(r.dir, "scripts"), 0o755); err != nil {
		t.Fatal(err)
	}
	for file, name := range map[string]string{"start.sh": "startScript", "setup.sh": "setupScript"} {
		if err := os.WriteFile(filepath.Join(r.dir, "scripts", file), []byte(platformScript(t, name, "auth article")), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	// The pod's environment and command (infra/datastores).
	env := []string{"POSTGRES_USER=postgres", "POSTGRES_PASSWORD=root-pw", "PGDATA=/var/lib/postgresql/data/pgdata",
		"AUTH_DB_PASSWORD=auth-pw", "ARTICLE_DB_PASSWORD=article-pw"}
	args := []string{"sh", "/scripts/start.sh", "-c", "listen_addresses=127.0.0.1", "-p", port}
	srv := r.cmd(t, pgUID, env, args...)
	logs := serve(t, srv, syscall.SIGINT)
	t.Cleanup(func() { // a temporary server left behind by a failed init
		if b, err := os.ReadFile(filepath.Join(r.dir, "var/lib/postgresql/data/pgdata/postmaster.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0]); err == nil && pid != srv.Process.Pid {
				syscall.Kill(pid, syscall.SIGINT)
			}
		}
	})
	// The platform's probe.
	waitFor(t, "pg_isready", 120*time.Second, logs, func() bool {
		return r.cmd(t, pgUID, nil, "pg_isready", "-h", "127.0.0.1", "-p", port, "-U", "postgres").Run() == nil
	})
	t.Logf("initdb + init script + start: %v", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(logs(), "start.sh: first start") || !strings.Contains(logs(), "start.sh: setup done") {
		t.Fatalf("start.sh did not initialise and set up:\n%s", logs())
	}
	// Over the unix socket in /var/run/postgresql.
	if got := r.run(t, pgUID, nil, "psql", "-p", port, "-U", "postgres", "-tAc", "select 1"); got != "1" {
		t.Fatalf("select 1 = %q", got)
	}
	got := r.run(t, pgUID, nil, "psql", "-p", port, "-U", "postgres", "-tAc",
		"select current_setting('lc_collate'), current_setting('server_encoding'), current_setting('TimeZone'),"+
			" (select string_agg(datname, ',' order by datname) from pg_database where datname like '%_db')")
	if got != "C.UTF-8|UTF8|Etc/UTC|article_db,auth_db" && got != "C.UTF-8|UTF8|UTC|article_db,auth_db" {
		t.Fatalf("settings = %q", got)
	}
	t.Logf("lc_collate|encoding|TimeZone|databases: %s", got)
	// A service's login over TCP (SCRAM, as from the pod network).
	if got := r.run(t, pgUID, []string{"PGPASSWORD=auth-pw"}, "psql", "-h", "127.0.0.1", "-p", port, "-U", "auth", "-d", "auth_db",
		"-qtAc", "create table t(x int); insert into t values (42); select x from t"); got != "42" {
		t.Fatalf("auth_db: %q", got)
	}
	if st, err := os.Stat(filepath.Join(r.dir, "var/lib/postgresql/data/pgdata")); err != nil || st.Sys().(*syscall.Stat_t).Uid != pgUID || st.Mode().Perm() != 0o700 {
		t.Fatalf("PGDATA: %v %v", st.Mode(), err)
	}
}

func TestRedisImageRuns(t *testing.T) {
	spec, err := RedisSpec()
	if err != nil {
		t.Fatal(err)
	}
	r := buildRootfs(t, spec)
	// Debian images are deterministic too (closure, trees, busybox).
	a, errA := Build(spec, t.TempDir())
	b, errB := Build(spec, t.TempDir())
	if errA != nil || errB != nil || a.Digest != b.Digest {
		t.Fatalf("two builds: %s %v, %s %v", a.Digest, errA, b.Digest, errB)
	}
	env := []string{"REDISCLI_AUTH=redis-pw"}
	args := append(append([]string{}, r.cfg.Config.Entrypoint...),
		"--port", "0", "--unixsocket", "/tmp/redis.sock", "--dir", "/data",
		"--appendonly", "yes", "--maxmemory", "200mb", "--maxmemory-policy", "noeviction", "--requirepass", "redis-pw")
	logs := serve(t, r.cmd(t, 999, nil, args...), syscall.SIGTERM)
	waitFor(t, "redis socket", 30*time.Second, logs, func() bool {
		_, err := os.Stat(filepath.Join(r.dir, "tmp/redis.sock"))
		return err == nil
	})
	// The platform's probe, against the socket.
	r.run(t, 999, env, "sh", "-c", "redis-cli -s /tmp/redis.sock ping | grep -q PONG")
	if got := r.run(t, 999, env, "redis-cli", "-s", "/tmp/redis.sock", "set", "k", "v"); got != "OK" {
		t.Fatalf("set: %q", got)
	}
	if got := r.run(t, 999, env, "redis-cli", "-s", "/tmp/redis.sock", "get", "k"); got != "v" {
		t.Fatalf("get: %q", got)
	}
	if out, _ := r.cmd(t, 999, nil, "redis-cli", "-s", "/tmp/redis.sock", "ping").CombinedOutput(); !bytes.Contains(out, []byte("NOAUTH")) {
		t.Fatalf("ping without the password: %s", out)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "data/appendonlydir")); err != nil {
		t.Fatalf("no AOF in /data: %v", err)
	}
}

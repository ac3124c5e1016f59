package devlaunch

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestDatastores starts the real Postgres (four databases, one role each),
// Redis and NATS the launcher uses, and checks they stop and leave nothing.
func TestDatastores(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Postgres and Redis")
	}
	// Not t.TempDir(): its parent is private, and Postgres runs as another user under root.
	state, err := os.MkdirTemp("", "devlaunch-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(state)
	_ = os.Chmod(state, 0o755)
	l := &Launcher{opt: Options{Log: io.Discard}, stateDir: state, secretsDir: filepath.Join(state, "secrets")}
	if err := os.MkdirAll(l.secretsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, dsns, err := l.startPostgres(ctx, filepath.Join(state, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	rd, err := l.startRedis(ctx, filepath.Join(state, "redis"), false)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := startNATS(filepath.Join(state, "nats"))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	if !ns.JetStreamEnabled() {
		t.Fatal("NATS without JetStream")
	}
	for _, db := range Databases {
		conn, err := pgx.Connect(ctx, dsns[db])
		if err != nil {
			t.Fatalf("%s: %v", db, err)
		}
		var name, owner string
		if err := conn.QueryRow(ctx, `SELECT current_database(), pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()`).Scan(&name, &owner); err != nil {
			t.Fatal(err)
		}
		if name != db+"_db" || owner != db {
			t.Errorf("%s: connected to %s owned by %s", db, name, owner)
		}
		// A role can create tables in its own database (migrations need that).
		if _, err := conn.Exec(ctx, `CREATE TABLE probe (id int)`); err != nil {
			t.Errorf("%s cannot create tables: %v", db, err)
		}
		conn.Close(ctx)
	}
	// Redis demands its password.
	c, err := net.Dial("tcp", rd.addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "PING\r\n")
	buf := make([]byte, 64)
	n, _ := c.Read(buf)
	c.Close()
	if !strings.HasPrefix(string(buf[:n]), "-NOAUTH") {
		t.Errorf("redis answered PING without a password: %q", buf[:n])
	}

	pids := []int{pg.proc.cmd.Process.Pid, rd.proc.cmd.Process.Pid}
	for _, p := range l.procs {
		if err := p.stop(15 * time.Second); err != nil {
			t.Error(err)
		}
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("process %d still running after stop", pid)
		}
	}
}

// testLauncher is a launcher with a state directory Postgres can reach when
// it runs as the postgres user (t.TempDir()'s parent is private under root).
func testLauncher(t *testing.T) (*Launcher, string) {
	t.Helper()
	state, err := os.MkdirTemp("", "devlaunch-test-")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(state, 0o755)
	l := &Launcher{opt: Options{Log: io.Discard}, stateDir: state, secretsDir: filepath.Join(state, "secrets"), exits: make(chan error, 1)}
	if err := os.MkdirAll(l.secretsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		l.stopping.Store(true)
		for _, p := range l.procs {
			if err := p.stop(15 * time.Second); err != nil {
				t.Error(err)
			}
		}
		os.RemoveAll(state)
	})
	return l, state
}

// A first start with DEV_DATA stopped during initdb (Ctrl-C) used to leave a
// data directory with PG_VERSION but no password, which every later start
// then retried for a minute and never recovered from.
func TestPostgresInitCutShortStartsAgain(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Postgres")
	}
	l, state := testLauncher(t)
	dir := filepath.Join(state, "postgres")
	ctx, cancel := context.WithCancel(context.Background())
	go func() { // cancel as soon as initdb has begun writing
		for ctx.Err() == nil {
			if _, err := os.Stat(filepath.Join(dir, "data.partial", "PG_VERSION")); err == nil {
				cancel()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	if _, _, err := l.startPostgres(ctx, dir); err == nil {
		t.Fatal("startPostgres finished although it was cancelled during initdb")
	}
	cancel()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel2()
	_, dsns, err := l.startPostgres(ctx2, dir)
	if err != nil {
		t.Fatalf("start after an interrupted initdb: %v", err)
	}
	conn, err := pgx.Connect(ctx2, dsns["article"])
	if err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx2)
	if _, err := os.Stat(filepath.Join(dir, "data.partial")); !os.IsNotExist(err) {
		t.Errorf("data.partial left behind: %v", err)
	}
}

// A kept cluster whose superuser password no longer matches the kept secret
// fails at once, naming what to delete, instead of retrying for a minute.
func TestPostgresPasswordMismatchSaysWhatToDelete(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Postgres")
	}
	l, state := testLauncher(t)
	dir := filepath.Join(state, "postgres")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, _, err := l.startPostgres(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := pg.proc.stop(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.secretsDir, "postgres-superuser"), []byte("another-run\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = l.startPostgres(ctx, dir)
	if err == nil || !strings.Contains(err.Error(), "different runs") || !strings.Contains(err.Error(), "Delete "+dir) {
		t.Fatalf("want a password-mismatch error naming %s, got %v", dir, err)
	}
}

// Under root Postgres runs as the postgres user; a DEV_DATA below a private
// directory is refused up front with the directory to move out of.
func TestPostgresDataBelowAPrivateDirectory(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Postgres")
	}
	if os.Geteuid() != 0 {
		t.Skip("only root runs Postgres as another user")
	}
	l, state := testLauncher(t)
	private := filepath.Join(state, "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	_, _, err := l.startPostgres(context.Background(), filepath.Join(private, "data", "postgres"))
	if err == nil || !strings.Contains(err.Error(), private+" is closed to other users") {
		t.Fatalf("want an error naming %s, got %v", private, err)
	}
}

// A process that exits on its own after start-up is reported; one stopped
// by Stop is not.
func TestUnexpectedExitIsReported(t *testing.T) {
	l, _ := testLauncher(t)
	if _, err := l.spawn("crasher", "/bin/sh", []string{"-c", "exit 3"}, nil, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-l.exits:
		if !strings.Contains(err.Error(), "crasher exited unexpectedly (exit status 3)") {
			t.Fatalf("report: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no report of the exit")
	}
	l.stopping.Store(true)
	sleeper, err := l.spawn("sleeper", "/bin/sleep", []string{"60"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sleeper.stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-l.exits:
		t.Fatalf("a stopped process was reported: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
}

// A second launch on the same DEV_DATA is refused with the holder's pid; the
// lock goes with the first launch.
func TestKeptStateIsLockedWhileInUse(t *testing.T) {
	dir := t.TempDir()
	first, err := lockState(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = lockState(dir)
	want := fmt.Sprintf("%s is in use by another launch (pid %d)", dir, os.Getpid())
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("second lock: %v, want %q", err, want)
	}
	first.Close()
	again, err := lockState(dir)
	if err != nil {
		t.Fatalf("after the first launch ended: %v", err)
	}
	again.Close()
}

package testkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pressroom.dev/kit/pglocal"
)

// PG is a throw-away PostgreSQL server on 127.0.0.1 (trust auth, superuser "postgres").
type PG struct {
	Port int
	Dir  string // temp dir holding data/, the socket and postgres.log

	bin   string
	cred  *syscall.Credential
	mu    sync.Mutex
	cmd   *exec.Cmd
	exit  chan struct{}
	dbSeq atomic.Int64
}

var sharedPG shared[*PG]

// Postgres returns the DSN of a fresh, empty database on the binary's shared
// server, so tests and packages never see each other's tables.
func Postgres(t testing.TB) string {
	t.Helper()
	return PostgresServer(t).NewDatabase(t)
}

// PostgresServer returns the binary's shared server, starting it on first use.
func PostgresServer(t testing.TB) *PG {
	t.Helper()
	return sharedPG.get(t, func() (*PG, func(), error) {
		p, err := newPG()
		if err != nil {
			return nil, nil, err
		}
		return p, p.destroy, nil
	})
}

// StartPostgres starts a server of the test's own (for tests that stop and
// restart it); it is destroyed when the test ends.
func StartPostgres(t testing.TB) *PG {
	t.Helper()
	skipShort(t)
	p, err := newPG()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.destroy)
	return p
}

// DSN is the connection string for database db as the superuser.
func (p *PG) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
}

// NewDatabase creates an empty database, returns its DSN and drops it when the test ends.
func (p *PG) NewDatabase(t testing.TB) string {
	t.Helper()
	name := dbName(t, p.dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.exec(ctx, `CREATE DATABASE "`+name+`"`); err != nil {
		t.Fatalf("testkit: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// Best effort: the test may have stopped the server on purpose.
		_ = p.exec(ctx, `DROP DATABASE IF EXISTS "`+name+`" WITH (FORCE)`)
	})
	return p.DSN(name)
}

func (p *PG) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, p.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// pgTempBase is where the data dir goes: when PostgreSQL runs as another
// user, $TMPDIR may not be reachable for it (e.g. under /root), /tmp is.
func pgTempBase(cred *syscall.Credential) string {
	base := os.TempDir()
	if cred == nil {
		return base
	}
	for d := base; d != "/" && d != "."; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
	}
	return base
}

func newPG() (*PG, error) {
	bin, err := pglocal.BinDir()
	if err != nil {
		return nil, fmt.Errorf("testkit: %w", err)
	}
	cred, uid, gid, err := pglocal.ServerUser()
	if err != nil {
		return nil, fmt.Errorf("testkit: %w", err)
	}
	dir, err := os.MkdirTemp(pgTempBase(cred), "pressroom-pg-")
	if err != nil {
		return nil, fmt.Errorf("testkit: temp dir: %w", err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("testkit: chown %s: %w", dir, err)
	}
	p := &PG{Dir: dir, bin: bin, cred: cred}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", filepath.Join(dir, "data"),
		"-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("testkit: initdb: %w\n%s", err, out)
	}
	err = startOnFreePort(func(port int) error { p.Port = port; return p.Start() })
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return p, nil
}

// Start runs the server (again) on the same port with the same data.
func (p *PG) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return errors.New("testkit: postgres is already running")
	}
	logPath := filepath.Join(p.Dir, "postgres.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("testkit: postgres log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(p.bin, "postgres"),
		"-D", filepath.Join(p.Dir, "data"),
		"-p", strconv.Itoa(p.Port),
		"-k", p.Dir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "shared_buffers=32MB",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testkit: start postgres: %w", err)
	}
	exit := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exit) }()
	p.cmd, p.exit = cmd, exit

	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, p.DSN("postgres"))
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		select {
		case <-exit:
			p.cmd = nil
			return fmt.Errorf("testkit: postgres exited during start-up:\n%s", tail(logPath, 2000))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stopLocked()
			return fmt.Errorf("testkit: postgres not ready after 60s: %v\n%s", err, tail(logPath, 2000))
		}
	}
}

// Stop shuts the server down (fast shutdown: clients are disconnected), keeping its data.
func (p *PG) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopLocked()
}

func (p *PG) stopLocked() error {
	if p.cmd == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.exit:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exit
	}
	p.cmd = nil
	return nil
}

func (p *PG) destroy() {
	_ = p.Stop()
	_ = os.RemoveAll(p.Dir)
}

package testkit

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RedisServer is a throw-away redis-server on 127.0.0.1 requiring a password.
type RedisServer struct {
	Addr     string // host:port
	Password string
	Dir      string

	bin  string
	port int
	mu   sync.Mutex
	cmd  *exec.Cmd
	exit chan struct{}
}

var sharedRedis shared[*RedisServer]

// Redis returns the binary's shared Redis, starting it on first use.
func Redis(t testing.TB) *RedisServer {
	t.Helper()
	return sharedRedis.get(t, func() (*RedisServer, func(), error) {
		r, err := newRedis()
		if err != nil {
			return nil, nil, err
		}
		return r, r.destroy, nil
	})
}

// StartRedis starts a Redis of the test's own, destroyed when the test ends.
func StartRedis(t testing.TB) *RedisServer {
	t.Helper()
	skipShort(t)
	r, err := newRedis()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.destroy)
	return r
}

// URL is a redis:// URL with the password, database 0 (go-redis ParseURL reads it).
func (r *RedisServer) URL() string { return fmt.Sprintf("redis://:%s@%s/0", r.Password, r.Addr) }

func newRedis() (*RedisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("testkit: redis-server not found on PATH: install the Debian package redis-server (make deps)")
	}
	dir, err := os.MkdirTemp("", "pressroom-redis-")
	if err != nil {
		return nil, fmt.Errorf("testkit: temp dir: %w", err)
	}
	var pw [16]byte
	_, _ = rand.Read(pw[:])
	r := &RedisServer{Password: hex.EncodeToString(pw[:]), Dir: dir, bin: bin}
	err = startOnFreePort(func(port int) error {
		r.port, r.Addr = port, "127.0.0.1:"+strconv.Itoa(port)
		return r.Start()
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return r, nil
}

// Start runs redis-server (again) on the same port.
func (r *RedisServer) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return errors.New("testkit: redis is already running")
	}
	logPath := filepath.Join(r.Dir, "redis.log")
	cmd := exec.Command(r.bin,
		"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--requirepass", r.Password, "--dir", r.Dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--logfile", logPath,
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testkit: start redis-server: %w", err)
	}
	exit := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exit) }()
	r.cmd, r.exit = cmd, exit
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := r.ping()
		if err == nil {
			return nil
		}
		select {
		case <-exit:
			r.cmd = nil
			return fmt.Errorf("testkit: redis-server exited during start-up:\n%s", tail(logPath, 2000))
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.stopLocked()
			return fmt.Errorf("testkit: redis not ready after 30s: %v", err)
		}
	}
}

// ping authenticates and PINGs with raw RESP, so testkit needs no client library.
func (r *RedisServer) ping() error {
	c, err := net.DialTimeout("tcp", r.Addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintf(c, "AUTH %s\r\nPING\r\n", r.Password); err != nil {
		return err
	}
	br := bufio.NewReader(c)
	for _, want := range []string{"+OK\r\n", "+PONG\r\n"} {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if line != want {
			return fmt.Errorf("redis answered %q, want %q", line, want)
		}
	}
	return nil
}

// Stop shuts redis-server down.
func (r *RedisServer) Stop() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopLocked()
}

func (r *RedisServer) stopLocked() error {
	if r.cmd == nil {
		return nil
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exit:
	case <-time.After(15 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exit
	}
	r.cmd = nil
	return nil
}

func (r *RedisServer) destroy() {
	_ = r.Stop()
	_ = os.RemoveAll(r.Dir)
}

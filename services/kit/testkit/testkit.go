// Package testkit starts the real datastores the services' tests run against —
// PostgreSQL, Redis and NATS JetStream — on loopback, once per test binary, and
// stops them when the binary ends. Every package using it needs:
//
//	func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }
//
// Processes are killed by the PIDs testkit started, never by name. They are
// also started with a parent-death signal, so a crashed test binary does not
// leave them running.
package testkit

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

var (
	mainCalled atomic.Bool
	mu         sync.Mutex
	stoppers   []func()
)

// Main runs the tests, then stops every shared server this binary started.
func Main(m *testing.M) int {
	mainCalled.Store(true)
	defer stopAll()
	return m.Run()
}

func stopAll() {
	mu.Lock()
	s := stoppers
	stoppers = nil
	mu.Unlock()
	for i := len(s) - 1; i >= 0; i-- {
		s[i]()
	}
}

func atExit(f func()) {
	mu.Lock()
	defer mu.Unlock()
	stoppers = append(stoppers, f)
}

func requireMain(t testing.TB) {
	t.Helper()
	if !mainCalled.Load() {
		t.Fatal("testkit: shared servers need TestMain in this package: " +
			"func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }")
	}
}

// freePort asks the kernel for a free loopback TCP port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("testkit: find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startOnFreePort runs start on a fresh free port, retrying a few times:
// another test binary may grab the port between our check and the bind.
func startOnFreePort(start func(port int) error) error {
	var err error
	for range 3 {
		var port int
		if port, err = freePort(); err != nil {
			return err
		}
		if err = start(port); err == nil {
			return nil
		}
	}
	return err
}

// shared starts a server once per binary; a failed start is remembered so
// every test reports the same cause instead of retrying.
type shared[T any] struct {
	once sync.Once
	val  T
	err  error
}

func (s *shared[T]) get(t testing.TB, start func() (T, func(), error)) T {
	t.Helper()
	skipShort(t)
	requireMain(t)
	s.once.Do(func() {
		var stop func()
		s.val, stop, s.err = start()
		if s.err == nil {
			atExit(stop)
		}
	})
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.val
}

var unsafeName = regexp.MustCompile(`[^a-z0-9_]+`)

// dbName derives a valid, unique database name from the test's name.
func dbName(t testing.TB, seq int64) string {
	n := unsafeName.ReplaceAllString(strings.ToLower(t.Name()), "_")
	if len(n) > 40 {
		n = n[:40]
	}
	return fmt.Sprintf("t%d_%s", seq, strings.Trim(n, "_"))
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// skipShort keeps `go test -short` (make check) to tests that start nothing:
// every real datastore comes through this package.
func skipShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a real datastore; -short runs only tests that need none")
	}
}

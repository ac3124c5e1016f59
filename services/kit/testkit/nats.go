package testkit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSServer is an embedded NATS server with JetStream on 127.0.0.1.
type NATSServer struct {
	URL string // nats://127.0.0.1:port
	Dir string // JetStream store

	port int
	mu   sync.Mutex
	srv  *server.Server
}

var sharedNATS shared[*NATSServer]

// NATS returns the binary's shared server, starting it on first use.
func NATS(t testing.TB) *NATSServer {
	t.Helper()
	return sharedNATS.get(t, func() (*NATSServer, func(), error) {
		n, err := newNATS()
		if err != nil {
			return nil, nil, err
		}
		return n, n.destroy, nil
	})
}

// StartNATS starts a server of the test's own (for stop/restart tests),
// destroyed when the test ends.
func StartNATS(t testing.TB) *NATSServer {
	t.Helper()
	skipShort(t)
	n, err := newNATS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.destroy)
	return n
}

func newNATS() (*NATSServer, error) {
	dir, err := os.MkdirTemp("", "pressroom-nats-")
	if err != nil {
		return nil, fmt.Errorf("testkit: temp dir: %w", err)
	}
	n := &NATSServer{Dir: dir}
	err = startOnFreePort(func(port int) error {
		n.port, n.URL = port, fmt.Sprintf("nats://127.0.0.1:%d", port)
		return n.Start()
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return n, nil
}

// Start runs the server (again) on the same port with the same JetStream store.
func (n *NATSServer) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		return errors.New("testkit: nats is already running")
	}
	s, err := server.NewServer(&server.Options{
		ServerName: "testkit",
		Host:       "127.0.0.1",
		Port:       n.port,
		JetStream:  true,
		StoreDir:   filepath.Join(n.Dir, "js"),
		NoLog:      true,
		NoSigs:     true, // the test binary's signals are not the server's
	})
	if err != nil {
		return fmt.Errorf("testkit: nats server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return errors.New("testkit: nats server not ready after 30s")
	}
	n.srv = s
	return nil
}

// Stop shuts the server down, keeping its JetStream store for Start.
func (n *NATSServer) Stop() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv == nil {
		return nil
	}
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	n.srv = nil
	return nil
}

// Server is the running embedded server (nil when stopped).
func (n *NATSServer) Server() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

func (n *NATSServer) destroy() {
	_ = n.Stop()
	_ = os.RemoveAll(n.Dir)
}

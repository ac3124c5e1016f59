package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"pressroom.dev/tools/devlaunch"
)

// The benchmark's servers run in processes of their own, as in `make dev`
// (the edge lives in the launcher, web in its own process) and as a bare
// hello-world program runs: a server inside the load generator's process
// shares its Go runtime and scheduler, which no real deployment does. This
// test binary re-executes itself in one of these roles.
const (
	roleEnv      = "PRESSROOM_E2E_SERVER" // "hello" or "edge"
	edgeWebEnv   = "PRESSROOM_E2E_EDGE_WEB"
	edgeMediaEnv = "PRESSROOM_E2E_EDGE_MEDIA"
)

func TestMain(m *testing.M) {
	role := os.Getenv(roleEnv)
	if role == "" {
		os.Exit(m.Run())
	}
	if err := serveRole(role); err != nil {
		fmt.Fprintf(os.Stderr, "e2e %s server: %v\n", role, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// helloWorld is the bare server the site is compared with.
var helloWorld = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	_, _ = io.WriteString(w, "hello")
})

// serveRole listens on a free loopback port, prints the address as its first
// line of output and serves until its standard input closes (the parent
// stopped it or died).
func serveRole(role string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var serve func() error
	var shutdown func(context.Context) error
	switch role {
	case "hello":
		srv := &http.Server{Handler: helloWorld}
		serve, shutdown = func() error { return srv.Serve(ln) }, srv.Shutdown
	case "edge":
		edge, err := devlaunch.NewEdge(os.Getenv(edgeWebEnv), os.Getenv(edgeMediaEnv))
		if err != nil {
			return err
		}
		serve, shutdown = func() error { return edge.Serve(ln) }, edge.Shutdown
	default:
		return fmt.Errorf("unknown role %q (%s must be hello or edge)", role, roleEnv)
	}
	served := make(chan error, 1)
	go func() { served <- serve() }()
	fmt.Println(ln.Addr().String())
	stdinClosed := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(stdinClosed) }()
	select {
	case err := <-served:
		return err
	case <-stdinClosed:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return shutdown(ctx)
}

// startServer runs this binary in role with env added and returns the
// address it listens on; the process is stopped when the test ends.
func startServer(tb testing.TB, role string, env ...string) string {
	tb.Helper()
	self, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), append([]string{roleEnv + "=" + role}, env...)...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start the %s server: %v", role, err)
	}
	var exitErr error
	exited := make(chan struct{}) // closed once the process is gone; exitErr is set then
	go func() { exitErr = cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		stdin.Close()
		select {
		case <-exited:
			if exitErr != nil {
				tb.Errorf("%s server (pid %d): %v", role, cmd.Process.Pid, exitErr)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			tb.Errorf("%s server (pid %d) did not stop within 10 s of its input closing: killed", role, cmd.Process.Pid)
		}
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(s)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case addr := <-line:
		if addr == "" { // output closed: the process is exiting
			<-exited
			tb.Fatalf("%s server exited before listening (%v); its errors are above", role, exitErr)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			tb.Fatalf("%s server printed %q, not its address", role, addr)
		}
		return addr
	case <-exited:
		tb.Fatalf("%s server exited before listening (%v); its errors are above", role, exitErr)
	case <-time.After(30 * time.Second):
		tb.Fatalf("%s server printed no address within 30 s", role)
	}
	return ""
}

// TestServerRoles: the benchmark's servers answer as they should and stop
// when their input closes.
func TestServerRoles(t *testing.T) {
	hello := startServer(t, "hello")
	if got := body(t, "http://"+hello+"/"); got != "hello" {
		t.Fatalf("hello server answered %q", got)
	}
	// An edge in front of the hello server: it forwards to web's address,
	// and refuses the internal paths as make dev's edge does.
	edge := startServer(t, "edge", edgeWebEnv+"=http://"+hello, edgeMediaEnv+"=http://"+hello)
	if got := body(t, "http://"+edge+"/articles/x"); got != "hello" {
		t.Fatalf("edge forwarded %q, want the upstream's hello", got)
	}
	resp, err := http.Get("http://" + edge + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("edge answered /metrics with %d, want 403", resp.StatusCode)
	}
}

// body GETs url on a connection of its own and returns what came back.
func body(tb testing.TB, url string) string {
	tb.Helper()
	c := newClient(1)
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

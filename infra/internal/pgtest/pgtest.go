// Package pgtest starts a throw-away PostgreSQL server on 127.0.0.1 for the
// infra tests that run the platform's real shell scripts (postgres-init,
// backup, restore) against a real server. The server is stopped, by its own
// pg_ctl and data directory, when the test ends.
package pgtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"pressroom.dev/kit/pglocal"
)

// Server is a running PostgreSQL.
type Server struct {
	Port     int
	Password string // of the postgres superuser
	Dir      string
	bin      string
}

func binDir(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a real PostgreSQL; -short runs only tests that need none")
	}
	d, err := pglocal.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// BinDir is the directory of the PostgreSQL binaries (initdb, postgres,
// pg_ctl, psql, pg_isready), as pglocal finds it for every test.
func BinDir(t *testing.T) string { return binDir(t) }

// ServerUser is who runs server processes: the current user, or, when the
// tests run as root, the postgres system user (PostgreSQL refuses root).
// cred is nil when no switch is needed.
func ServerUser(t *testing.T) (uid, gid int, cred *syscall.Credential) {
	t.Helper()
	cred, uid, gid, err := pglocal.ServerUser()
	if err != nil {
		t.Fatal(err)
	}
	return uid, gid, cred
}

// Dir is a new directory owned by ServerUser, removed when the test ends.
func Dir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pressroom-pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	uid, gid, _ := ServerUser(t)
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	return dir
}

// AsServerUser makes cmd run as ServerUser.
func AsServerUser(t *testing.T, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	if _, _, cred := ServerUser(t); cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	return cmd
}

// asPostgres runs a server binary; as root it runs as the postgres user,
// because PostgreSQL refuses to run as root.
func asPostgres(bin string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", bin}, args...)...)
	}
	return exec.Command(bin, args...)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start initialises and starts a server; it is stopped at t.Cleanup.
func Start(t *testing.T) *Server {
	t.Helper()
	bin := binDir(t)
	dir, err := os.MkdirTemp("", "pressroom-pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal("running as root needs the postgres system user (Debian package postgresql)")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	s := &Server{Port: freePort(t), Password: "pgtest-superuser", Dir: dir, bin: bin}
	pwfile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwfile, []byte(s.Password+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if out, err := asPostgres(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--pwfile", pwfile, "-A", "scram-sha-256", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories=%s -c fsync=off", s.Port, dir)
	if out, err := asPostgres(filepath.Join(bin, "pg_ctl"), "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	t.Cleanup(func() {
		_ = asPostgres(filepath.Join(bin, "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop").Run()
	})
	return s
}

// Env is the libpq environment that reaches the server as user (with pw).
func (s *Server) Env(user, pw string) []string {
	return []string{
		"PGHOST=127.0.0.1", "PGPORT=" + strconv.Itoa(s.Port), "PGUSER=" + user, "PGPASSWORD=" + pw,
		"PATH=" + s.bin + ":" + os.Getenv("PATH"),
	}
}

// Psql runs one SQL command as user on db and returns its unaligned output.
func (s *Server) Psql(user, pw, db, sql string) (string, error) {
	cmd := exec.Command(filepath.Join(s.bin, "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql)
	cmd.Env = s.Env(user, pw)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// Script runs a shell script with extra environment.
func (s *Server) Script(t *testing.T, script string, env []string, args ...string) (string, error) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "script.sh")
	if err := os.WriteFile(f, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", append([]string{f}, args...)...)
	cmd.Env = append(s.Env("postgres", s.Password), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

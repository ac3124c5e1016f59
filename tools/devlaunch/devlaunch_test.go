package devlaunch

import (
	"context"
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

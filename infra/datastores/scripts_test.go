package datastores

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"pressroom.dev/infra/internal/pgtest"
	"pressroom.dev/infra/secrets"
	"pressroom.dev/stacks"
)

// setup.sh of the postgres-init ConfigMap, run for real against a running
// server: every service gets its own role and database, passwords come from
// the environment, a role cannot open another service's database, and a
// second run changes nothing.
func TestPostgresSetupScriptCreatesIsolatedDatabases(t *testing.T) {
	pg := pgtest.Start(t)
	env := []string{"POSTGRES_USER=postgres", "POSTGRES_PASSWORD=" + pg.Password}
	pw := map[string]string{}
	for _, svc := range stacks.Databases {
		pw[svc] = "pw-" + svc + "-0123456789"
		env = append(env, strings.ToUpper(svc)+"_DB_PASSWORD="+pw[svc])
	}
	for run := 1; run <= 2; run++ {
		if out, err := pg.Script(t, SetupScript(), env); err != nil {
			t.Fatalf("setup script run %d: %v\n%s", run, err, out)
		}
	}
	for _, svc := range stacks.Databases {
		db := secrets.DatabaseName(svc)
		owner, err := pg.Psql(svc, pw[svc], db, "SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()")
		if err != nil || owner != svc {
			t.Errorf("%s connecting to %s: owner %q, err %v", svc, db, owner, err)
		}
		if _, err := pg.Psql(svc, pw[svc], db, "CREATE TABLE t (id int); DROP TABLE t"); err != nil {
			t.Errorf("%s cannot create tables in its database: %v", svc, err)
		}
		if _, err := pg.Psql(svc, "wrong", db, "SELECT 1"); err == nil {
			t.Errorf("%s logged in with a wrong password", svc)
		}
		for _, other := range stacks.Databases {
			if other == svc {
				continue
			}
			if _, err := pg.Psql(svc, pw[svc], secrets.DatabaseName(other), "SELECT 1"); err == nil {
				t.Errorf("role %s can open %s", svc, secrets.DatabaseName(other))
			}
		}
	}
	if out, err := pg.Script(t, SetupScript(), []string{"POSTGRES_USER=postgres", "POSTGRES_PASSWORD=" + pg.Password}); err == nil || !strings.Contains(out, "AUTH_DB_PASSWORD is not set") {
		t.Errorf("missing password: err %v, output %q; want a message naming the variable", err, out)
	}
	if out, err := pg.Script(t, SetupScript(), env[:1]); err == nil || !strings.Contains(out, "POSTGRES_PASSWORD is not set") {
		t.Errorf("missing superuser password: err %v, output %q; want a message naming the variable", err, out)
	}
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startRig runs start.sh as the container does (sh start.sh, setup.sh beside
// it, PGDATA inside a data volume, the server's user), with PostgreSQL's
// binaries on PATH behind two shims that record what the script does:
// initdb notes its arguments and the mode of the password file; psql asks
// the server it is about to talk to for listen_addresses first.
type startRig struct {
	t                        *testing.T
	bin, dir, scripts, shims string
	pgdata, tmp, run, log    string
	port                     int
}

const initdbShim = `#!/bin/sh
for a in "$@"; do
  case "$a" in --pwfile=*) f="${a#--pwfile=}"; stat -c '%a' "$f" >>"$SHIM_LOG/pwfile-mode" ;; esac
done
echo "$*" >>"$SHIM_LOG/initdb"
exec "$REAL_BIN/initdb" "$@"
`

const psqlShim = `#!/bin/sh
# The server setup.sh talks to: where, and on which TCP addresses it listens.
echo "$PGHOST $("$REAL_BIN/psql" -X -w -At -U "${POSTGRES_USER:-postgres}" -c 'SHOW listen_addresses')" >>"$SHIM_LOG/setup-server"
exec "$REAL_BIN/psql" "$@"
`

func newStartRig(t *testing.T) *startRig {
	t.Helper()
	r := &startRig{t: t, bin: pgtest.BinDir(t), dir: pgtest.Dir(t)}
	r.scripts, r.shims = filepath.Join(r.dir, "scripts"), filepath.Join(r.dir, "shims")
	r.tmp, r.run, r.log = filepath.Join(r.dir, "tmp"), filepath.Join(r.dir, "run"), filepath.Join(r.dir, "log")
	volume := filepath.Join(r.dir, "data") // the data volume; PGDATA is a directory in it, as in the pod
	r.pgdata = filepath.Join(volume, "pgdata")
	uid, gid, _ := pgtest.ServerUser(t)
	for _, d := range []string{r.scripts, r.shims, r.tmp, r.run, r.log, volume} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	for path, body := range map[string]string{
		filepath.Join(r.scripts, "start.sh"): StartScript(), filepath.Join(r.scripts, "setup.sh"): SetupScript(),
		filepath.Join(r.shims, "initdb"): initdbShim, filepath.Join(r.shims, "psql"): psqlShim,
	} {
		// read-only and root-owned, like the ConfigMap volume (mode 0555)
		if err := os.WriteFile(path, []byte(body), 0o555); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	return r
}

// env is the container's environment for these passwords.
func (r *startRig) env(superuser string, pw map[string]string) []string {
	env := []string{
		"PATH=" + r.shims + ":" + r.bin + ":/usr/bin:/bin", "PGDATA=" + r.pgdata, "TMPDIR=" + r.tmp, "LANG=C.UTF-8",
		"REAL_BIN=" + r.bin, "SHIM_LOG=" + r.log, "POSTGRES_USER=postgres",
	}
	if superuser != "" {
		env = append(env, "POSTGRES_PASSWORD="+superuser)
	}
	for svc, p := range pw {
		env = append(env, strings.ToUpper(svc)+"_DB_PASSWORD="+p)
	}
	return env
}

func (r *startRig) command(env []string) (*exec.Cmd, *lockedBuffer) {
	// What the final postgres gets on top of the script's own options: a
	// free loopback port instead of all addresses on 5432, sockets here.
	cmd := exec.Command("/bin/sh", filepath.Join(r.scripts, "start.sh"),
		"-c", "listen_addresses=127.0.0.1", "-c", "port="+strconv.Itoa(r.port), "-c", "unix_socket_directories="+r.run, "-c", "fsync=off")
	cmd.Env = env
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	return pgtest.AsServerUser(r.t, cmd), out
}

// start runs start.sh until the final server answers on TCP, and returns a
// function that stops it (SIGINT: fast shutdown, as the image's stop signal).
func (r *startRig) start(superuser string, pw map[string]string) (stop func(), took time.Duration) {
	t := r.t
	t.Helper()
	cmd, out := r.command(r.env(superuser, pw))
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case <-exited:
			case <-time.After(60 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
				t.Errorf("postgres did not stop on SIGINT within 60 s\n%s", out)
			}
		})
	}
	t.Cleanup(stop) // also when the test fails while it runs
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ready := exec.Command(filepath.Join(r.bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(r.port))
		if ready.Run() == nil {
			return stop, time.Since(begin)
		}
		select {
		case err := <-exited:
			once.Do(func() {})
			t.Fatalf("start.sh exited before postgres served: %v\n%s", err, out)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("postgres did not accept TCP connections within 2 minutes\n%s", out)
		}
	}
}

// psql runs sql over TCP with a password, as a service connects.
func (r *startRig) psql(user, pw, db, sql string) (string, error) {
	cmd := exec.Command(filepath.Join(r.bin, "psql"), "-X", "-w", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql)
	cmd.Env = []string{"PGHOST=127.0.0.1", "PGPORT=" + strconv.Itoa(r.port), "PGUSER=" + user, "PGPASSWORD=" + pw, "PGCONNECT_TIMEOUT=5"}
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (r *startRig) logLines(name string) []string {
	b, err := os.ReadFile(filepath.Join(r.log, name))
	if err != nil && !os.IsNotExist(err) {
		r.t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func passwords(generation string) map[string]string {
	pw := map[string]string{}
	for _, svc := range stacks.Databases {
		pw[svc] = fmt.Sprintf("%s-%s-Zq8xV2", svc, generation)
	}
	return pw
}

// start.sh, the postgres container's command, run for real with
// PostgreSQL's own binaries: the first start initialises the data directory
// and creates every role and database with the Secret's passwords; a second
// start with every password changed makes the new ones work and the old
// ones fail, before any client can connect. The setup server listens on no
// TCP address.
func TestPostgresStartScriptKeepsPasswordsInStepWithTheSecret(t *testing.T) {
	r := newStartRig(t)
	first, second := passwords("one"), passwords("two")

	stop, took := r.start("super-one-4k2", first)
	t.Logf("first start (initdb, setup, postgres): %s", took.Round(time.Millisecond))
	if got := r.logLines("initdb"); len(got) != 1 || !strings.Contains(got[0], "--encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256") {
		t.Errorf("initdb ran with %q; want once, UTF8, C.UTF-8, trust on the socket, SCRAM over TCP", got)
	}
	if got := r.logLines("pwfile-mode"); len(got) != 1 || got[0] != "600" {
		t.Errorf("the superuser password file had mode %q, want 600", got)
	}
	if left, _ := os.ReadDir(r.tmp); len(left) != 0 {
		t.Errorf("start.sh left %d files in TMPDIR (the password file, the setup socket directory): %v", len(left), left)
	}
	hba, err := os.ReadFile(filepath.Join(r.pgdata, "pg_hba.conf"))
	if err != nil || !strings.Contains(string(hba), "\nhost all all all scram-sha-256\n") {
		t.Errorf("pg_hba.conf lacks `host all all all scram-sha-256` (err %v)", err)
	}
	check := func(pw map[string]string, superuser string) {
		t.Helper()
		for _, svc := range stacks.Databases {
			db := secrets.DatabaseName(svc)
			owner, err := r.psql(svc, pw[svc], db, "SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()")
			if err != nil || owner != svc {
				t.Errorf("%s with its password on %s: owner %q, err %v", svc, db, owner, err)
			}
			for _, other := range stacks.Databases {
				if other != svc {
					if _, err := r.psql(svc, pw[svc], secrets.DatabaseName(other), "SELECT 1"); err == nil {
						t.Errorf("role %s can open %s", svc, secrets.DatabaseName(other))
					}
				}
			}
		}
		if _, err := r.psql("postgres", superuser, "postgres", "SELECT 1"); err != nil {
			t.Errorf("superuser with POSTGRES_PASSWORD over TCP: %v", err)
		}
		if _, err := r.psql("postgres", "", "postgres", "SELECT 1"); err == nil {
			t.Errorf("superuser logged in over TCP without a password")
		}
	}
	check(first, "super-one-4k2")
	if _, err := r.psql("article", first["article"], "article_db", "CREATE TABLE kept (id int); INSERT INTO kept VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	settings, err := r.psql("postgres", "super-one-4k2", "postgres", "SELECT current_setting('server_encoding') || ' ' || datcollate || ' ' || datctype || ' ' || current_setting('listen_addresses') FROM pg_database WHERE datname = 'article_db'")
	if err != nil || settings != "UTF8 C.UTF-8 C.UTF-8 127.0.0.1" {
		t.Errorf("encoding, collation, ctype and listen_addresses: %q (%v); want UTF8 C.UTF-8 C.UTF-8 and the test's address", settings, err)
	}
	stop()

	// Every password changed in the Secret: the pod restarts with the new env.
	_, took = r.start("super-two-9p1", second)
	t.Logf("second start (setup, postgres): %s", took.Round(time.Millisecond))
	if got := r.logLines("initdb"); len(got) != 1 {
		t.Errorf("initdb ran %d times; an initialised data directory must be kept", len(got))
	}
	check(second, "super-two-9p1")
	for _, svc := range stacks.Databases {
		if _, err := r.psql(svc, first[svc], secrets.DatabaseName(svc), "SELECT 1"); err == nil {
			t.Errorf("%s still logs in with its old password", svc)
		}
	}
	if _, err := r.psql("postgres", "super-one-4k2", "postgres", "SELECT 1"); err == nil {
		t.Errorf("the superuser still logs in with the old POSTGRES_PASSWORD")
	}
	if got, err := r.psql("article", second["article"], "article_db", "SELECT id FROM kept"); err != nil || got != "7" {
		t.Errorf("data from the first start: %q, %v", got, err)
	}
	// Each setup ran on a server with no TCP address, on a socket under TMPDIR.
	setups := r.logLines("setup-server")
	if len(setups) != 2*(1+len(stacks.Databases)) {
		t.Errorf("setup.sh ran psql %d times over two starts, want %d: %q", len(setups), 2*(1+len(stacks.Databases)), setups)
	}
	for _, s := range setups {
		host, listen, _ := strings.Cut(s, " ")
		if !strings.HasPrefix(host, r.tmp+"/pressroom-pg.") || listen != "" {
			t.Errorf("setup talked to a server on socket %q listening on TCP %q; want a private socket under TMPDIR and no TCP address", host, listen)
		}
	}
}

// A missing password stops the first start before anything is written.
func TestPostgresStartScriptRefusesAMissingPassword(t *testing.T) {
	r := newStartRig(t)
	pw := passwords("one")
	delete(pw, "media")
	cmd, out := r.command(r.env("super", pw))
	if err := cmd.Run(); err == nil || !strings.Contains(out.String(), "MEDIA_DB_PASSWORD is not set") {
		t.Errorf("err %v, output %q; want a failure naming MEDIA_DB_PASSWORD", err, out)
	}
	cmd, out = r.command(r.env("", passwords("one")))
	if err := cmd.Run(); err == nil || !strings.Contains(out.String(), "POSTGRES_PASSWORD is not set") {
		t.Errorf("err %v, output %q; want a failure naming POSTGRES_PASSWORD", err, out)
	}
	if _, err := os.Stat(r.pgdata); !os.IsNotExist(err) {
		t.Errorf("PGDATA was created before the passwords were checked (%v)", err)
	}
}

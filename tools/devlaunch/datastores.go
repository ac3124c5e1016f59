package devlaunch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	natsserver "github.com/nats-io/nats-server/v2/server"

	"pressroom.dev/kit/pglocal"
)

// Databases are the four service databases; each gets a role of the same
// name (without _db) that owns it, like the cluster's postgres-init ConfigMap.
var Databases = []string{"auth", "article", "media", "notification"}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func secret() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// readSecret keeps generated passwords stable across runs with DEV_DATA.
func readSecret(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	s := secret()
	return s, os.WriteFile(path, []byte(s+"\n"), 0o600)
}

// pgBin is one of PostgreSQL's programs, found as the tests find them.
func pgBin(name string) (string, error) {
	dir, err := pglocal.BinDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, name), nil
}

type postgres struct {
	proc     *proc
	port     int
	password string // superuser
	dir      string
}

func (p *postgres) dsn(user, password, db string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", user, password, p.port, db)
}

// startPostgres initialises (first run only) and starts a cluster in dir, then
// makes sure every service database and role exists.
func (l *Launcher) startPostgres(ctx context.Context, dir string) (*postgres, map[string]string, error) {
	cred, uid, gid, err := pglocal.ServerUser()
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	pw, err := readSecret(filepath.Join(l.secretsDir, "postgres-superuser"))
	if err != nil {
		return nil, nil, err
	}
	data := filepath.Join(dir, "data")
	if cred != nil {
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, nil, err
		}
	}
	if cred != nil {
		if err := reachableBy(cred, dir); err != nil {
			return nil, nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
		if err := initPostgres(ctx, dir, data, pw, cred, uid, gid); err != nil {
			return nil, nil, err
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	bin, err := pgBin("postgres")
	if err != nil {
		return nil, nil, err
	}
	pg := &postgres{port: port, password: pw, dir: dir}
	pg.proc, err = l.spawn("postgres", bin, []string{"-D", data, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=", "-c", "fsync=off",
		"-c", "max_connections=200", "-c", "shared_buffers=64MB"}, nil, cred)
	if err != nil {
		return nil, nil, err
	}
	pg.proc.sig = syscall.SIGINT // "fast" shutdown: don't wait for idle clients
	// Wait until it accepts connections.
	deadline := time.Now().Add(60 * time.Second)
	var conn *pgx.Conn
	for {
		c, err := pgx.Connect(ctx, pg.dsn("postgres", pw, "postgres"))
		if err == nil {
			conn = c
			break
		}
		if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "28P01" {
			// Retrying cannot help: the cluster was made with another password.
			return pg, nil, fmt.Errorf("postgres in %s refused the superuser password in %s: they come from different runs. "+
				"Delete %s (its databases) to start over: %w", data, filepath.Join(l.secretsDir, "postgres-superuser"), dir, err)
		}
		if pg.proc.exited() || time.Now().After(deadline) {
			return pg, nil, fmt.Errorf("postgres did not start on 127.0.0.1:%d: %w", port, err)
		}
		time.Sleep(150 * time.Millisecond)
	}
	defer conn.Close(ctx)
	dsns := map[string]string{}
	for _, name := range Databases {
		rolePW, err := readSecret(filepath.Join(l.secretsDir, "postgres-"+name))
		if err != nil {
			return pg, nil, err
		}
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name).Scan(&exists); err != nil {
			return pg, nil, err
		}
		if !exists {
			if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", pgx.Identifier{name}.Sanitize(), rolePW)); err != nil {
				return pg, nil, fmt.Errorf("create role %s: %w", name, err)
			}
		}
		db := name + "_db"
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", db).Scan(&exists); err != nil {
			return pg, nil, err
		}
		if !exists {
			if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s OWNER %s", pgx.Identifier{db}.Sanitize(), pgx.Identifier{name}.Sanitize())); err != nil {
				return pg, nil, fmt.Errorf("create database %s: %w", db, err)
			}
		}
		dsns[name] = pg.dsn(name, rolePW, db)
	}
	return pg, dsns, nil
}

// initPostgres creates the cluster in data.partial and renames it to data
// once initdb has finished: an initdb cut short (Ctrl-C) leaves only the
// partial directory, which the next start removes, never a data directory
// that looks initialised but has no password set.
func initPostgres(ctx context.Context, dir, data, pw string, cred *syscall.Credential, uid, gid int) error {
	initdb, err := pgBin("initdb")
	if err != nil {
		return err
	}
	partial := data + ".partial"
	if err := os.RemoveAll(partial); err != nil {
		return err
	}
	pwfile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(pw+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(pwfile)
	if cred != nil {
		if err := os.Chown(pwfile, uid, gid); err != nil {
			return err
		}
	}
	cmd := exec.CommandContext(ctx, initdb, "-D", partial, "-U", "postgres", "--pwfile", pwfile,
		"--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	return os.Rename(partial, data)
}

// reachableBy checks, as the user Postgres will run as, that it can enter
// dir: under root, a DEV_DATA below a private directory (such as /root,
// mode 0700) otherwise fails inside initdb with a bare "Permission denied".
func reachableBy(cred *syscall.Credential, dir string) error {
	test, err := exec.LookPath("test")
	if err != nil {
		return nil // no way to ask; initdb will report it
	}
	cmd := exec.Command(test, "-x", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if cmd.Run() == nil {
		return nil
	}
	closed := dir
	for d := filepath.Dir(dir); d != filepath.Dir(d); d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
			closed = d
		}
	}
	return fmt.Errorf("postgres runs as the postgres user (the launcher runs as root) and cannot enter %s: "+
		"%s is closed to other users. Keep DEV_DATA outside it, e.g. DEV_DATA=/var/tmp/pressroom-dev", dir, closed)
}

type redis struct {
	proc     *proc
	addr     string
	password string
}

func (l *Launcher) startRedis(ctx context.Context, dir string, persist bool) (*redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server not found: run `make deps` (Debian package redis-server)")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	pw, err := readSecret(filepath.Join(l.secretsDir, "redis"))
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	save := ""
	if persist {
		save = "60 1"
	}
	r := &redis{addr: fmt.Sprintf("127.0.0.1:%d", port), password: pw}
	r.proc, err = l.spawn("redis", bin, []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--dir", dir, "--save", save, "--appendonly", "no", "--requirepass", pw, "--protected-mode", "yes"}, nil, nil)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return r, nil
		}
		if r.proc.exited() || time.Now().After(deadline) {
			return r, fmt.Errorf("redis did not start on %s: %w", r.addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startNATS embeds a JetStream server (the same library the tests use).
func startNATS(dir string) (*natsserver.Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	ns, err := natsserver.NewServer(&natsserver.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true,
		ServerName: "pressroom-dev",
	})
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(15 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("nats: not ready after 15s")
	}
	return ns, nil
}

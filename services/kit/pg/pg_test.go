package pg

import (
	"context"
	"embed"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"pressroom.dev/kit/server"
	"pressroom.dev/kit/testkit"
)

//go:embed testdata/migrations/*.sql
var testdata embed.FS

func migrations(t *testing.T) fs.FS {
	t.Helper()
	sub, err := fs.Sub(testdata, "testdata")
	if err != nil {
		t.Fatal(err)
	}
	return sub // holds migrations/*.sql, like a service's embed.FS
}

func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }

func open(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	p, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func tableExists(t *testing.T, pool *pgxpool.Pool, name string) bool {
	t.Helper()
	var ok bool
	if err := pool.QueryRow(context.Background(), "SELECT to_regclass($1) IS NOT NULL", name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestConcurrentMigrateAppliesOnce(t *testing.T) {
	ctx := context.Background()
	dsn := testkit.Postgres(t)
	fsys := migrations(t)
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for range 5 {
		pool := open(t, dsn) // one pool per "replica"
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- Migrate(ctx, pool, fsys)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Migrate: %v", err)
		}
	}
	pool := open(t, dsn)
	var runs int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM runs").Scan(&runs); err != nil {
		t.Fatal(err)
	}
	if runs != 1 {
		t.Errorf("migration 2 ran %d times, want 1", runs)
	}
	var applied int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM goose_db_version WHERE version_id > 0").Scan(&applied); err != nil {
		t.Fatal(err)
	}
	if applied != 2 {
		t.Errorf("%d migrations recorded, want 2", applied)
	}
	if v, err := MigrationVersion(ctx, pool, fsys); err != nil || v != 2 {
		t.Errorf("version = %d, %v", v, err)
	}
	// Migrating an up-to-date database is a no-op.
	if err := Migrate(ctx, pool, fsys); err != nil {
		t.Fatal(err)
	}
}

func TestMigrateDown(t *testing.T) {
	ctx := context.Background()
	pool := open(t, testkit.Postgres(t))
	fsys := migrations(t)
	if err := Migrate(ctx, pool, fsys); err != nil {
		t.Fatal(err)
	}
	if err := MigrateDown(ctx, pool, fsys); err != nil {
		t.Fatal(err)
	}
	if tableExists(t, pool, "items") || !tableExists(t, pool, "runs") {
		t.Error("down should drop items only")
	}
	if v, _ := MigrationVersion(ctx, pool, fsys); v != 1 {
		t.Errorf("version after down = %d, want 1", v)
	}
	if err := MigrateDownTo(ctx, pool, fsys, 0); err != nil {
		t.Fatal(err)
	}
	if tableExists(t, pool, "runs") {
		t.Error("down to 0 should drop everything")
	}
	// Files at the FS root work too.
	root, _ := fs.Sub(testdata, "testdata/migrations")
	if err := Migrate(ctx, pool, root); err != nil {
		t.Fatal(err)
	}
	if !tableExists(t, pool, "items") {
		t.Error("re-applying after a full down failed")
	}
}

func TestMigrateAndOpenErrors(t *testing.T) {
	ctx := context.Background()
	pool := open(t, testkit.Postgres(t))
	err := Migrate(ctx, pool, fstest.MapFS{"readme.txt": {Data: []byte("x")}})
	if err == nil || !strings.Contains(err.Error(), "no .sql migrations found") {
		t.Errorf("empty fs: %v", err)
	}
	bad := fstest.MapFS{"00001_bad.sql": {Data: []byte("-- +goose Up\nCREATE TABLE broken (;\n-- +goose Down\nSELECT 1;\n")}}
	if err := Migrate(ctx, pool, bad); err == nil {
		t.Error("a broken migration succeeded")
	}
	if _, err := Open(ctx, "postgres://x@127.0.0.1:notaport/db"); err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Errorf("bad dsn: %v", err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // a port with nothing listening
	if _, err := OpenWaiting(ctx, "postgres://x@"+addr+"/db?connect_timeout=2", time.Second); err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Errorf("unreachable: %v", err)
	}
}

// A fresh deploy starts the services while Postgres initialises: Open
// waits for a server that is down, and fails at once when the server answers
// with an error (a wrong password, a missing database): waiting cannot fix it.
func TestOpenWaitsForTheServerButNotForItsRefusal(t *testing.T) {
	ctx := context.Background()
	pgs := testkit.StartPostgres(t)
	dsn := pgs.NewDatabase(t)
	if err := pgs.Stop(); err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() {
		time.Sleep(2 * time.Second) // refused meanwhile
		started <- pgs.Start()
	}()
	pool, err := OpenWaiting(ctx, dsn, time.Minute)
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatalf("Open did not wait for the server: %v", err)
	}
	pool.Close()

	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/no_such_db" // the test server trusts loopback, so a missing database stands for any refusal
	t0 := time.Now()
	if _, err := OpenWaiting(ctx, u.String(), time.Minute); err == nil || !strings.Contains(err.Error(), "3D000") {
		t.Fatalf("missing database: %v", err)
	}
	if waited := time.Since(t0); waited > 10*time.Second {
		t.Errorf("a server's refusal was retried for %v", waited)
	}
}

func TestReadinessFollowsRealPostgres(t *testing.T) {
	ctx := context.Background()
	pgs := testkit.StartPostgres(t)
	pool := open(t, pgs.NewDatabase(t))

	srv := server.New(server.Options{Name: "t", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	srv.AddCheck("postgres", Check(pool))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	url := "http://" + ln.Addr().String() + "/readyz"

	readyz := func() (int, map[string]string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			Failed map[string]string `json:"failed"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Failed
	}
	waitFor := func(want int) map[string]string {
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, failed := readyz()
			if code == want {
				return failed
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz stayed %d, want %d (failed: %v)", code, want, failed)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor(http.StatusOK)
	if err := pgs.Stop(); err != nil {
		t.Fatal(err)
	}
	if failed := waitFor(http.StatusServiceUnavailable); failed["postgres"] == "" {
		t.Errorf("503 does not name postgres: %v", failed)
	}
	if err := pgs.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(http.StatusOK)
	var one int
	if err := pool.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Errorf("pool unusable after restart: %v", err)
	}
}

// TestExecIndexed: the statement runs under IndexPlans in a transaction of
// its own, the settings end with it, and a failed statement is rolled back
// on the same connection, which stays usable.
func TestExecIndexed(t *testing.T) {
	ctx := context.Background()
	pool := open(t, testkit.Postgres(t)+"&pool_max_conns=1")
	if _, err := pool.Exec(ctx, `CREATE TABLE seen (v text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	tag, err := ExecIndexed(ctx, pool, `INSERT INTO seen SELECT current_setting('plan_cache_mode') || ' ' ||
		current_setting('enable_seqscan') || ' ' || current_setting('enable_bitmapscan') || ' ' || $1`, "committed")
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("ExecIndexed = %v, %v; want 1 row inserted", tag, err)
	}
	if _, err := ExecIndexed(ctx, pool, `INSERT INTO seen VALUES ('rolled back'), ((1 / $1::int)::text)`, 0); err == nil ||
		!strings.Contains(err.Error(), "division by zero") {
		t.Fatalf("a failing statement: %v, want its error", err)
	}
	var rows []string
	var after string
	var samePID bool
	err = pool.QueryRow(ctx, `SELECT array(SELECT v FROM seen), current_setting('enable_seqscan'), pg_backend_pid() = $1`, pid).
		Scan(&rows, &after, &samePID)
	if err != nil {
		t.Fatalf("the connection after a failed statement: %v", err)
	}
	if len(rows) != 1 || rows[0] != "force_generic_plan off off committed" {
		t.Errorf("rows %q, want only the committed one, written under IndexPlans", rows)
	}
	if after != "on" || !samePID {
		t.Errorf("after ExecIndexed: enable_seqscan=%s on the same connection=%v; want on, true", after, samePID)
	}
}

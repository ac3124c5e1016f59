// Package pg opens the services' PostgreSQL pools and applies their embedded
// migrations. Migrations take a Postgres advisory lock, so several replicas
// starting at once apply each migration exactly once.
package pg

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// FreshPlan, given as a query's first argument, has Postgres plan that
// statement for its actual arguments and the table's current size every
// time it runs (pgx's unnamed statement), instead of caching a generic plan
// per connection. Use it for the rarer statements over tables that grow from
// empty, such as an outbox or a log of sent e-mails: Postgres settles on a
// generic plan after five runs, and one made while the table held a few
// pages is a sequential scan that stays one as the table grows to millions of
// rows. The price is a plan per run, a fraction of a millisecond; hot
// statements are cheaper under IndexPlans.
const FreshPlan = pgx.QueryExecModeCacheDescribe

// IndexPlans are SET LOCAL statements for a transaction whose statements must
// read growing tables through their indexes, with a plan made once per
// connection instead of FreshPlan's plan per run:
//   - force_generic_plan: one plan per connection, whatever the arguments;
//   - enable_seqscan off: a generic plan made while the table held a few
//     pages would be a sequential scan, kept as the table grows;
//   - enable_bitmapscan off: a bitmap scan returns, on every run, the index
//     entries of every row updated since the last vacuum, because it cannot
//     mark them dead; a plain index scan marks them as it passes, and stops at
//     a LIMIT. An outbox claim read 6,000 such entries to find 18 rows.
var IndexPlans = []string{
	"SET LOCAL plan_cache_mode = force_generic_plan",
	"SET LOCAL enable_seqscan = off",
	"SET LOCAL enable_bitmapscan = off",
}

// QueueIndexPlans queues IndexPlans on b, inside the transaction b begins or
// continues; their len(IndexPlans) results come before the next statement's.
func QueueIndexPlans(b *pgx.Batch) {
	for _, setting := range IndexPlans {
		b.Queue(setting)
	}
}

// ExecIndexed runs one statement in a transaction of its own under
// IndexPlans, all in one round trip: a hot statement over growing tables
// keeps one plan per connection instead of being planned on every run
// (FreshPlan). A failed statement's transaction is rolled back, so the
// connection goes back to the pool usable.
func ExecIndexed(ctx context.Context, pool *pgxpool.Pool, sql string, args ...any) (pgconn.CommandTag, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	defer conn.Release()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	QueueIndexPlans(b)
	b.Queue(sql, args...)
	b.Queue("COMMIT")
	br := conn.SendBatch(ctx, b)
	var tag pgconn.CommandTag
	for i := range b.Len() {
		t, err := br.Exec()
		if err != nil {
			_ = br.Close()
			if conn.Conn().PgConn().TxStatus() != 'I' {
				_, _ = conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
			}
			return pgconn.CommandTag{}, err
		}
		if i == 1+len(IndexPlans) {
			tag = t
		}
	}
	return tag, br.Close()
}

// ConnectWait is how long Open waits for a server that refuses or does not
// answer: on a fresh deploy Postgres initialises for a minute while the
// services start, and a new pod's first connections are refused until the
// node's NetworkPolicy controller admits it. Waiting keeps the pod from
// crash-looping; it stays well inside the startup probe's 150 s.
const ConnectWait = 90 * time.Second

// Open parses dsn, connects and pings, so a bad DATABASE_URL fails at
// start-up. An unreachable server is retried for ConnectWait; a server that
// answers with an error (a wrong password, a missing database) fails at once.
func Open(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	return OpenWaiting(ctx, dsn, ConnectWait)
}

// OpenWaiting is Open with its own wait for an unreachable server.
func OpenWaiting(ctx context.Context, dsn string, wait time.Duration) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pg: DATABASE_URL is not a valid PostgreSQL URL (want postgres://user:pass@host:5432/db): %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pg: open pool: %w", err)
	}
	where := fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	deadline := time.Now().Add(wait)
	pause, logged := 250*time.Millisecond, time.Time{}
	for ; ; pause = min(2*pause, 2*time.Second) {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = pool.Ping(pctx)
		cancel()
		var pgErr *pgconn.PgError
		if err == nil {
			return pool, nil
		}
		if errors.As(err, &pgErr) || ctx.Err() != nil || time.Now().Add(pause).After(deadline) {
			pool.Close()
			return nil, fmt.Errorf("pg: cannot reach %s: %w", where, err)
		}
		if time.Since(logged) > 10*time.Second {
			slog.Warn("waiting for postgres", "at", where, "err", err, "gives_up_in", time.Until(deadline).Round(time.Second))
			logged = time.Now()
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
}

// Check is a readiness check: the pool can hand out a live connection.
func Check(pool *pgxpool.Pool) func(ctx context.Context) error {
	return func(ctx context.Context) error { return pool.Ping(ctx) }
}

// Migrate applies every pending migration in fsys.
func Migrate(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS) error {
	return withProvider(pool, fsys, func(p *goose.Provider) error {
		_, err := p.Up(ctx)
		return err
	})
}

// MigrateDown rolls back the latest applied migration.
func MigrateDown(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS) error {
	return withProvider(pool, fsys, func(p *goose.Provider) error {
		_, err := p.Down(ctx)
		return err
	})
}

// MigrateDownTo rolls back every migration above version (0 = all of them).
func MigrateDownTo(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS, version int64) error {
	return withProvider(pool, fsys, func(p *goose.Provider) error {
		_, err := p.DownTo(ctx, version)
		return err
	})
}

// MigrationVersion is the latest applied migration's version (0 = none).
func MigrationVersion(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS) (int64, error) {
	var v int64
	err := withProvider(pool, fsys, func(p *goose.Provider) (err error) {
		v, err = p.GetDBVersion(ctx)
		return err
	})
	return v, err
}

func withProvider(pool *pgxpool.Pool, fsys fs.FS, fn func(*goose.Provider) error) error {
	fsys, err := migrationsDir(fsys)
	if err != nil {
		return err
	}
	// Waiters retry the advisory lock every second for up to 5 minutes.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
	if err != nil {
		return fmt.Errorf("pg: migration lock: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool) // closing it leaves the pool open
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("pg: migrations: %w", err)
	}
	if err := fn(p); err != nil {
		return fmt.Errorf("pg: migrations: %w", err)
	}
	return nil
}

// migrationsDir accepts the .sql files at fsys's root or under migrations/,
// so services can pass the embed.FS of `//go:embed migrations/*.sql` as is.
func migrationsDir(fsys fs.FS) (fs.FS, error) {
	if fsys == nil {
		return nil, errors.New("pg: no migrations file system given")
	}
	if m, _ := fs.Glob(fsys, "*.sql"); len(m) > 0 {
		return fsys, nil
	}
	if m, _ := fs.Glob(fsys, "migrations/*.sql"); len(m) > 0 {
		return fs.Sub(fsys, "migrations")
	}
	return nil, errors.New("pg: no .sql migrations found at the root or under migrations/ " +
		"(name them 00001_create_things.sql with -- +goose Up / -- +goose Down sections)")
}

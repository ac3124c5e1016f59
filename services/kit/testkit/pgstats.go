package testkit

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Scans are a table's read counters from pg_stat_user_tables.
type Scans struct {
	Seq     int64 // sequential scans
	SeqRows int64 // rows those scans read
	Index   int64 // index scans
}

// TableScans returns table's read counters after every given pool has
// reported its statistics. A backend sends them at most once a second on its
// own, so each pool is asked to flush now: give single-connection pools
// (pool_max_conns=1), since the request reaches one backend. The counters
// are read through the first pool.
func TableScans(tb testing.TB, table string, pools ...*pgxpool.Pool) Scans {
	tb.Helper()
	ctx := context.Background()
	for _, p := range pools {
		// The flush happens as the backend goes idle, before it answers.
		if _, err := p.Exec(ctx, "SELECT pg_stat_force_next_flush()"); err != nil {
			tb.Fatalf("testkit: flush statistics: %v", err)
		}
	}
	var s Scans // read in a transaction of its own, so from a fresh statistics snapshot
	err := pools[0].QueryRow(ctx, `SELECT coalesce(seq_scan, 0), coalesce(seq_tup_read, 0), coalesce(idx_scan, 0)
		FROM pg_stat_user_tables WHERE relname = $1`, table).Scan(&s.Seq, &s.SeqRows, &s.Index)
	if err != nil {
		tb.Fatalf("testkit: scan counters of %s: %v", table, err)
	}
	return s
}

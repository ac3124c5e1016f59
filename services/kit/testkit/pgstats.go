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
// reported its statistics (see flushStats). The counters are read through
// the first pool.
func TableScans(tb testing.TB, table string, pools ...*pgxpool.Pool) Scans {
	tb.Helper()
	flushStats(tb, pools)
	var s Scans // read in a transaction of its own, so from a fresh statistics snapshot
	err := pools[0].QueryRow(context.Background(), `SELECT coalesce(seq_scan, 0), coalesce(seq_tup_read, 0), coalesce(idx_scan, 0)
		FROM pg_stat_user_tables WHERE relname = $1`, table).Scan(&s.Seq, &s.SeqRows, &s.Index)
	if err != nil {
		tb.Fatalf("testkit: scan counters of %s: %v", table, err)
	}
	return s
}

// IndexEntriesRead returns how many entries scans have read from index (dead
// ones not yet marked so included), after every given pool has reported its
// statistics. It is read through the first pool.
func IndexEntriesRead(tb testing.TB, index string, pools ...*pgxpool.Pool) int64 {
	tb.Helper()
	flushStats(tb, pools)
	var n int64
	err := pools[0].QueryRow(context.Background(),
		`SELECT coalesce(idx_tup_read, 0) FROM pg_stat_user_indexes WHERE indexrelname = $1`, index).Scan(&n)
	if err != nil {
		tb.Fatalf("testkit: entries read from index %s: %v", index, err)
	}
	return n
}

// flushStats makes each pool's backend report its statistics now; on its
// own a backend sends them at most once a second. Give single-connection
// pools (pool_max_conns=1), since the request reaches one backend.
func flushStats(tb testing.TB, pools []*pgxpool.Pool) {
	tb.Helper()
	for _, p := range pools {
		// The flush happens as the backend goes idle, before it answers.
		if _, err := p.Exec(context.Background(), "SELECT pg_stat_force_next_flush()"); err != nil {
			tb.Fatalf("testkit: flush statistics: %v", err)
		}
	}
}

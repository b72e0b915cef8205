// Package storetest holds the conformance tests and benchmarks shared by the
// group-commit raft log stores of relaylog (sharedlog, walstore): a DB of
// per-shard raft.LogStore + raft.StableStore whose writes from all shards are
// committed together.
//
// A store's test file adapts its DB to the DB interface here and calls Run
// (every test as a subtest) and the Bench functions. Tests of one
// implementation's internals (bolt specifics, WAL segments, torn tails,
// corruption) stay in its own package.
package storetest

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// Store is one shard's log and stable store.
type Store interface {
	raft.LogStore
	raft.StableStore
}

// Stats are a DB's cumulative counters since it was opened.
type Stats struct {
	Commits   uint64 // group commits (one durable write each)
	Entries   uint64 // raft log entries written
	Requests  uint64 // StoreLogs/StoreLog/DeleteRange/Set/SetUint64 calls committed
	SyncNanos uint64 // total time spent committing (0 if not measured)
}

// DB is the store of all shards of a node.
type DB interface {
	// Shard returns the store of shard id; the same id always yields the
	// same Store.
	Shard(id int) Store
	// Close fails queued writes with the Target's ErrClosed, waits for the
	// commit in progress and closes the DB; it is idempotent.
	Close() error
	Stats() Stats
	// QueueLen returns the number of writes waiting for the committer
	// (not those of the commit in progress).
	QueueLen() int
}

// Options are the settings a test needs; an adapter maps them to its store's
// options.
type Options struct {
	NoSync        bool
	MaxBatchBytes int // 0: the store's default
	// BeforeCommit, if set, runs in the committer after a batch is
	// assembled and before it is made durable. Tests hold it to let
	// requests queue up.
	BeforeCommit func()
}

// Target is an implementation under test.
type Target struct {
	// Name labels benchmarks ("store=Name").
	Name string
	// Open opens the DB kept in dir (an existing directory that belongs to
	// the DB; the adapter chooses the file or directory names inside it),
	// creating it if empty. Opening the same dir again must find the data.
	Open func(tb testing.TB, dir string, opts Options) (DB, error)
	// ErrClosed is what calls on a closed DB return (checked with
	// errors.Is).
	ErrClosed error
}

func (tg Target) open(tb testing.TB, dir string, opts Options) DB {
	tb.Helper()
	db, err := tg.Open(tb, dir, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return db
}

// Run runs every conformance test against tg, each as a subtest named
// after the test it was in sharedlog and walstore before they shared it
// (TestLogRoundTrip is now Run's subtest LogRoundTrip).
func Run(t *testing.T, tg Target) {
	for _, tc := range []struct {
		name string
		f    func(*testing.T, Target)
	}{
		{"LogRoundTrip", testLogRoundTrip},
		{"FirstLastIndexAndDeleteRange", testFirstLastIndexAndDeleteRange},
		{"StableStore", testStableStore},
		{"ShardsIsolated", testShardsIsolated},
		{"ReopenKeepsEverything", testReopenKeepsEverything},
		{"ConcurrentGroupCommit", testConcurrentGroupCommit},
		{"MaxBatchBytesSplitsTransactions", testMaxBatchBytesSplitsTransactions},
		{"CloseFailsBlockedWriters", testCloseFailsBlockedWriters},
		{"RaftSingleVoterRestart", testRaftSingleVoterRestart},
		{"StoreAndDeleteInOneTransaction", testStoreAndDeleteInOneTransaction},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, tg) })
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

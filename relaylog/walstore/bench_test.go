package walstore

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/edgenode/edgenode/relaylog/sharedlog"
)

// BenchmarkRaftApply (ported from relaylog/sharedlog) runs S single-voter
// raft groups in one process, all logging to this package's shared WAL
// ("wal") or to sharedlog's shared bolt file ("shared", the reference), fsync
// on, and C goroutines that each call
// Apply with a 250-byte command on the next shard (round-robin over a global
// counter) and wait for the future. One op is one Apply. The groups are
// started once per sub-benchmark and reused across its b.N rounds; only the
// applies are timed.
//
// Metrics: applies/s, entries/commit (log entries per group commit, from
// Stats), commit-us (Stats SyncNanos per commit: write+fdatasync for wal, bolt's
// Tx.Commit for shared), p50-ms and p99-ms of Apply-to-future latency.
func BenchmarkRaftApply(b *testing.B) {
	for _, store := range []string{"wal", "shared"} {
		for _, shards := range []int{8, 16, 32} {
			for _, conc := range []int{256, 1024} {
				var env *benchEnv
				b.Run(fmt.Sprintf("store=%s/shards=%d/C=%d", store, shards, conc), func(b *testing.B) {
					if env == nil {
						env = newBenchEnv(b, store, shards)
					}
					env.run(b, conc)
				})
				if env != nil {
					env.close(b)
				}
			}
		}
	}
}

type benchEnv struct {
	dir    string
	rafts  []*raft.Raft
	wal    *DB
	shared *sharedlog.DB
}

type nopFSM struct{ n atomic.Uint64 }

func (f *nopFSM) Apply(*raft.Log) any                 { f.n.Add(1); return nil }
func (f *nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnap{}, nil }
func (f *nopFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type nopSnap struct{}

func (nopSnap) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (nopSnap) Release()                             {}

func benchConfig(id string) *raft.Config {
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(id)
	// "tuned" of MEASURED.md.
	conf.MaxAppendEntries = 512
	conf.BatchApplyCh = true
	conf.CommitTimeout = 50 * time.Millisecond
	conf.SnapshotThreshold = 1 << 40 // no snapshot during the benchmark
	conf.TrailingLogs = 8192
	// Only to elect the single voter quickly at start; a one-voter group
	// sends no heartbeats, so these do not affect throughput.
	conf.HeartbeatTimeout = 100 * time.Millisecond
	conf.ElectionTimeout = 100 * time.Millisecond
	conf.LeaderLeaseTimeout = 100 * time.Millisecond
	conf.Logger = hclog.New(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Error})
	return conf
}

func newBenchEnv(b *testing.B, store string, shards int) *benchEnv {
	b.Helper()
	dir, err := os.MkdirTemp("", "walstore-bench-")
	if err != nil {
		b.Fatal(err)
	}
	env := &benchEnv{dir: dir}
	if store == "shared" {
		env.shared, err = sharedlog.Open(sharedlog.Options{Path: filepath.Join(dir, "shared.db")})
	} else {
		env.wal, err = Open(Options{Path: filepath.Join(dir, "wal")})
	}
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < shards; i++ {
		var logs raft.LogStore
		var stable raft.StableStore
		if store == "shared" {
			s := env.shared.Shard(i)
			logs, stable = s, s
		} else {
			s := env.wal.Shard(i)
			logs, stable = s, s
		}
		snapDir := filepath.Join(dir, fmt.Sprintf("snap-%d", i))
		snaps, err := raft.NewFileSnapshotStore(snapDir, 1, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		id := fmt.Sprintf("s%d", i)
		addr, trans := raft.NewInmemTransport(raft.ServerAddress(id))
		r, err := raft.NewRaft(benchConfig(id), &nopFSM{}, logs, stable, snaps, trans)
		if err != nil {
			b.Fatal(err)
		}
		cfg := raft.Configuration{Servers: []raft.Server{{ID: raft.ServerID(id), Address: addr}}}
		if err := r.BootstrapCluster(cfg).Error(); err != nil {
			b.Fatal(err)
		}
		env.rafts = append(env.rafts, r)
	}
	for _, r := range env.rafts {
		waitFor(b, 30*time.Second, "leader", func() bool { return r.State() == raft.Leader })
	}
	return env
}

// stats returns commits, log entries and commit nanoseconds so far.
func (env *benchEnv) stats() (commits, entries, nanos uint64) {
	if env.shared != nil {
		st := env.shared.Stats()
		return st.Commits, st.Entries, st.SyncNanos
	}
	st := env.wal.Stats()
	return st.Commits, st.Entries, st.SyncNanos
}

func (env *benchEnv) run(b *testing.B, conc int) {
	cmd := make([]byte, 250) // read-only, shared by all applies
	for i := range cmd {
		cmd[i] = byte('a' + i%26)
	}
	n := b.N
	lat := make([]time.Duration, n)
	c0, e0, s0 := env.stats()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for g := 0; g < conc; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				r := env.rafts[int(i)%len(env.rafts)]
				t0 := time.Now()
				if err := r.Apply(cmd, 30*time.Second).Error(); err != nil {
					b.Error(err)
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	c1, e1, s1 := env.stats()
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(float64(n)/elapsed.Seconds(), "applies/s")
	if c1 > c0 {
		b.ReportMetric(float64(e1-e0)/float64(c1-c0), "entries/commit")
		b.ReportMetric(float64(c1-c0)/elapsed.Seconds(), "commits/s")
		b.ReportMetric(float64(s1-s0)/1e3/float64(c1-c0), "commit-us")
	}
	b.ReportMetric(ms(lat[n/2]), "p50-ms")
	b.ReportMetric(ms(lat[n*99/100]), "p99-ms")
}

func (env *benchEnv) close(b *testing.B) {
	var wg sync.WaitGroup
	for _, r := range env.rafts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Shutdown().Error(); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	if env.shared != nil {
		if err := env.shared.Close(); err != nil {
			b.Error(err)
		}
	}
	if env.wal != nil {
		if err := env.wal.Close(); err != nil {
			b.Error(err)
		}
	}
	if err := os.RemoveAll(env.dir); err != nil {
		b.Error(err)
	}
}

// BenchmarkStoreLogs measures the store's own cost per call (no raft, no
// fsync): 64 entries of 250 bytes per StoreLogs, as a raft leader batches.
// allocs/op here are the store's allocations for 64 entries.
func BenchmarkStoreLogs(b *testing.B) {
	db, err := Open(Options{Path: filepath.Join(b.TempDir(), "wal"), NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	s := db.Shard(0)
	logs := make([]*raft.Log, 64)
	now := time.Now()
	for i := range logs {
		logs[i] = &raft.Log{Term: 1, Data: make([]byte, 250), AppendedAt: now}
	}
	idx := uint64(0)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, l := range logs {
			idx++
			l.Index = idx
		}
		if err := s.StoreLogs(logs); err != nil {
			b.Fatal(err)
		}
		// Keep the bucket small, as raft's compaction does.
		if idx%8192 == 0 {
			if err := s.DeleteRange(0, idx-4096); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*len(logs))/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkGetLog measures one read of a 250-byte entry.
func BenchmarkGetLog(b *testing.B) {
	db, err := Open(Options{Path: filepath.Join(b.TempDir(), "wal"), NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	s := db.Shard(0)
	logs := make([]*raft.Log, 1024)
	for i := range logs {
		logs[i] = &raft.Log{Index: uint64(i + 1), Term: 1, Data: make([]byte, 250), AppendedAt: time.Now()}
	}
	if err := s.StoreLogs(logs); err != nil {
		b.Fatal(err)
	}
	var l raft.Log
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		if err := s.GetLog(uint64(i%1024+1), &l); err != nil {
			b.Fatal(err)
		}
	}
}

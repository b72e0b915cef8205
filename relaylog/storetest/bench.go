package storetest

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
)

// BenchRaftApply runs, for each target, shard count S and concurrency C, S
// single-voter raft groups in one process logging to one DB of the target
// (fsync on), and C goroutines that each call Apply with a 250-byte command on
// the next shard (round-robin over a global counter) and wait for the future.
// One op is one Apply. The groups are started once per sub-benchmark
// ("store=<Name>/shards=S/C=C") and reused across its b.N rounds; only the
// applies are timed.
//
// Metrics: applies/s, entries/commit and commits/s (from Stats: log entries
// per durable commit), commit-us (Stats.SyncNanos per commit, if the target
// measures it), p50-ms and p99-ms of Apply-to-future latency.
func BenchRaftApply(b *testing.B, shards, conc []int, targets ...Target) {
	for _, tg := range targets {
		for _, s := range shards {
			for _, c := range conc {
				var env *benchEnv
				b.Run(fmt.Sprintf("store=%s/shards=%d/C=%d", tg.Name, s, c), func(b *testing.B) {
					if env == nil {
						env = newBenchEnv(b, tg, s)
					}
					env.run(b, c)
				})
				if env != nil {
					env.close(b)
				}
			}
		}
	}
}

type benchEnv struct {
	dir   string
	rafts []*raft.Raft
	db    DB
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
	// "tuned" of docs/BASELINE.md.
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

func newBenchEnv(b *testing.B, tg Target, shards int) *benchEnv {
	b.Helper()
	// Not b.TempDir: the env outlives the first call of the sub-benchmark.
	dir, err := os.MkdirTemp("", "storetest-bench-")
	if err != nil {
		b.Fatal(err)
	}
	dbDir := filepath.Join(dir, "db")
	if err := os.Mkdir(dbDir, 0o700); err != nil {
		b.Fatal(err)
	}
	env := &benchEnv{dir: dir, db: tg.open(b, dbDir, Options{})}
	for i := 0; i < shards; i++ {
		s := env.db.Shard(i)
		snapDir := filepath.Join(dir, fmt.Sprintf("snap-%d", i))
		snaps, err := raft.NewFileSnapshotStore(snapDir, 1, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		id := fmt.Sprintf("s%d", i)
		addr, trans := raft.NewInmemTransport(raft.ServerAddress(id))
		r, err := raft.NewRaft(benchConfig(id), &nopFSM{}, s, s, snaps, trans)
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

func (env *benchEnv) run(b *testing.B, conc int) {
	cmd := make([]byte, 250) // read-only, shared by all applies
	for i := range cmd {
		cmd[i] = byte('a' + i%26)
	}
	n := b.N
	lat := make([]time.Duration, n)
	st0 := env.db.Stats()
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
	st1 := env.db.Stats()
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(float64(n)/elapsed.Seconds(), "applies/s")
	if c := st1.Commits - st0.Commits; c > 0 {
		b.ReportMetric(float64(st1.Entries-st0.Entries)/float64(c), "entries/commit")
		b.ReportMetric(float64(c)/elapsed.Seconds(), "commits/s")
		if st1.SyncNanos > st0.SyncNanos {
			b.ReportMetric(float64(st1.SyncNanos-st0.SyncNanos)/1e3/float64(c), "commit-us")
		}
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
	if err := env.db.Close(); err != nil {
		b.Error(err)
	}
	if err := os.RemoveAll(env.dir); err != nil {
		b.Error(err)
	}
}

// BenchStoreLogs measures the store's own cost per call (no raft, no fsync):
// 64 entries of 250 bytes per StoreLogs, as a raft leader batches.
// allocs/op are the store's allocations for 64 entries.
func BenchStoreLogs(b *testing.B, tg Target) {
	db := tg.open(b, b.TempDir(), Options{NoSync: true})
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
		// Keep the log small, as raft's compaction does.
		if idx%8192 == 0 {
			if err := s.DeleteRange(0, idx-4096); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*len(logs))/b.Elapsed().Seconds(), "entries/s")
}

// BenchGetLog measures one read of a 250-byte entry.
func BenchGetLog(b *testing.B, tg Target) {
	db := tg.open(b, b.TempDir(), Options{NoSync: true})
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

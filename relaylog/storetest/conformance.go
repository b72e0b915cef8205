package storetest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// normalized is what a log looks like after a round trip: the same, minus
// the monotonic clock reading of AppendedAt.
func normalized(l *raft.Log) raft.Log {
	c := *l
	c.AppendedAt = c.AppendedAt.Round(0)
	return c
}

func sampleLogs() []*raft.Log {
	now := time.Now()
	return []*raft.Log{
		{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: []byte("config"), AppendedAt: now},
		{Index: 2, Term: 1, Type: raft.LogNoop},                                          // nil Data, zero time
		{Index: 3, Term: 2, Type: raft.LogCommand, Data: []byte{}, Extensions: []byte{}}, // empty, not nil
		{Index: 4, Term: 2, Type: raft.LogCommand, Data: bytes.Repeat([]byte("x"), 250), Extensions: []byte("ext-v1"), AppendedAt: now.Add(time.Nanosecond)},
		{Index: 5, Term: 1<<63 + 12345, Type: raft.LogBarrier, Extensions: []byte{0, 1, 2}, AppendedAt: time.Unix(-5, 999999999)},
		{Index: 1 << 40, Term: 3, Type: raft.LogType(200), Data: make([]byte, 70000), AppendedAt: time.Date(2300, 1, 2, 3, 4, 5, 6, time.Local)},
	}
}

func testLogRoundTrip(t *testing.T, tg Target) {
	db := tg.open(t, t.TempDir(), Options{})
	defer db.Close()
	s := db.Shard(0)
	logs := sampleLogs()
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	for _, want := range logs {
		var got raft.Log
		if err := s.GetLog(want.Index, &got); err != nil {
			t.Fatalf("GetLog(%d): %v", want.Index, err)
		}
		if w := normalized(want); !reflect.DeepEqual(got, w) {
			t.Fatalf("index %d: got %+v, want %+v", want.Index, got, w)
		}
		if !got.AppendedAt.Equal(want.AppendedAt) {
			t.Fatalf("index %d: AppendedAt %v, want %v", want.Index, got.AppendedAt, want.AppendedAt)
		}
	}
	// Data and Extensions share one allocation; appending to Data must not
	// overwrite Extensions.
	var got raft.Log
	if err := s.GetLog(4, &got); err != nil {
		t.Fatal(err)
	}
	_ = append(got.Data, "clobber"...)
	if string(got.Extensions) != "ext-v1" {
		t.Fatalf("Extensions clobbered by append to Data: %q", got.Extensions)
	}
	for _, idx := range []uint64{0, 6, 1<<40 + 1} {
		if err := s.GetLog(idx, &got); !errors.Is(err, raft.ErrLogNotFound) {
			t.Fatalf("GetLog(%d) of missing index: %v, want raft.ErrLogNotFound", idx, err)
		}
	}
	// StoreLog and overwrite of an existing index (a follower truncating a
	// conflicting suffix rewrites indexes).
	over := &raft.Log{Index: 2, Term: 9, Type: raft.LogCommand, Data: []byte("new")}
	if err := s.StoreLog(over); err != nil {
		t.Fatal(err)
	}
	if err := s.GetLog(2, &got); err != nil || !reflect.DeepEqual(got, *over) {
		t.Fatalf("after overwrite: %+v %v", got, err)
	}
}

func testFirstLastIndexAndDeleteRange(t *testing.T, tg Target) {
	db := tg.open(t, t.TempDir(), Options{})
	defer db.Close()
	s := db.Shard(3)
	firstLast := func() (uint64, uint64) {
		t.Helper()
		f, err := s.FirstIndex()
		if err != nil {
			t.Fatal(err)
		}
		l, err := s.LastIndex()
		if err != nil {
			t.Fatal(err)
		}
		return f, l
	}
	if f, l := firstLast(); f != 0 || l != 0 {
		t.Fatalf("empty store: first %d last %d", f, l)
	}
	// Enough entries for many bolt pages (deletes cross page boundaries)
	// and for several WAL index runs and holes.
	const n = 5000
	var logs []*raft.Log
	for i := uint64(1); i <= n; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Data: bytes.Repeat([]byte{byte(i)}, 100)})
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if f, l := firstLast(); f != 1 || l != n {
		t.Fatalf("after store: first %d last %d", f, l)
	}
	if err := s.DeleteRange(1, 1000); err != nil {
		t.Fatal(err)
	}
	if f, l := firstLast(); f != 1001 || l != n {
		t.Fatalf("after deleting head: first %d last %d", f, l)
	}
	if err := s.DeleteRange(4001, n+100); err != nil {
		t.Fatal(err)
	}
	if f, l := firstLast(); f != 1001 || l != 4000 {
		t.Fatalf("after deleting tail: first %d last %d", f, l)
	}
	if err := s.DeleteRange(2000, 2999); err != nil {
		t.Fatal(err)
	}
	var got raft.Log
	for i := uint64(1); i <= n; i++ {
		err := s.GetLog(i, &got)
		present := i >= 1001 && i <= 4000 && (i < 2000 || i > 2999)
		switch {
		case present && err != nil:
			t.Fatalf("index %d: %v", i, err)
		case present && (got.Index != i || got.Data[0] != byte(i)):
			t.Fatalf("index %d: got %+v", i, got)
		case !present && !errors.Is(err, raft.ErrLogNotFound):
			t.Fatalf("deleted index %d: err %v", i, err)
		}
	}
	if err := s.DeleteRange(5, 3); err != nil { // empty range: no-op
		t.Fatal(err)
	}
	if err := s.DeleteRange(0, ^uint64(0)); err != nil {
		t.Fatal(err)
	}
	if f, l := firstLast(); f != 0 || l != 0 {
		t.Fatalf("after deleting all: first %d last %d", f, l)
	}
	// Delete on a shard never written is a no-op.
	if err := db.Shard(99).DeleteRange(1, 10); err != nil {
		t.Fatal(err)
	}
}

func testStableStore(t *testing.T, tg Target) {
	db := tg.open(t, t.TempDir(), Options{})
	defer db.Close()
	s := db.Shard(1)

	// A fresh store: raft's own check must see "not found".
	if _, err := s.Get([]byte("CurrentTerm")); err == nil || err.Error() != "not found" {
		t.Fatalf("Get missing: %v, want \"not found\"", err)
	}
	if _, err := s.GetUint64([]byte("CurrentTerm")); err == nil || err.Error() != "not found" {
		t.Fatalf("GetUint64 missing: %v, want \"not found\"", err)
	}
	if ok, err := raft.HasExistingState(s, s, raft.NewInmemSnapshotStore()); ok || err != nil {
		t.Fatalf("HasExistingState on fresh store: %v %v", ok, err)
	}

	if err := s.Set([]byte("LastVoteCand"), []byte("node-a")); err != nil {
		t.Fatal(err)
	}
	v, err := s.Get([]byte("LastVoteCand"))
	if err != nil || string(v) != "node-a" {
		t.Fatalf("Get: %q %v", v, err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("node-b")); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Get([]byte("LastVoteCand")); string(v) != "node-b" {
		t.Fatalf("overwrite: %q", v)
	}
	if err := s.Set([]byte("empty"), nil); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get([]byte("empty")); err != nil || v == nil || len(v) != 0 {
		t.Fatalf("empty value: %q (nil=%v) %v", v, v == nil, err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 1<<50+7); err != nil {
		t.Fatal(err)
	}
	if n, err := s.GetUint64([]byte("CurrentTerm")); err != nil || n != 1<<50+7 {
		t.Fatalf("GetUint64: %d %v", n, err)
	}
	if ok, err := raft.HasExistingState(s, s, raft.NewInmemSnapshotStore()); !ok || err != nil {
		t.Fatalf("HasExistingState after SetUint64: %v %v", ok, err)
	}
	if _, err := s.GetUint64([]byte("LastVoteCand")); err == nil {
		t.Fatal("GetUint64 of a 6-byte value did not fail")
	}
	if err := s.Set(nil, []byte("x")); err == nil {
		t.Fatal("Set with empty key did not fail")
	}
}

func testShardsIsolated(t *testing.T, tg Target) {
	db := tg.open(t, t.TempDir(), Options{})
	defer db.Close()
	if db.Shard(7) != db.Shard(7) {
		t.Fatal("Shard(7) returned two different stores")
	}
	a, b := db.Shard(1), db.Shard(2)
	if err := a.StoreLogs([]*raft.Log{{Index: 10, Term: 1, Data: []byte("a10")}, {Index: 11, Term: 1, Data: []byte("a11")}}); err != nil {
		t.Fatal(err)
	}
	if err := b.StoreLogs([]*raft.Log{{Index: 5, Term: 2, Data: []byte("b5")}}); err != nil {
		t.Fatal(err)
	}
	if err := a.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		t.Fatal(err)
	}
	if err := b.SetUint64([]byte("CurrentTerm"), 2); err != nil {
		t.Fatal(err)
	}
	if f, _ := a.FirstIndex(); f != 10 {
		t.Fatalf("a first %d", f)
	}
	if l, _ := b.LastIndex(); l != 5 {
		t.Fatalf("b last %d", l)
	}
	var got raft.Log
	if err := b.GetLog(10, &got); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("b sees a's entry: %v", err)
	}
	if err := a.GetLog(5, &got); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("a sees b's entry: %v", err)
	}
	if n, _ := a.GetUint64([]byte("CurrentTerm")); n != 1 {
		t.Fatalf("a term %d", n)
	}
	if n, _ := b.GetUint64([]byte("CurrentTerm")); n != 2 {
		t.Fatalf("b term %d", n)
	}
	if err := a.DeleteRange(0, 100); err != nil {
		t.Fatal(err)
	}
	if l, _ := b.LastIndex(); l != 5 {
		t.Fatalf("a's DeleteRange touched b: last %d", l)
	}
	// A shard never written is empty, and reading it creates nothing.
	c := db.Shard(-4)
	if f, err := c.FirstIndex(); f != 0 || err != nil {
		t.Fatalf("unwritten shard first %d %v", f, err)
	}
	if _, err := c.Get([]byte("k")); err == nil || err.Error() != "not found" {
		t.Fatalf("unwritten shard Get: %v", err)
	}
}

func testReopenKeepsEverything(t *testing.T, tg Target) {
	dir := t.TempDir()
	db := tg.open(t, dir, Options{})
	logs := sampleLogs()
	for id := 0; id < 3; id++ {
		s := db.Shard(id)
		if err := s.StoreLogs(logs); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteRange(1, 1); err != nil {
			t.Fatal(err)
		}
		if err := s.SetUint64([]byte("CurrentTerm"), uint64(100+id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	if err := db.Shard(0).StoreLog(logs[0]); !errors.Is(err, tg.ErrClosed) {
		t.Fatalf("StoreLog after Close: %v", err)
	}
	if _, err := db.Shard(0).LastIndex(); !errors.Is(err, tg.ErrClosed) {
		t.Fatalf("LastIndex after Close: %v", err)
	}

	db = tg.open(t, dir, Options{})
	defer db.Close()
	for id := 0; id < 3; id++ {
		s := db.Shard(id)
		if f, _ := s.FirstIndex(); f != 2 {
			t.Fatalf("shard %d first %d", id, f)
		}
		if l, _ := s.LastIndex(); l != 1<<40 {
			t.Fatalf("shard %d last %d", id, l)
		}
		for _, want := range logs[1:] {
			var got raft.Log
			if err := s.GetLog(want.Index, &got); err != nil || !reflect.DeepEqual(got, normalized(want)) {
				t.Fatalf("shard %d index %d: %+v %v", id, want.Index, got, err)
			}
		}
		if n, err := s.GetUint64([]byte("CurrentTerm")); err != nil || n != uint64(100+id) {
			t.Fatalf("shard %d term %d %v", id, n, err)
		}
	}
}

func testConcurrentGroupCommit(t *testing.T, tg Target) {
	const (
		goroutines = 32
		shards     = 16
		calls      = 40
		perCall    = 4
	)
	dir := t.TempDir()
	db := tg.open(t, dir, Options{}) // fsync on: commits take long enough for batches to form
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := db.Shard(g % shards)
			base := uint64(g/shards) * 1_000_000 // two writers per shard, disjoint ranges
			for c := 0; c < calls; c++ {
				logs := make([]*raft.Log, perCall)
				for i := range logs {
					idx := base + uint64(c*perCall+i) + 1
					logs[i] = &raft.Log{Index: idx, Term: uint64(g), Data: []byte(fmt.Sprintf("g%d-%d", g, idx))}
				}
				if err := s.StoreLogs(logs); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := db.Stats()
	t.Logf("stats: %+v (%.1f requests per commit)", st, float64(st.Requests)/float64(st.Commits))
	if st.Requests != goroutines*calls || st.Entries != goroutines*calls*perCall {
		t.Fatalf("stats %+v, want %d requests and %d entries", st, goroutines*calls, goroutines*calls*perCall)
	}
	if st.Commits >= st.Requests {
		t.Fatalf("no group commit: %d commits for %d requests", st.Commits, st.Requests)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = tg.open(t, dir, Options{})
	defer db.Close()
	for g := 0; g < goroutines; g++ {
		s := db.Shard(g % shards)
		base := uint64(g/shards) * 1_000_000
		for i := 1; i <= calls*perCall; i++ {
			idx := base + uint64(i)
			var got raft.Log
			if err := s.GetLog(idx, &got); err != nil {
				t.Fatalf("shard %d index %d after reopen: %v", g%shards, idx, err)
			}
			if want := fmt.Sprintf("g%d-%d", g, idx); string(got.Data) != want || got.Term != uint64(g) {
				t.Fatalf("shard %d index %d: %q term %d", g%shards, idx, got.Data, got.Term)
			}
		}
	}
}

func testMaxBatchBytesSplitsTransactions(t *testing.T, tg Target) {
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	db := tg.open(t, t.TempDir(), Options{NoSync: true, MaxBatchBytes: 4096, BeforeCommit: func() {
		once.Do(func() { // hold the first commit until all requests queue
			close(entered)
			<-release
		})
	}})
	defer db.Close()
	const writers = 20
	var wg sync.WaitGroup
	for i := 0; i <= writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := db.Shard(i).StoreLog(&raft.Log{Index: 1, Data: make([]byte, 1000)}); err != nil {
				t.Error(err)
			}
		}()
		if i == 0 {
			<-entered // writer 0 is in the held transaction
		}
	}
	waitFor(t, 10*time.Second, "queued writers", func() bool { return db.QueueLen() == writers })
	close(release)
	wg.Wait()
	st := db.Stats()
	// 20 requests of ~1 KiB in 4 KiB transactions: at most 4 per commit.
	if st.Commits < 1+writers/4 || st.Requests != writers+1 {
		t.Fatalf("stats %+v: MaxBatchBytes 4096 not respected", st)
	}
	t.Logf("stats %+v", st)
}

func testCloseFailsBlockedWriters(t *testing.T, tg Target) {
	before := runtime.NumGoroutine()
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	db := tg.open(t, t.TempDir(), Options{BeforeCommit: func() {
		once.Do(func() {
			close(entered)
			<-release
		})
	}})
	// Writer 0 gets into the first transaction, which the hook holds.
	first := make(chan error, 1)
	go func() { first <- db.Shard(0).StoreLog(&raft.Log{Index: 1, Term: 1}) }()
	<-entered
	// These queue behind it.
	const blocked = 10
	results := make(chan error, blocked)
	for i := 1; i <= blocked; i++ {
		go func() { results <- db.Shard(i).SetUint64([]byte("CurrentTerm"), 1) }()
	}
	waitFor(t, 10*time.Second, "writers queued", func() bool { return db.QueueLen() == blocked })

	closed := make(chan error, 1)
	go func() { closed <- db.Close() }()
	// Queued writers fail at once, while the held transaction is still open.
	for i := 0; i < blocked; i++ {
		if err := <-results; !errors.Is(err, tg.ErrClosed) {
			t.Fatalf("queued writer got %v, want ErrClosed", err)
		}
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("writer in the committing transaction: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := db.Shard(0).StoreLog(&raft.Log{Index: 2}); !errors.Is(err, tg.ErrClosed) {
		t.Fatalf("write after Close: %v", err)
	}
	waitFor(t, 10*time.Second, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
}

// countFSM folds every command into an order-sensitive checksum.
type countFSM struct {
	mu       sync.Mutex
	n, sum   uint64
	lastIdx  atomic.Uint64
	restores int
}

func (f *countFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	f.sum = f.sum*1000003 + binary.BigEndian.Uint64(l.Data)
	f.lastIdx.Store(l.Index)
	return f.n
}

func (f *countFSM) state() (uint64, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n, f.sum
}

func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) {
	n, sum := f.state()
	return countSnap{n, sum}, nil
}

func (f *countFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var b [16]byte
	if _, err := io.ReadFull(rc, b[:]); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n, f.sum = binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	f.restores++
	return nil
}

type countSnap struct{ n, sum uint64 }

func (s countSnap) Persist(sink raft.SnapshotSink) error {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], s.n)
	binary.BigEndian.PutUint64(b[8:], s.sum)
	if _, err := sink.Write(b[:]); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (countSnap) Release() {}

type raftNode struct {
	r     *raft.Raft
	fsm   *countFSM
	db    DB
	store Store
}

func startRaft(t *testing.T, tg Target, dir string, bootstrap bool) *raftNode {
	t.Helper()
	db := tg.open(t, dir, Options{})
	store := db.Shard(5)
	snaps, err := raft.NewFileSnapshotStore(dir, 2, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	conf := raft.DefaultConfig()
	conf.LocalID = "n1"
	conf.HeartbeatTimeout = 50 * time.Millisecond
	conf.ElectionTimeout = 50 * time.Millisecond
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	conf.MaxAppendEntries = 64
	conf.BatchApplyCh = true
	conf.TrailingLogs = 100
	conf.SnapshotThreshold = 1 << 30 // snapshots only when the test asks
	conf.Logger = hclog.New(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Off})
	_, trans := raft.NewInmemTransport("n1")
	fsm := &countFSM{}
	r, err := raft.NewRaft(conf, fsm, store, store, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	if bootstrap {
		cfg := raft.Configuration{Servers: []raft.Server{{ID: "n1", Address: trans.LocalAddr()}}}
		if err := r.BootstrapCluster(cfg).Error(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "leadership", func() bool { return r.State() == raft.Leader })
	return &raftNode{r: r, fsm: fsm, db: db, store: store}
}

func (n *raftNode) stop(t *testing.T) {
	t.Helper()
	if err := n.r.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	if err := n.db.Close(); err != nil {
		t.Fatal(err)
	}
}

func applyN(t *testing.T, r *raft.Raft, from, to int) {
	t.Helper()
	futures := make([]raft.ApplyFuture, 0, to-from)
	for i := from; i < to; i++ {
		var cmd [8]byte
		binary.BigEndian.PutUint64(cmd[:], uint64(i))
		futures = append(futures, r.Apply(cmd[:], 10*time.Second))
	}
	for _, f := range futures {
		if err := f.Error(); err != nil {
			t.Fatal(err)
		}
	}
}

func testRaftSingleVoterRestart(t *testing.T, tg Target) {
	dir := t.TempDir()
	n := startRaft(t, tg, dir, true)
	applyN(t, n.r, 0, 600)
	// A snapshot compacts the log through DeleteRange (keeping TrailingLogs).
	if err := n.r.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	first, _ := n.store.FirstIndex()
	if first <= 1 {
		t.Fatalf("log not compacted after snapshot: first index %d", first)
	}
	applyN(t, n.r, 600, 1000)
	wantN, wantSum := n.fsm.state()
	if wantN != 1000 {
		t.Fatalf("fsm applied %d commands, want 1000", wantN)
	}
	last, _ := n.store.LastIndex()
	t.Logf("before restart: first %d last %d, stats %+v", first, last, n.db.Stats())
	n.stop(t)

	n = startRaft(t, tg, dir, false)
	defer n.stop(t)
	waitFor(t, 10*time.Second, "fsm replay", func() bool { c, _ := n.fsm.state(); return c >= wantN })
	if c, sum := n.fsm.state(); c != wantN || sum != wantSum {
		t.Fatalf("after restart fsm (n=%d, sum=%d), want (n=%d, sum=%d)", c, sum, wantN, wantSum)
	}
	n.fsm.mu.Lock()
	restores := n.fsm.restores
	n.fsm.mu.Unlock()
	if restores != 1 {
		t.Fatalf("restored from %d snapshots, want 1", restores)
	}
	// And it keeps working.
	applyN(t, n.r, 1000, 1010)
	if c, _ := n.fsm.state(); c != 1010 {
		t.Fatalf("after more applies fsm n=%d, want 1010", c)
	}
}

// testStoreAndDeleteInOneTransaction puts StoreLogs and DeleteRange of the
// same shard into one group commit (raft calls DeleteRange from its snapshot
// goroutine while the leader loop appends): the store must apply them in
// queue order. (In bolt, Delete then works on leaves already turned into
// nodes by the Puts.)
func testStoreAndDeleteInOneTransaction(t *testing.T, tg Target) {
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	db := tg.open(t, t.TempDir(), Options{NoSync: true, BeforeCommit: func() {
		once.Do(func() {
			close(entered)
			<-release
		})
	}})
	defer db.Close()
	mk := func(from, to uint64) []*raft.Log {
		var logs []*raft.Log
		for i := from; i <= to; i++ {
			logs = append(logs, &raft.Log{Index: i, Term: 1, Data: []byte(fmt.Sprint(i))})
		}
		return logs
	}
	done := make(chan error, 4)
	go func() { done <- db.Shard(9).StoreLog(&raft.Log{Index: 1}) }()
	<-entered // the committer holds a transaction; the next requests queue
	s := db.Shard(1)
	steps := []func() error{
		func() error { return s.StoreLogs(mk(1, 3000)) },
		func() error { return s.DeleteRange(1, 2000) },
		func() error { return s.StoreLogs(mk(3001, 3010)) },
	}
	for i, step := range steps {
		go func() { done <- step() }()
		waitFor(t, 10*time.Second, "request queued", func() bool { return db.QueueLen() == i+1 })
	}
	close(release)
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if st := db.Stats(); st.Commits != 2 {
		t.Fatalf("stats %+v, want the three requests in one commit after the held one", st)
	}
	if f, _ := s.FirstIndex(); f != 2001 {
		t.Fatalf("first index %d, want 2001", f)
	}
	if l, _ := s.LastIndex(); l != 3010 {
		t.Fatalf("last index %d, want 3010", l)
	}
	var got raft.Log
	for i := uint64(1); i <= 3010; i++ {
		err := s.GetLog(i, &got)
		if i <= 2000 && !errors.Is(err, raft.ErrLogNotFound) {
			t.Fatalf("index %d not deleted: %v", i, err)
		}
		if i > 2000 && (err != nil || string(got.Data) != fmt.Sprint(i)) {
			t.Fatalf("index %d: %q %v", i, got.Data, err)
		}
	}
}

package relaylog

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// gatedSink is a real file snapshot sink whose writes wait until the test
// opens the gate, so the test holds Persist in the middle of its work.
type gatedSink struct {
	raft.SnapshotSink
	writing chan struct{} // closed at the first write
	gate    chan struct{}
	started bool
}

func (s *gatedSink) Write(p []byte) (int, error) {
	if !s.started {
		s.started = true
		close(s.writing)
		<-s.gate
	}
	return s.SnapshotSink.Write(p)
}

// bigFSM is a shard state machine holding users users, each with a queued
// message, a sender entry, a last connection time and a read mark.
func bigFSM(tb testing.TB, users int) (*fsm, uint64) {
	f := newFSM(0, 1, nil)
	idx := uint64(0)
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	cmds := make([]*command, 0, 1024)
	apply := func() {
		idx++
		for _, r := range f.ApplyBatch([]*raft.Log{{Index: idx, Type: raft.LogCommand, Data: encodeEntry(nil, cmds)}}) {
			for _, res := range r.([]result) {
				if res.err != nil {
					tb.Fatal(res.err)
				}
			}
		}
		cmds = cmds[:0]
	}
	for u := int64(1); u <= int64(users); u++ {
		cmds = append(cmds,
			&command{kind: cmdSend, id: minIDAt(at), user: u, from: int64(users) + 1 - u, reqID: u, content: "hello there", createdAt: at.Format(time.RFC3339Nano)},
			&command{kind: cmdLastConnected, user: u, at: at.UnixMilli()})
		if len(cmds) >= 1000 {
			apply()
		}
	}
	apply()
	return f, idx
}

// TestSnapshotDoesNotBlockApplies: while a snapshot of a shard with a
// million users is being persisted (held mid-write), applies go on and
// change the live state but not the snapshot.
func TestSnapshotDoesNotBlockApplies(t *testing.T) {
	users := 1_000_000
	if testing.Short() {
		users = 100_000
	}
	f, idx := bigFSM(t, users)
	store, err := raft.NewFileSnapshotStore(t.TempDir(), 1, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Now()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Snapshot() of %d users held the lock %v", users, time.Since(took))
	sink, err := store.Create(raft.SnapshotVersionMax, idx, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	gs := &gatedSink{SnapshotSink: sink, writing: make(chan struct{}), gate: make(chan struct{})}
	persisted := make(chan error, 1)
	go func() { persisted <- snap.Persist(gs) }()
	<-gs.writing

	// Persist is stopped inside its first write. Applies still run.
	var worst time.Duration
	at := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 20; i++ {
		start := time.Now()
		idx++
		u := int64(users + 10 + i)
		out := f.ApplyBatch([]*raft.Log{{Index: idx, Type: raft.LogCommand, Data: encodeEntry(nil, []*command{
			{kind: cmdSend, id: minIDAt(time.Now()), user: u, from: 7, reqID: u, content: "during", createdAt: at.Add(time.Duration(i) * time.Millisecond).Format(time.RFC3339Nano)},
			{kind: cmdAck, user: 1, upTo: 1 << 52},
		})}})
		if res := out[0].([]result); res[0].err != nil || !res[0].created {
			t.Fatalf("apply during Persist: %+v (%v)", res[0], res[0].err)
		}
		worst = max(worst, time.Since(start))
	}
	select {
	case err := <-persisted:
		t.Fatalf("Persist ended before the gate opened: %v", err)
	default:
	}
	t.Logf("20 applies while Persist was held: slowest %v", worst)
	close(gs.gate)
	if err := <-persisted; err != nil {
		t.Fatal(err)
	}
	snap.Release()

	// The snapshot has the state as of Snapshot(); the live state has the
	// applies made during Persist, also after the deltas were folded in.
	if got := f.depth(1); got != 0 {
		t.Fatalf("user 1's queue after the ack during Persist: %d", got)
	}
	if got := f.depth(int64(users + 10)); got != 1 {
		t.Fatalf("send during Persist: depth %d", got)
	}
	_, rc, err := store.Open(sink.ID())
	if err != nil {
		t.Fatal(err)
	}
	g := newFSM(0, 1, nil)
	took = time.Now()
	if err := g.Restore(rc); err != nil {
		t.Fatal(err)
	}
	t.Logf("restore of %d users: %v", users, time.Since(took))
	if got := g.depth(1); got != 1 {
		t.Fatalf("restored user 1 has %d messages, want the 1 of the snapshot", got)
	}
	if got := g.depth(int64(users + 10)); got != 0 {
		t.Fatalf("restored state has a send made after the snapshot")
	}
	if z := g.sizes(); z.Queues != users || z.LastConnected != users || z.Senders != users {
		t.Fatalf("restored sizes %+v", z)
	}
}

// BenchmarkSnapshotRestore measures, per state size, how long Snapshot()
// holds the lock, the snapshot's bytes per user, and the restore time.
//
//	go test -tags hashicorpmetrics -run XXX -bench SnapshotRestore -benchtime 1x ./relaylog/
func BenchmarkSnapshotRestore(b *testing.B) {
	for _, users := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("users=%d", users), func(b *testing.B) {
			f, _ := bigFSM(b, users)
			for b.Loop() {
				start := time.Now()
				snap, _ := f.Snapshot()
				locked := time.Since(start)
				var sink countingSink
				pr, pw := io.Pipe()
				done := make(chan error, 1)
				g := newFSM(0, 1, nil)
				go func() { done <- g.Restore(pr) }()
				start = time.Now()
				if err := snap.Persist(&teeSink{countingSink: &sink, w: pw}); err != nil {
					b.Fatal(err)
				}
				pw.Close()
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				total := time.Since(start)
				snap.Release()
				b.ReportMetric(float64(locked.Microseconds()), "lock-µs")
				b.ReportMetric(float64(sink.n)/float64(users), "snapB/user")
				b.ReportMetric(total.Seconds(), "persist+restore-s")
			}
		})
	}
}

type teeSink struct {
	*countingSink
	w io.Writer
}

func (s *teeSink) Write(p []byte) (int, error) {
	s.countingSink.Write(p)
	return s.w.Write(p)
}

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

// TestChangesDuringASnapshotStayOutOfIt: a user's full contact list and a
// sender's full idempotency records are changed in place between
// snapshots; sends made while a snapshot is taken (before Persist writes)
// must leave the snapshot as it was at Snapshot(), and those made after
// Release must change the live state.
func TestChangesDuringASnapshotStayOutOfIt(t *testing.T) {
	f := newFSM(0, 1, nil)
	idx := uint64(0)
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	next := 0
	send := func(user, from, reqID int64) result {
		t.Helper()
		next++
		idx++
		c := &command{kind: cmdSend, id: minIDAt(at.Add(time.Duration(next) * time.Millisecond)), user: user, from: from, reqID: reqID,
			content: "hi", createdAt: at.Add(time.Duration(next) * time.Millisecond).Format(time.RFC3339Nano)}
		out := f.ApplyBatch([]*raft.Log{{Index: idx, Type: raft.LogCommand, Data: encodeEntry(nil, []*command{c})}})
		res := out[0].([]result)[0]
		if res.err != nil {
			t.Fatal(res.err)
		}
		return res
	}
	const reader, writer = 1, 2
	// The reader's list fills with MaxPairsPerUser senders; the writer's
	// records with IdempotencyPerSender requests to user 3.
	for s := int64(100); s < 100+MaxPairsPerUser; s++ {
		send(reader, s, 1)
	}
	var ids []int64
	for r := int64(1); r <= IdempotencyPerSender; r++ {
		ids = append(ids, send(3, writer, r).ev.ID)
	}
	before := func(g *fsm) {
		t.Helper()
		if n := g.contacts.len(); n != MaxPairsPerUser+1 {
			t.Fatalf("contacts: %d pairs, want %d", n, MaxPairsPerUser+1)
		}
		for s := int64(100); s < 100+MaxPairsPerUser; s++ {
			if _, ok := g.contacts.get(reader, s); !ok {
				t.Fatalf("sender %d is missing from the reader's contacts", s)
			}
		}
		sd, _ := g.senders.get(writer)
		if len(sd.recs) != IdempotencyPerSender || sd.recs[0].id != ids[0] || sd.recs[len(sd.recs)-1].id != ids[len(ids)-1] {
			t.Fatalf("writer's records %+v, want ids %v", sd.recs, ids)
		}
	}
	before(f)

	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// While frozen: a new sender pushes the reader's oldest out, and the
	// writer's oldest record goes.
	send(reader, 500, 1)
	send(3, writer, 100)
	store, err := raft.NewFileSnapshotStore(t.TempDir(), 1, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	sink, err := store.Create(raft.SnapshotVersionMax, idx, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	// After Release the lists are the live state's own again.
	send(reader, 501, 1)
	send(3, writer, 101)
	if _, ok := f.contacts.get(reader, 500); !ok {
		t.Fatal("the send during the snapshot is missing from the live contacts")
	}
	if _, ok := f.contacts.get(reader, 501); !ok {
		t.Fatal("the send after the snapshot is missing from the live contacts")
	}
	if _, ok := f.contacts.get(reader, 101); ok {
		t.Fatal("the reader's second-oldest contact was kept past the cap")
	}
	if sd, _ := f.senders.get(writer); len(sd.recs) != IdempotencyPerSender || sd.recs[len(sd.recs)-1].reqID != 101 || sd.recs[len(sd.recs)-2].reqID != 100 {
		t.Fatalf("live records %+v", sd.recs)
	}

	_, rc, err := store.Open(sink.ID())
	if err != nil {
		t.Fatal(err)
	}
	g := newFSM(0, 1, nil)
	if err := g.Restore(rc); err != nil {
		t.Fatal(err)
	}
	before(g)
}

package relaylog_test

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/relaylog/walstore"
)

// recordingFSM keeps what raft applied, by index.
type recordingFSM struct {
	mu      sync.Mutex
	applied map[uint64]string
	last    uint64
}

func (f *recordingFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied[l.Index] = string(l.Data)
	f.last = l.Index
	return nil
}

func (f *recordingFSM) lastApplied() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

func (f *recordingFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, errors.New("no snapshots") }
func (f *recordingFSM) Restore(io.ReadCloser) error         { return errors.New("no snapshots") }

// handPeer answers node A's RPCs as a voter would: it grants votes and
// accepts entries until A is "frozen"; from then on it leaves A's entries
// unanswered (a peer that has moved on to a newer leader and whose answers
// have not arrived yet).
func handPeer(name string, tr *raft.NetworkTransport, frozen *atomic.Bool) {
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(name), Addr: []byte(tr.LocalAddr())}
	for rpc := range tr.Consumer() {
		switch req := rpc.Command.(type) {
		case *raft.RequestPreVoteRequest:
			rpc.Respond(&raft.RequestPreVoteResponse{RPCHeader: hdr, Term: req.Term, Granted: true}, nil)
		case *raft.RequestVoteRequest:
			rpc.Respond(&raft.RequestVoteResponse{RPCHeader: hdr, Term: req.Term, Granted: true}, nil)
		case *raft.AppendEntriesRequest:
			if frozen.Load() {
				continue
			}
			last := req.PrevLogEntry
			if n := len(req.Entries); n > 0 {
				last = req.Entries[n-1].Index
			}
			rpc.Respond(&raft.AppendEntriesResponse{RPCHeader: hdr, Term: req.Term, LastLog: last, Success: true}, nil)
		default:
			rpc.Respond(nil, fmt.Errorf("unexpected %T", req))
		}
	}
}

// TestWokenLeaderDoesNotCommitItsStaleProposal replays what a leader sees
// when it wakes from a pause longer than the election timeout (the e2e
// SIGSTOP fault): the first thing to reach it is the heartbeat of the leader
// elected meanwhile, then a request that was waiting for it is proposed,
// then the new leader's entries arrive. The woken node must not apply its
// own proposal in place of the new leader's entry at that index: with raft's
// heartbeat fast path it did (hashicorp/raft#695), and its state machine
// then held a message no other replica had.
func TestWokenLeaderDoesNotCommitItsStaleProposal(t *testing.T) {
	db, err := walstore.Open(walstore.Options{Path: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store := db.Shard(0)
	logs, err := raft.NewLogCache(1024, store)
	if err != nil {
		t.Fatal(err)
	}
	newTCP := func() *raft.NetworkTransport {
		tr, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, 10*time.Second, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tr.Close() })
		return tr
	}
	ta, tb, tc := newTCP(), newTCP(), newTCP()
	var frozen atomic.Bool
	go handPeer("B", tb, &frozen)
	go handPeer("C", tc, &frozen)

	cfg := raft.DefaultConfig()
	cfg.LocalID = "A"
	cfg.HeartbeatTimeout = 500 * time.Millisecond
	cfg.ElectionTimeout = 500 * time.Millisecond
	cfg.LeaderLeaseTimeout = 500 * time.Millisecond
	cfg.BatchApplyCh = true
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft-A", Level: hclog.Error, Output: io.Discard})
	trans := relaylog.SerialHeartbeats(ta)
	conf := raft.Configuration{Servers: []raft.Server{
		{Suffrage: raft.Voter, ID: "A", Address: ta.LocalAddr()},
		{Suffrage: raft.Voter, ID: "B", Address: tb.LocalAddr()},
		{Suffrage: raft.Voter, ID: "C", Address: tc.LocalAddr()},
	}}
	snaps := raft.NewInmemSnapshotStore()
	if err := raft.BootstrapCluster(cfg, logs, store, snaps, trans, conf); err != nil {
		t.Fatal(err)
	}
	fsm := &recordingFSM{applied: map[uint64]string{}}
	r, err := raft.NewRaft(cfg, fsm, logs, store, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Shutdown().Error() })

	waitCond(t, "A to become leader", func() bool { return r.State() == raft.Leader })
	for i := 0; i < 3; i++ {
		if err := r.Apply([]byte(fmt.Sprintf("before-%d", i)), 5*time.Second).Error(); err != nil {
			t.Fatal(err)
		}
	}
	k := r.LastIndex()
	term := r.CurrentTerm()

	// A "wakes up": B has led term+1 meanwhile; its heartbeat arrives first.
	frozen.Store(true)
	var hb raft.AppendEntriesResponse
	if err := tb.AppendEntries("A", ta.LocalAddr(), &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("B"), Addr: []byte(tb.LocalAddr())},
		Term:      term + 1,
	}, &hb); err != nil {
		t.Fatal(err)
	}
	// A request that waited for A is proposed. A no longer leads: the
	// proposal must fail, not wait in A's log.
	stale := r.Apply([]byte("stale proposal"), 0)
	staleErr := make(chan error, 1)
	go func() { staleErr <- stale.Error() }()
	select {
	case err := <-staleErr:
		if !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, raft.ErrLeadershipLost) {
			t.Errorf("stale proposal: %v; want ErrNotLeader or ErrLeadershipLost", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("the woken node's proposal is still pending 20s after the new leader's heartbeat")
	}

	// B's own entries of term+1 (its no-op at k+1, then a command), which
	// B committed with C.
	var ae raft.AppendEntriesResponse
	if err := tb.AppendEntries("A", ta.LocalAddr(), &raft.AppendEntriesRequest{
		RPCHeader:    raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("B"), Addr: []byte(tb.LocalAddr())},
		Term:         term + 1,
		PrevLogEntry: k, PrevLogTerm: term,
		Entries: []*raft.Log{
			{Index: k + 1, Term: term + 1, Type: raft.LogNoop},
			{Index: k + 2, Term: term + 1, Type: raft.LogCommand, Data: []byte("committed by B")},
		},
		LeaderCommitIndex: k + 2,
	}, &ae); err != nil {
		t.Fatal(err)
	}
	if !ae.Success {
		t.Fatalf("A rejected the new leader's entries: %+v", ae)
	}
	waitCond(t, fmt.Sprintf("A to apply up to %d", k+2), func() bool { return fsm.lastApplied() >= k+2 })
	fsm.mu.Lock()
	defer fsm.mu.Unlock()
	if got, ok := fsm.applied[k+1]; ok {
		t.Errorf("A applied %q at index %d, where the leader's log holds its no-op: A's state diverged", got, k+1)
	}
	if got := fsm.applied[k+2]; got != "committed by B" {
		t.Errorf("A applied %q at index %d; want the leader's %q", got, k+2, "committed by B")
	}
}

// waitCond polls cond every millisecond for up to 20 s and fails the test
// if it never holds.
func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 20s waiting for %s", what)
		}
	}
}

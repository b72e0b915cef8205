package relaylog

import (
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// SerialHeartbeats returns t with raft's heartbeat fast path turned off, so
// that every AppendEntries, heartbeats included, is handled by raft's main
// goroutine. openShard applies it to every transport.
//
// hashicorp/raft v1.8.0 handles a NetworkTransport heartbeat on the
// connection's goroutine (Raft.processHeartbeat), and a heartbeat carrying a
// newer term sets the term and the follower state there, unseen by a leader
// loop that is still running. A leader woken from a pause (SIGSTOP, a VM
// freeze, a long stall) can then dispatch its next proposal with the new
// leader's term; the new leader's entry at that index has the same term, so
// the follower check takes it for a duplicate and the stale proposal is
// committed and applied on that node only: its state machine diverges
// (hashicorp/raft#695, fix proposed in #701). Through the consumer channel,
// the heartbeat ends the leader loop before any later proposal is
// dispatched. The cost is that a follower answers heartbeats between its
// disk writes rather than beside them; with the shared WAL's millisecond
// fsyncs that is far below the 500 ms heartbeat timeout.
func SerialHeartbeats(t raft.Transport) raft.Transport {
	if nt, ok := t.(*raft.NetworkTransport); ok {
		return serialHeartbeats{NetworkTransport: nt}
	}
	return t // other transports (InmemTransport) have no fast path
}

// serialHeartbeats keeps every method of the NetworkTransport (and with them
// the optional interfaces raft looks for: WithClose, WithPreVote) but
// ignores the heartbeat handler. With beats set, the heartbeats the shard
// sends go in the node's batches (hbbatch.go).
type serialHeartbeats struct {
	*raft.NetworkTransport
	shard int
	beats *hbSender
}

func (serialHeartbeats) SetHeartbeatHandler(func(raft.RPC)) {}

// AppendEntries sends a heartbeat in the batch to its node when it can,
// and everything else (and a heartbeat the batch path cannot take) as
// raft's own RPC.
func (t serialHeartbeats) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if t.beats != nil && isHeartbeat(args) {
		if err := t.beats.beat(t.shard, target, args, resp); !errors.Is(err, errHBDown) {
			return err
		}
		t.beats.direct.Add(1)
	}
	return t.NetworkTransport.AppendEntries(id, target, args, resp)
}

// guardVotes returns t (the transport SerialHeartbeats made) with every
// RequestVote and RequestPreVote answered "not granted" while blank()
// holds: this node's raft instance of the shard has no configuration at
// all, because its data dir is new (a lost volume, a wiped node) and it has
// received neither a snapshot nor a log entry from a leader.
//
// hashicorp/raft grants votes with an empty configuration (it takes the
// request for a bootstrap). A node that lost its data and came back under
// its old server id is still a voter in the others' configuration, and its
// vote would let a candidate that lacks committed entries win: entries
// acknowledged by the old copy and one other voter, whose holder is then
// down, would be lost. Refused while blank, the node can vote again only
// after a leader has sent it the shard's state (a snapshot or the log),
// which includes everything committed. A legitimate new replica never needs
// to vote while blank: placement adds nodes as non-voters and promotes them
// once they have caught up.
func guardVotes(t raft.Transport, blank func() bool) raft.Transport {
	sh, ok := t.(serialHeartbeats)
	if !ok {
		return t // InmemTransport (tests of one shard) has no such node
	}
	g := &voteGuard{serialHeartbeats: sh, blank: blank, ch: make(chan raft.RPC), done: make(chan struct{})}
	go g.run()
	return g
}

type voteGuard struct {
	serialHeartbeats
	blank func() bool
	ch    chan raft.RPC
	done  chan struct{}
	once  sync.Once
}

func (g *voteGuard) Consumer() <-chan raft.RPC { return g.ch }

func (g *voteGuard) run() {
	in := g.serialHeartbeats.Consumer()
	for {
		var rpc raft.RPC
		select {
		case <-g.done:
			return
		case rpc = <-in:
		}
		switch req := rpc.Command.(type) {
		case *raft.RequestVoteRequest:
			if g.blank() {
				rpc.Respond(&raft.RequestVoteResponse{RPCHeader: req.RPCHeader, Term: req.Term, Granted: false}, nil)
				continue
			}
		case *raft.RequestPreVoteRequest:
			if g.blank() {
				rpc.Respond(&raft.RequestPreVoteResponse{RPCHeader: req.RPCHeader, Term: req.Term, Granted: false}, nil)
				continue
			}
		}
		select {
		case g.ch <- rpc:
		case <-g.done:
			return
		}
	}
}

// timeoutNow hands raft a TimeoutNow, which makes a follower stand for
// election at once (stand.go), and reports whether raft took it; raft's
// answer is not needed.
func (g *voteGuard) timeoutNow() bool {
	rpc := raft.RPC{
		Command:  &raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax}},
		RespChan: make(chan raft.RPCResponse, 1),
	}
	t := time.NewTimer(time.Second) // raft busy: the next tick tries again
	defer t.Stop()
	select {
	case g.ch <- rpc:
		return true
	case <-g.done:
	case <-t.C:
	}
	return false
}

// Close stops the guard and closes the transport.
func (g *voteGuard) Close() error {
	g.once.Do(func() { close(g.done) })
	return g.serialHeartbeats.Close()
}

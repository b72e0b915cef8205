package relaylog

import "github.com/hashicorp/raft"

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
		return serialHeartbeats{nt}
	}
	return t // other transports (InmemTransport) have no fast path
}

// serialHeartbeats keeps every method of the NetworkTransport (and with them
// the optional interfaces raft looks for: WithClose, WithPreVote) but
// ignores the heartbeat handler.
type serialHeartbeats struct{ *raft.NetworkTransport }

func (serialHeartbeats) SetHeartbeatHandler(func(raft.RPC)) {}

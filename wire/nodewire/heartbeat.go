package nodewire

import "github.com/edgenode/edgenode/internal/varint"

// Coalesced raft heartbeats (mesh KindHeartbeat streams): a node sends the
// heartbeats of all its shards' leaders to one follower node together, a
// HeartbeatBatch per flush, and the follower answers each heartbeat on
// its own (HeartbeatAnswer) as soon as that shard's raft has. An empty
// batch is a node beat, answered at once with ID 0 (relaylog/hbbatch.go).

// MaxHeartbeatsPerBatch bounds a batch (one heartbeat per shard and
// follower is the most a flush holds).
const MaxHeartbeatsPerBatch = 4096

// Heartbeat is one shard's raft heartbeat (hashicorp/raft's
// AppendEntriesRequest without entries).
type Heartbeat struct {
	ID    uint64 // the sender's, echoed in the answer
	Shard int
	// To is the incarnation of the follower's raft data addressed
	// (RaftAddress); the follower refuses another one.
	To              string
	ProtocolVersion int
	HeaderID        []byte // raft's RPCHeader.ID and Addr: the leader's
	HeaderAddr      []byte
	Term            uint64
}

// HeartbeatBatch is the heartbeats one flush sends to one node.
type HeartbeatBatch struct {
	Beats []Heartbeat
}

// HeartbeatAnswer answers the heartbeat ID: the follower's
// AppendEntriesResponse, or Err when the heartbeat did not reach its
// raft (a shard out of range, another incarnation, a shut down shard).
type HeartbeatAnswer struct {
	ID              uint64
	Err             string
	ProtocolVersion int
	HeaderID        []byte
	HeaderAddr      []byte
	Term            uint64
	LastLog         uint64
	Success         bool
	NoRetryBackoff  bool
}

func appendHeartbeatBatch(b []byte, f *HeartbeatBatch) []byte {
	e := varint.Encoder{B: append(b, nodeBinaryTag, 'h')}
	e.Uvarint(uint64(len(f.Beats)))
	for i := range f.Beats {
		h := &f.Beats[i]
		e.Uvarint(h.ID)
		e.Varint(int64(h.Shard))
		e.Str(h.To)
		e.Varint(int64(h.ProtocolVersion))
		e.NilBytes(h.HeaderID)
		e.NilBytes(h.HeaderAddr)
		e.Uvarint(h.Term)
	}
	return e.B
}

func decodeHeartbeatBatch(b []byte, f *HeartbeatBatch) error {
	d := newDec(b)
	n := d.Count(7) // the fewest bytes a heartbeat takes
	if n > MaxHeartbeatsPerBatch {
		d.Fail()
		n = 0
	}
	f.Beats = make([]Heartbeat, 0, n)
	for range n {
		var h Heartbeat
		h.ID = d.Uvarint()
		h.Shard = int(d.Varint())
		h.To = d.Str()
		h.ProtocolVersion = int(d.Varint())
		h.HeaderID, _ = d.NilBytes()
		h.HeaderAddr, _ = d.NilBytes()
		h.Term = d.Uvarint()
		f.Beats = append(f.Beats, h)
	}
	return d.End()
}

func appendHeartbeatAnswer(b []byte, a *HeartbeatAnswer) []byte {
	e := varint.Encoder{B: append(b, nodeBinaryTag, 'a')}
	e.Uvarint(a.ID)
	e.Str(a.Err)
	e.Varint(int64(a.ProtocolVersion))
	e.NilBytes(a.HeaderID)
	e.NilBytes(a.HeaderAddr)
	e.Uvarint(a.Term)
	e.Uvarint(a.LastLog)
	e.Bool(a.Success)
	e.Bool(a.NoRetryBackoff)
	return e.B
}

func decodeHeartbeatAnswer(b []byte, a *HeartbeatAnswer) error {
	d := newDec(b)
	*a = HeartbeatAnswer{ID: d.Uvarint(), Err: d.Str(), ProtocolVersion: int(d.Varint())}
	a.HeaderID, _ = d.NilBytes()
	a.HeaderAddr, _ = d.NilBytes()
	a.Term = d.Uvarint()
	a.LastLog = d.Uvarint()
	a.Success = d.Bool()
	a.NoRetryBackoff = d.Bool()
	return d.End()
}

package relaylog

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Message and receipt ids (see the package comment for the layout).
const (
	// IDEpochMs is 2026-01-01T00:00:00Z in Unix milliseconds.
	IDEpochMs = 1767225600000
	idLowBits = 12 // sequence and shard bits under the millisecond
	// MaxShards is the largest shard count the id layout supports.
	MaxShards = 256
)

// shardBits is how many of the low 12 bits a cluster of n shards needs.
func shardBits(n int) uint {
	if n <= 1 {
		return 0
	}
	return uint(bits.Len(uint(n - 1)))
}

// IDTime is the commit time encoded in an id, to the millisecond.
func IDTime(id int64) time.Time {
	return time.UnixMilli(IDEpochMs + id>>idLowBits)
}

// IDShard is the shard that assigned id, given the cluster's shard count.
func IDShard(id int64, shards int) int {
	b := shardBits(shards)
	return int(id & (1<<b - 1))
}

// minIDAt is the smallest id that can carry time t; every id assigned at t
// or later is at least this.
func minIDAt(t time.Time) int64 {
	ms := t.UnixMilli() - IDEpochMs
	if ms < 0 {
		ms = 0
	}
	return ms << idLowBits
}

// idGen hands out ids for every shard led by this node. It is one clock for
// the whole node, so an id assigned after another on this node is larger
// whatever their shards: a reply proposed after the message it answers was
// committed sorts after it.
type idGen struct {
	shardBits uint
	seqBits   uint
	now       func() time.Time
	last      atomic.Int64 // last (ms<<seqBits | seq) handed out
}

func newIDGen(shards int, now func() time.Time) *idGen {
	b := shardBits(shards)
	return &idGen{shardBits: b, seqBits: idLowBits - b, now: now}
}

// next returns a fresh id for shard: the current millisecond with the next
// free sequence number. When more ids are needed in one millisecond than the
// sequence holds, the generator borrows the following millisecond, so ids
// stay unique and increasing and run ahead of the wall clock only while the
// node sustains more than 2^seqBits ids per millisecond.
func (g *idGen) next(shard int) int64 {
	ms := g.now().UnixMilli() - IDEpochMs
	if ms < 0 {
		ms = 0
	}
	floor := ms << g.seqBits
	for {
		last := g.last.Load()
		n := last + 1
		if n < floor {
			n = floor
		}
		if g.last.CompareAndSwap(last, n) {
			return n<<g.shardBits | int64(shard)
		}
	}
}

// observe makes every later id larger than id (after a restart or a
// leadership change onto a node whose clock is behind).
func (g *idGen) observe(id int64) {
	v := id >> g.shardBits
	for {
		last := g.last.Load()
		if last >= v || g.last.CompareAndSwap(last, v) {
			return
		}
	}
}

package cluster

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgenode/edgenode/cluster/member"
	"github.com/edgenode/edgenode/wire/nodewire"
)

// The drain part: a stopping node hands its shards' leadership away, and
// every node remembers which nodes announced their shutdown (placement
// hands them no leadership). It knows raft as shardConfigs, membership as
// drainMembers, the other nodes through a Transport.

// drainMembers is what drain needs of the membership.
type drainMembers interface {
	Alive() []member.Member
	// Boot is the boot id node gossips (a new one after each start).
	Boot(node string) (string, bool)
}

type drainer struct {
	self      string
	log       shardConfigs
	members   drainMembers
	transport Transport
	logger    *slog.Logger

	mu    sync.Mutex
	marks map[string]drainMark // nodes that announced their shutdown
}

// mark records that node announced its shutdown (OpDraining).
func (c *drainer) mark(node string) {
	boot, _ := c.members.Boot(node)
	c.mu.Lock()
	if c.marks == nil {
		c.marks = make(map[string]drainMark)
	}
	c.marks[node] = drainMark{at: time.Now(), boot: boot}
	c.mu.Unlock()
}

// drain hands the leadership of every shard this node leads to another
// voter, so that a stopping node's shards keep taking writes. It first tells
// every member, so that their placement does not hand a shard straight back
// (gossip's "left" arrives too late for that), then repeats the transfers
// until this node leads nothing or ctx ends.
func (c *drainer) drain(ctx context.Context) {
	var wg sync.WaitGroup
	for _, m := range c.members.Alive() {
		if m.NodeID == c.self {
			continue
		}
		wg.Add(1)
		go func(node string) {
			defer wg.Done()
			actx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			_, _ = c.transport.Call(actx, node, 0, &nodewire.CallRequest{Op: nodewire.OpDraining})
		}(m.NodeID)
	}
	wg.Wait()
	// Bounded whatever ctx says: with no other voter alive there is nobody
	// to hand a shard to, and a stopping node must still stop.
	deadline := time.Now().Add(drainLimit)
	handed := map[int]bool{}
	defer func() { c.awaitNewLeaders(ctx, handed, deadline) }()
	for {
		var leading, moved atomic.Int32
		for shard := 0; shard < c.log.Shards(); shard++ {
			r := c.log.Config(shard)
			if !r.Leading() || len(voters(r)) < 2 {
				continue
			}
			leading.Add(1)
			handed[shard] = true
			wg.Add(1)
			go func(shard int, r shardConfig) {
				defer wg.Done()
				if err := r.TransferLeadership("", ""); err != nil {
					c.logger.Warn("leadership transfer failed", "shard", shard, "err", err)
					return
				}
				moved.Add(1)
			}(shard, r)
		}
		wg.Wait()
		if leading.Load() == 0 || moved.Load() == 0 || time.Now().After(deadline) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// drainLimit bounds Drain's repeated transfers.
const drainLimit = 10 * time.Second

// awaitNewLeaders waits until every shard in handed names a leader other
// than this node, at most newLeaderWait (and not past deadline or ctx). A
// transfer ends when the chosen voter starts its election, not when it has
// won: it still needs a vote, and this node, which grants it at once, must
// not stop before then. Without the wait, a voter whose way to the third
// node failed (a stale stream after that node's restart, in a rolling
// restart) lost the election and the shard had no leader for an election
// timeout.
func (c *drainer) awaitNewLeaders(ctx context.Context, handed map[int]bool, deadline time.Time) {
	if len(handed) == 0 {
		return
	}
	if d := time.Now().Add(newLeaderWait); d.Before(deadline) {
		deadline = d
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		waiting := 0
		for shard := range handed {
			if l := c.log.Leader(shard); l == "" || l == c.self {
				waiting++
			}
		}
		if waiting == 0 {
			return
		}
		if time.Now().After(deadline) {
			c.logger.Warn("drain: shards still without a new leader", "shards", waiting)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// newLeaderWait bounds awaitNewLeaders: a few election rounds.
const newLeaderWait = 3 * time.Second

func (c *drainer) isDraining(node string) bool {
	c.mu.Lock()
	d, ok := c.marks[node]
	c.mu.Unlock()
	if !ok || time.Since(d.at) >= time.Minute {
		return false
	}
	// A node that announced its shutdown and has started again since (a
	// rolling restart: it gossips a new boot id) may lead again at once
	// rather than when the mark expires.
	if boot, ok := c.members.Boot(node); ok && d.boot != "" && boot != d.boot {
		return false
	}
	return true
}

// drainMark is a node's announcement that it is shutting down.
type drainMark struct {
	at   time.Time
	boot string // the boot id it gossiped then
}

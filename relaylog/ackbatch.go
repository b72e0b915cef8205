package relaylog

import (
	"context"
	"sync"
	"time"
)

// Batched acknowledgements. Most acknowledgements raise no DELIVERED
// receipt: a device acknowledging receipts, its own sent copies, or
// messages another device of the user took first. Committing each at once
// cost a raft entry of its own per event and per device (measured: 8 raft
// entries per message between users with two devices, against 4 with one).
// Such an acknowledgement only moves a cursor, which may wait: the leader
// keeps the newest one per (user, device) for Options.AckBatch, then
// proposes them together, so that they share one entry and a device's
// later ones replace its earlier ones.
//
// What waits is not durable: a leader that dies or loses an election
// before the batch commits loses it, and those events come again
// (delivery is at least once; clients drop events they have by id). A
// leader that hands its leadership over commits the batch first
// (FlushAcks, called by the cluster's placement and drain). While it waits, the
// leader answers a reader's Attach with the newer cursor, so a socket that
// reconnects to the same leader does not get them again. Acknowledgements
// that raise receipts, and everything else, commit before they answer.
// DefaultAckBatch is what a node uses for Options.AckBatch: well under
// push's debounce (1 s), which reads the cursors.
const DefaultAckBatch = 100 * time.Millisecond

type ackBatch struct {
	s     *shard
	delay time.Duration

	mu      sync.Mutex
	waiting map[ackKey]command
	timer   *time.Timer
	wg      sync.WaitGroup // flushes in flight
}

type ackKey struct {
	user int64
	dev  string
	kind cmdKind
}

// add keeps c (cmdAck or cmdAckDevice) for the next batch, unless one of
// the same device covers more already.
func (b *ackBatch) add(c command) {
	k := ackKey{c.user, c.dev, c.kind}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.waiting == nil {
		b.waiting = make(map[ackKey]command)
	}
	if old, ok := b.waiting[k]; ok && old.upTo >= c.upTo {
		return
	}
	b.waiting[k] = c
	if b.timer == nil {
		b.timer = time.AfterFunc(b.delay, b.flush)
	}
}

// pending is the newest cursor waiting for dev of user (0: none).
func (b *ackBatch) pending(user int64, dev string) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c, ok := b.waiting[ackKey{user, dev, cmdAckDevice}]; ok {
		return c.upTo
	}
	return 0
}

// take empties the batch.
func (b *ackBatch) take() map[ackKey]command {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.waiting
	b.waiting = nil
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	return m
}

// flush proposes what waits, all at once (they join one entry), and
// waits for the commit in the background.
func (b *ackBatch) flush() {
	m := b.take()
	if len(m) == 0 {
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.propose(context.Background(), m)
	}()
}

func (b *ackBatch) propose(ctx context.Context, m map[ackKey]command) {
	ps := make([]*proposal, 0, len(m))
	for _, c := range m {
		p, err := b.s.submit(ctx, c)
		if err != nil {
			// Not the leader any more, or closing: the events come again.
			b.s.log.opts.Logger.Debug("batched acknowledgements dropped", "shard", b.s.id, "n", len(m), "err", err)
			break
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		p.wait()
	}
}

// FlushAcks commits the acknowledgements waiting in shard's batch, within
// 2 s: call it before handing the shard's leadership to another node,
// which would not have them.
func (l *Log) FlushAcks(shard int) {
	if shard < 0 || shard >= len(l.shards) {
		return
	}
	b := &l.shards[shard].acks
	if m := b.take(); len(m) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		b.propose(ctx, m)
		cancel()
	}
}

// close commits what waits, within timeout, before the shard stops (a
// node shutting down loses none of them while it still leads).
func (b *ackBatch) close(timeout time.Duration) {
	if m := b.take(); len(m) > 0 && b.s.serving.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		b.propose(ctx, m)
		cancel()
	}
	b.wg.Wait()
}

package cluster

import (
	"context"
	"sync"

	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire/nodewire"
)

// Batched acknowledgements between nodes. Forwarded one call each, a
// socket's acks were about two in five of the calls between nodes for
// users with two devices (2.1 of 5.5 per send, scripts/cost.sh 300). An
// edge sends them to each leader node in one ack_devices call at a time:
// an ack goes out at once when no call to that node is in progress, and
// acks that come meanwhile wait for it to return and go together in the
// next. Nothing waits on a timer, and at low rates every ack still
// travels alone at once. The leader answers each ack once it checked it
// and commits it after (ackDevices), including an ack that raises
// DELIVERED receipts (of a message no other device of the user had
// acknowledged), whose receipts it commits first as AckDeviceVia does:
// waiting for those two commits would hold every ack behind it in the
// call, and the socket's next acks.

// ackBatcher holds, per leader node, the acks waiting for its next call.
type ackBatcher struct {
	routing *routing
	mu      sync.Mutex
	peers   map[string]*peerAcks
}

type peerAcks struct {
	busy    bool       // a call to the node is in progress
	waiting []*ackWait // acks for the next call
}

// ackWait is one acknowledgement waiting for its answer.
type ackWait struct {
	ack   nodewire.DeviceAck
	shard int
	done  chan string // the answer's code: "" done, else a failure code or errBatchFailed
}

// errBatchFailed answers every ack of a call that got no answer.
const errBatchFailed = "batch_failed"

// maxAckBatch bounds the acks of one call.
const maxAckBatch = 512

func newAckBatcher(r *routing) *ackBatcher {
	return &ackBatcher{routing: r, peers: make(map[string]*peerAcks)}
}

// ack sends a with the other acks for node and returns the answer's code.
// The ack that finds no call to node in progress makes the call itself,
// on its own goroutine (nothing is handed over at low rates); acks that
// came meanwhile go in the next call, made by a goroutine of their own.
func (b *ackBatcher) ack(ctx context.Context, node string, shard int, a nodewire.DeviceAck) string {
	w := &ackWait{ack: a, shard: shard, done: make(chan string, 1)}
	b.mu.Lock()
	p := b.peers[node]
	if p == nil {
		p = &peerAcks{}
		b.peers[node] = p
	}
	p.waiting = append(p.waiting, w)
	if !p.busy {
		p.busy = true
		batch := b.take(p)
		b.mu.Unlock()
		b.call(node, batch)
		b.mu.Lock()
		if len(p.waiting) > 0 {
			go b.run(node, p)
		} else {
			b.idle(node, p)
		}
	}
	b.mu.Unlock()
	select {
	case code := <-w.done:
		return code
	case <-ctx.Done():
		return errBatchFailed // it may still be sent: acks are safe to repeat
	}
}

// take removes the next call's acks from p.waiting; b.mu is held.
func (b *ackBatcher) take(p *peerAcks) []*ackWait {
	batch := p.waiting
	if len(batch) > maxAckBatch {
		batch = batch[:maxAckBatch]
	}
	p.waiting = p.waiting[len(batch):]
	return batch
}

// idle forgets p, whose node has no call in progress and nothing
// waiting; b.mu is held.
func (b *ackBatcher) idle(node string, p *peerAcks) {
	p.busy = false
	p.waiting = nil
	if b.peers[node] == p {
		delete(b.peers, node)
	}
}

// run sends node's waiting acks, a call at a time, until none wait.
func (b *ackBatcher) run(node string, p *peerAcks) {
	for {
		b.mu.Lock()
		batch := b.take(p)
		if len(batch) == 0 {
			b.idle(node, p)
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		b.call(node, batch)
	}
}

func (b *ackBatcher) call(node string, batch []*ackWait) {
	req := &nodewire.CallRequest{Op: nodewire.OpAckDevices, Acks: make([]nodewire.DeviceAck, len(batch))}
	for i, w := range batch {
		req.Acks[i] = w.ack
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// attempt abandons the call when gossip calls the node dead or the
	// first ack's shard moves to another leader; the acks then take
	// their own calls.
	resp, err := b.routing.attempt(ctx, node, batch[0].shard, req)
	for i, w := range batch {
		code := errBatchFailed
		if err == nil && resp.Err == "" && len(resp.Codes) == len(batch) {
			code = resp.Codes[i]
		}
		w.done <- code
	}
}

// ackDevices answers an ack_devices call: each ack is checked as
// ack_device would check it (this node serves the user's shard, the
// device is not revoked), answered, and then run in the background. Run
// before answering, an ack waits for any other of its user in progress
// (the log serialises a user's acks), such as one raising a receipt,
// which waits for two commits: every ack of the call, and every later ack
// of the sockets that sent them, would wait for the slowest (estimated:
// about 60-250 ms per call at 1,000 sends/s with two devices per user,
// from the calls' rate with one in flight per node pair). An ack lost
// with this leader only makes its events come again (and their receipts
// wait for the ack that follows), as for the leader's own ack batch.
func (c *Cluster) ackDevices(req *nodewire.CallRequest) *nodewire.CallResponse {
	if len(req.Acks) == 0 || len(req.Acks) > maxAckBatch {
		return &nodewire.CallResponse{Err: nodewire.NodeErrBadRequest}
	}
	resp := &nodewire.CallResponse{Codes: make([]string, len(req.Acks))}
	for i, a := range req.Acks {
		if err := c.log.CheckServing(a.User); err != nil {
			resp.Codes[i] = errorResponse(err).Err
			continue
		}
		if c.log.Revoked(a.User, a.Device) {
			resp.Codes[i] = nodewire.NodeErrRevoked
			continue
		}
		c.applying.add(a, c.applyAck)
	}
	return resp
}

// applyAck applies an acknowledgement answered by ackDevices.
func (c *Cluster) applyAck(a nodewire.DeviceAck) {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.CallTimeout)
	defer cancel()
	if _, err := c.log.AckDeviceVia(ctx, a.User, a.Device, a.UpTo, c.Receipts()); err != nil {
		c.opts.Logger.Debug("batched ack failed", "user", a.User, "device", a.Device, "upTo", a.UpTo, "err", err)
	}
}

// ackApplier applies the acks ackDevices answered, one goroutine per
// device with acks in progress: an ack that comes while an earlier one of
// the same device is being applied (which waits for its receipts' and its
// own commits) only raises the cursor the goroutine applies next, so a
// device's acks of one burst become one command, not one each. It holds
// the devices whose acks are in progress, no more.
type ackApplier struct {
	mu      sync.Mutex
	pending map[ackKey]int64 // device → the highest ack not yet taken by its goroutine (0: none)
}

type ackKey struct {
	user   int64
	device string
}

// add applies a with apply on the device's goroutine, starting it if none
// runs.
func (q *ackApplier) add(a nodewire.DeviceAck, apply func(nodewire.DeviceAck)) {
	k := ackKey{a.User, a.Device}
	q.mu.Lock()
	if up, running := q.pending[k]; running {
		q.pending[k] = max(up, a.UpTo)
		q.mu.Unlock()
		return
	}
	if q.pending == nil {
		q.pending = make(map[ackKey]int64)
	}
	q.pending[k] = 0
	q.mu.Unlock()
	go func() {
		for {
			apply(a)
			q.mu.Lock()
			up := q.pending[k]
			if up <= a.UpTo {
				delete(q.pending, k)
				q.mu.Unlock()
				return
			}
			q.pending[k] = 0
			q.mu.Unlock()
			a.UpTo = up
		}
	}()
}

// AckDeviceBatched implements edge.Store: AckDevice, sharing a call with
// other acks to the same leader node, which answers before it commits
// them (see above). Whatever the batch cannot take (a leader here or
// unknown, a node without FeatureAckBatch, a leader that moved or did not
// answer) goes as AckDevice.
func (r *Router) AckDeviceBatched(ctx context.Context, user int64, dev string, upTo int64) error {
	shard := r.c.log.ShardFor(user)
	if !r.c.log.Serving(shard) {
		if lead := r.c.routing.likelyLeaders(shard); len(lead) > 0 && r.c.features(lead[0])&relaylog.FeatureAckBatch != 0 {
			switch code := r.c.acks.ack(ctx, lead[0], shard, nodewire.DeviceAck{User: user, Device: dev, UpTo: upTo}); code {
			case "":
				return nil
			case nodewire.NodeErrRevoked:
				return relaylog.ErrDeviceRevoked
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	_, err := r.AckDevice(ctx, user, dev, upTo)
	return err
}

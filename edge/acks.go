package edge

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/edgenode/edgenode/relaylog"
)

// The ack committer. An ack frame only raises atomics (clientAck, which the
// window reads, and pendingAck); a task commits pendingAck to the relay log
// in the background, at most one per socket at a time, and acks that arrive
// meanwhile are folded into its next commit. durableAck is what the log
// holds.

// batchedAcker is a Store that can send an ack together with other acks
// to the same leader, which answers before it commits them
// (cluster.Router.AckDeviceBatched).
type batchedAcker interface {
	AckDeviceBatched(ctx context.Context, user int64, dev string, upTo int64) error
}

// ack records the client's acknowledgement and commits it in the
// background: at most one commit per socket runs at a time, and acks that
// arrive meanwhile are folded into the next one.
func (sk *socket) ack(upTo int64) {
	// A client can only acknowledge what this socket sent it; a larger id
	// must not drop events it never saw. Past the last event written come
	// only the device's own copies the writer passed over (flow.go): an
	// ack of everything written covers them. (sent is read first: the
	// writer sets written before sent.)
	sent := sk.sent.Load()
	if upTo > sent || upTo >= sk.written.Load() {
		upTo = sent
	}
	raiseTo(&sk.clientAck, upTo)
	raiseTo(&sk.pendingAck, upTo)
	if sk.blocked.CompareAndSwap(true, false) {
		sk.Notify() // the window was full: pull what waits
	}
	if sk.ackRunning.CompareAndSwap(false, true) {
		runTask(task{sk, taskAck})
	}
}

func raiseTo(v *atomic.Int64, x int64) {
	for {
		cur := v.Load()
		if x <= cur || v.CompareAndSwap(cur, x) {
			return
		}
	}
}

// commitAcks is the ack task: it commits pendingAck until durableAck has
// caught up.
func (sk *socket) commitAcks() {
	s := sk.srv
	for {
		up := sk.pendingAck.Load()
		if up <= sk.durableAck.Load() {
			sk.ackRunning.Store(false)
			// An ack may have arrived between the check and the store.
			if sk.pendingAck.Load() > sk.durableAck.Load() && sk.ackRunning.CompareAndSwap(false, true) {
				continue
			}
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.CallTimeout)
		var err error
		if b, ok := s.log.(batchedAcker); ok {
			err = b.AckDeviceBatched(ctx, sk.user, sk.dev, up)
		} else {
			_, err = s.log.AckDevice(ctx, sk.user, sk.dev, up)
		}
		cancel()
		if errors.Is(err, relaylog.ErrDeviceRevoked) {
			sk.revoked(err)
			sk.ackRunning.Store(false)
			return
		}
		if err != nil {
			// The events stay queued and are sent again on the next
			// connection; tell the client why.
			s.opts.Logger.Warn("ack failed", "user", sk.user, "upTo", up, "err", err)
			sk.sendError(apiError(err))
			sk.ackRunning.Store(false)
			return
		}
		raiseTo(&sk.durableAck, up)
	}
}

package edge

import (
	"context"
	"time"

	"github.com/edgenode/edgenode/relaylog"
)

// Flow control of a socket's queued events: the writer pulls the user's
// queue past the last id it wrote (sent) and writes at most MaxUnacked
// events the client has not acknowledged (the window). A full window sets
// blocked; the ack that opens it (acks.go) pulls again. Everything here runs
// on the writer goroutine, apart from the atomics it reads.

const (
	pageSize  = 256      // events pulled at a time
	batchSize = 64 << 10 // bytes written per system call at most
)

// deliver pulls the user's queue past the last id written and writes
// everything the window allows, a batch of frames per write.
func (sk *socket) deliver(buf []byte) ([]byte, error) {
	s := sk.srv
	if !sk.attached && !sk.attach() {
		sk.retryLater()
		return buf, nil
	}
	for {
		sk.window.popUpTo(sk.clientAck.Load())
		room := sk.window.free()
		if room <= 0 {
			sk.blocked.Store(true) // an ack reopens the window and pulls
			// An ack that came before the flag was set did not pull.
			sk.window.popUpTo(sk.clientAck.Load())
			if sk.window.free() > 0 && sk.blocked.CompareAndSwap(true, false) {
				continue
			}
			return buf, nil
		}
		if room > pageSize {
			room = pageSize
		}
		evs, more, err := s.log.Pending(context.Background(), sk.user, sk.sent.Load(), room)
		if err != nil {
			// The shard is between leaders: try again shortly; the events
			// stay queued meanwhile.
			sk.retryLater()
			return buf, nil
		}
		var full bool
		if buf, full, err = sk.writeEvents(buf[:0], evs); err != nil || full || !more {
			return buf, err
		}
	}
}

// retryLater pulls again shortly (a pull failed: the shard is between
// leaders).
func (sk *socket) retryLater() {
	if sk.retryPending.CompareAndSwap(false, true) {
		time.AfterFunc(250*time.Millisecond, func() {
			sk.retryPending.Store(false)
			sk.Notify()
		})
	}
}

// writeEvents writes the events of evs past the last id written, in order,
// as far as the window allows; full reports that the window stopped it.
func (sk *socket) writeEvents(buf []byte, evs []relaylog.Event) (_ []byte, full bool, _ error) {
	s := sk.srv
	sent := sk.sent.Load()
	for len(evs) > 0 && evs[0].ID <= sent {
		evs = evs[1:]
	}
	sk.window.popUpTo(sk.clientAck.Load())
	if room := sk.window.free(); len(evs) > room {
		evs, full = evs[:max(room, 0)], true
		sk.blocked.Store(true)
	}
	if len(evs) == 0 {
		return buf, full, nil
	}
	if sk.hiddenN.Load() > 0 {
		sk.unhideSenders(evs)
	}
	now := time.Now()
	buf = buf[:0]
	for i := range evs {
		buf = appendEvent(buf, &evs[i])
		sk.window.push(evs[i].ID)
		if evs[i].Kind == relaylog.KindMessage {
			sk.lastMsg.Store(evs[i].ID)
		}
		s.m.deliverySecs.Observe(now.Sub(evs[i].Time()).Seconds())
		if len(buf) >= batchSize || i == len(evs)-1 {
			// sent moves first: the client may acknowledge these events
			// before write returns, and an ack is capped at sent. (If the
			// write fails, the socket closes and no ack comes.)
			sk.sent.Store(evs[i].ID)
			if err := sk.write(buf); err != nil {
				return buf, full, err
			}
			buf = buf[:0]
		}
	}
	s.m.deliveries.WithLabelValues("socket").Add(float64(len(evs)))
	return buf, full, nil
}

// idRing is the window: the ids written and not yet acknowledged, oldest
// first, at most max of them. It allocates only while events are in flight,
// so an idle socket holds nothing.
type idRing struct {
	ids  []int64
	head int
	max  int
}

func (r *idRing) free() int { return r.max - (len(r.ids) - r.head) }

func (r *idRing) push(id int64) { r.ids = append(r.ids, id) }

func (r *idRing) popUpTo(acked int64) {
	for r.head < len(r.ids) && r.ids[r.head] <= acked {
		r.head++
	}
	switch {
	case r.head == len(r.ids):
		r.ids, r.head = nil, 0
	case r.head > 256 && r.head > len(r.ids)/2:
		r.ids = append(r.ids[:0:0], r.ids[r.head:]...)
		r.head = 0
	}
}

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
	var written, own int
	var last int64 // the last event written
	for i := range evs {
		e := &evs[i]
		if e.Kind == relaylog.KindSent && sk.ownCopy(e.UpTo) {
			own++
		} else {
			buf = appendEvent(buf, e)
			sk.window.push(e.ID)
			s.m.deliverySecs.Observe(now.Sub(e.Time()).Seconds())
			written++
			last = e.ID
		}
		if len(buf) >= batchSize || i == len(evs)-1 {
			// sent moves first: the client may acknowledge these events
			// before write returns, and an ack is capped at sent. (If the
			// write fails, the socket closes and no ack comes.) written
			// moves before sent.
			if last > 0 {
				sk.written.Store(last)
			}
			sk.sent.Store(e.ID)
			if len(buf) > 0 {
				if err := sk.write(buf); err != nil {
					return buf, full, err
				}
			}
			buf = buf[:0]
		}
	}
	s.m.deliveries.WithLabelValues("socket").Add(float64(written))
	if own > 0 {
		s.m.deliveries.WithLabelValues("own_copy").Add(float64(own))
	}
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

// The sending device's own copy. A message a user with several devices
// sends is queued for the user too (relaylog.KindSent), so that the other
// devices show it; the device that sent it has it already. When the send
// names its device (Device-Id) and reaches the node that holds that
// device's socket, the node marks the message on the socket before the
// copy is queued, and the writer passes over the copy instead of writing
// it: sent moves past it, written does not, and the client's next ack of
// everything written (acks.go) moves the device's cursor past it too. A
// copy the writer passes over while every event written before it is
// acknowledged waits for the client's next ack, as any event would: the
// queue holds it for this device until then (at most until the retention
// period). A mark the socket never meets (a copy already written, or never
// queued) costs nothing but its slot.

// ownSlots is how many sent messages a socket remembers: a client's sends
// in flight at once through one node. Past that the oldest mark is
// forgotten and its copy written.
const ownSlots = 8

// ownSends is a socket's marks, held only while some are waiting.
type ownSends struct {
	ids  [ownSlots]int64 // message ids; 0: a free slot
	next int             // the slot the next mark takes
	n    int             // marks held
}

// markOwn marks message id as sent by this socket's device: its copy is
// not written here.
func (sk *socket) markOwn(id int64) {
	sk.mu.Lock()
	defer sk.mu.Unlock()
	o := sk.own
	if o == nil {
		o = new(ownSends)
		sk.own = o
	}
	if o.ids[o.next] == 0 {
		o.n++
	}
	o.ids[o.next] = id
	o.next = (o.next + 1) % ownSlots
}

// unmarkOwn forgets the mark of message id (no copy was queued).
func (sk *socket) unmarkOwn(id int64) {
	sk.mu.Lock()
	defer sk.mu.Unlock()
	sk.takeOwnLocked(id)
}

// ownCopy reports whether message id was marked, and forgets the mark.
func (sk *socket) ownCopy(id int64) bool {
	sk.mu.Lock()
	defer sk.mu.Unlock()
	return sk.takeOwnLocked(id)
}

func (sk *socket) takeOwnLocked(id int64) bool {
	o := sk.own
	if o == nil {
		return false
	}
	for i := range o.ids {
		if o.ids[i] == id {
			o.ids[i] = 0
			if o.n--; o.n == 0 {
				sk.own = nil
			}
			return true
		}
	}
	return false
}

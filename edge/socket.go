package edge

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgenode/edgenode/wire"
)

// A socket has two goroutines. The reader owns the connection's read side:
// it decodes client frames and keeps the read deadline (two ping intervals)
// moving. The writer owns the write side: it writes the ready frame, then
// pulls the user's queue from the relay log past the last id it wrote, and
// writes status updates and pings. Nothing is buffered per socket beyond a
// small status channel: a slow socket simply falls behind in the queue, and
// one that cannot take a write within WriteTimeout is closed with its events
// still queued. At most MaxUnacked events are in flight unacknowledged.
type socket struct {
	srv  *Server
	user int64
	conn *websocket.Conn

	notify chan struct{}           // queue has new events, or acks moved the window
	status chan wire.ContactStatus // contact_status_update and error frames to write
	errs   chan *wire.Error
	watch  chan []wire.ContactStatus // answers to watch frames, written in one go
	pongs  chan string               // client pings to answer
	done   chan struct{}
	once   sync.Once

	sent       atomic.Int64 // highest queue id written to the socket
	clientAck  atomic.Int64 // highest id the client acknowledged
	pendingAck atomic.Int64 // highest ack not yet committed to the relay log
	durableAck atomic.Int64 // highest ack committed
	ackRunning atomic.Bool

	closeCode int
	closeText string
}

const statusQueue = 64

func (s *Server) handleSocket(w http.ResponseWriter, r *http.Request) {
	user, werr := s.authenticate(r, true)
	if werr != nil {
		writeError(w, werr)
		return
	}
	if s.draining.Load() {
		writeError(w, &wire.Error{Code: wire.CodeUnavailable, Message: "node is draining; connect to another edge", RetryAfter: time.Second})
		return
	}
	if !s.checkOrigin(r) {
		writeError(w, wire.Errorf(wire.CodePermissionDenied, "origin %q is not allowed", r.Header.Get("Origin")))
		return
	}
	if !s.reserve(user) {
		writeError(w, &wire.Error{Code: wire.CodeRateLimited, Message: "too many open sockets for this user", RetryAfter: 5 * time.Second})
		return
	}
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		s.release(user)
		return // the upgrader already answered
	}
	sk := &socket{
		srv: s, user: user, conn: conn,
		notify: make(chan struct{}, 1),
		status: make(chan wire.ContactStatus, statusQueue),
		errs:   make(chan *wire.Error, 4),
		watch:  make(chan []wire.ContactStatus, 1),
		pongs:  make(chan string, 1),
		done:   make(chan struct{}),
	}
	s.connMu.Lock()
	s.sockets[sk] = struct{}{}
	s.connMu.Unlock()
	s.m.sockets.Inc()
	s.m.socketOpens.Inc()
	// The hub knows the socket before the writer's first pull: an event
	// committed after that pull wakes the writer instead of waiting for the
	// next one.
	s.hub.Connect(sk)
	s.wg.Add(2)
	// Returning from the handler lets net/http drop its buffers for this
	// connection; the socket lives on in its own goroutines.
	go sk.readLoop()
	go sk.writeLoop()
}

func (s *Server) reserve(user int64) bool {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.conns[user] >= s.opts.MaxConnsPerUser {
		return false
	}
	s.conns[user]++
	return true
}

func (s *Server) release(user int64) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.conns[user] <= 1 {
		delete(s.conns, user)
	} else {
		s.conns[user]--
	}
}

// UserID, Notify and Status make socket a presence.Session.
func (sk *socket) UserID() int64 { return sk.user }

func (sk *socket) Notify() {
	select {
	case sk.notify <- struct{}{}:
	default:
	}
}

func (sk *socket) Status(st wire.ContactStatus) {
	select {
	case sk.status <- st:
	case <-sk.done:
	default:
		// A socket that cannot take a handful of status updates is not
		// keeping up; it reconnects and loses nothing durable.
		sk.closeWith(websocket.ClosePolicyViolation, "too slow")
	}
}

func (sk *socket) sendError(e *wire.Error) {
	select {
	case sk.errs <- e:
	default:
	}
}

// closeWith ends the socket once. The writer goroutine, the only one that
// writes to the connection, sends the close frame and closes it.
func (sk *socket) closeWith(code int, text string) {
	sk.once.Do(func() {
		sk.closeCode, sk.closeText = code, text
		close(sk.done)
	})
}

func (sk *socket) readLoop() {
	s := sk.srv
	defer s.wg.Done()
	timeout := 2*s.opts.PingInterval + s.opts.PingInterval/2
	sk.conn.SetReadLimit(wire.MaxFrameBytes)
	sk.conn.SetReadDeadline(time.Now().Add(timeout))
	sk.conn.SetPongHandler(func(string) error {
		return sk.conn.SetReadDeadline(time.Now().Add(timeout))
	})
	// gorilla would answer pings and close frames from this goroutine; the
	// writer answers them instead, so that it stays the only writer.
	sk.conn.SetPingHandler(func(data string) error {
		select {
		case sk.pongs <- data:
		default:
		}
		return sk.conn.SetReadDeadline(time.Now().Add(timeout))
	})
	sk.conn.SetCloseHandler(func(int, string) error { return nil })
	ctx := context.Background()
	go func() {
		c, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
		defer cancel()
		_ = s.log.SetLastConnected(c, sk.user, s.opts.Now())
	}()
	reason := "client closed"
	for {
		typ, data, err := sk.conn.ReadMessage()
		if err != nil {
			switch {
			case websocket.IsCloseError(err, websocket.CloseMessageTooBig) || err == websocket.ErrReadLimit:
				reason = "frame too large"
				sk.closeWith(websocket.CloseMessageTooBig, "frame larger than "+strconv.Itoa(wire.MaxFrameBytes)+" bytes")
			case isTimeout(err):
				reason = "missed pings"
			}
			break
		}
		sk.conn.SetReadDeadline(time.Now().Add(timeout))
		if typ != websocket.TextMessage {
			sk.sendError(wire.Invalid("frames must be JSON text frames"))
			continue
		}
		f, werr := wire.DecodeClientFrame(data)
		if werr != nil {
			sk.sendError(werr)
			continue
		}
		switch f.Type {
		case wire.TypeAck:
			sk.ack(f.Ack.UpTo)
		case wire.TypeRead:
			c, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
			if err := s.log.MarkRead(c, sk.user, f.Read.UserID, f.Read.UpToMessageID); err != nil {
				sk.sendError(apiError(err))
			}
			cancel()
		case wire.TypeTyping:
			s.hub.SetTyping(sk.user, f.Typing.ToUserID, f.Typing.Typing)
		case wire.TypeWatch:
			// Up to 1000 statuses answer a watch; they bypass the small
			// status queue, and a client sending watches faster than they
			// are written simply waits.
			select {
			case sk.watch <- s.hub.Watch(sk, f.Watch.UserIDs):
			case <-sk.done:
			}
		}
	}
	sk.closeWith(websocket.CloseNormalClosure, "")
	at := s.opts.Now()
	s.hub.Disconnect(sk, at)
	s.connMu.Lock()
	delete(s.sockets, sk)
	s.connMu.Unlock()
	s.release(sk.user)
	s.m.sockets.Dec()
	s.m.socketCloses.WithLabelValues(reason).Inc()
	c, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
	_ = s.log.SetLastConnected(c, sk.user, at)
	cancel()
}

func isTimeout(err error) bool {
	type timeout interface{ Timeout() bool }
	t, ok := err.(timeout)
	return ok && t.Timeout()
}

// ack records the client's acknowledgement and commits it in the
// background: at most one commit per socket runs at a time, and acks that
// arrive meanwhile are folded into the next one.
func (sk *socket) ack(upTo int64) {
	// A client can only acknowledge what this socket sent it; a larger id
	// must not drop events it never saw.
	if sent := sk.sent.Load(); upTo > sent {
		upTo = sent
	}
	raiseTo(&sk.clientAck, upTo)
	raiseTo(&sk.pendingAck, upTo)
	sk.Notify() // the window may have opened
	if sk.ackRunning.CompareAndSwap(false, true) {
		go sk.commitAcks()
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
		_, err := s.log.Ack(ctx, sk.user, up)
		cancel()
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

// write sends b, which holds one or more complete frames, in one system
// call. Server frames are unmasked (RFC 6455), so the writer frames events
// itself and writes a whole batch at once instead of one syscall per event
// through gorilla's per-message writer. gorilla itself writes only when a
// client breaks the protocol (oversized or malformed frames), just before the
// connection closes.
func (sk *socket) write(b []byte) error {
	nc := sk.conn.NetConn()
	nc.SetWriteDeadline(time.Now().Add(sk.srv.opts.WriteTimeout))
	_, err := nc.Write(b)
	return err
}

// beginFrame reserves room for a text frame header at the end of b; endFrame
// fills it in once the payload is appended.
func beginFrame(b []byte) ([]byte, int) {
	return append(b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), len(b)
}

func endFrame(b []byte, at int) []byte {
	payload := len(b) - at - 10
	var hdr [10]byte
	hdr[0] = 0x81 // FIN, text
	n := 2
	switch {
	case payload < 126:
		hdr[1] = byte(payload)
	case payload <= 0xffff:
		hdr[1] = 126
		hdr[2], hdr[3] = byte(payload>>8), byte(payload)
		n = 4
	default:
		hdr[1] = 127
		for i := 0; i < 8; i++ {
			hdr[2+i] = byte(uint64(payload) >> (56 - 8*i))
		}
		n = 10
	}
	// Close the gap between the header and the payload.
	copy(b[at:], hdr[:n])
	copy(b[at+n:], b[at+10:])
	return b[:len(b)-(10-n)]
}

// frame appends one complete text frame built by fill.
func frame(b []byte, fill func([]byte) []byte) []byte {
	b, at := beginFrame(b)
	return endFrame(fill(b), at)
}

func (sk *socket) writeLoop() {
	s := sk.srv
	defer s.wg.Done()
	defer func() {
		sk.closeWith(websocket.CloseNormalClosure, "")
		_ = sk.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(sk.closeCode, sk.closeText), time.Now().Add(time.Second))
		_ = sk.conn.Close()
	}()
	ready := wire.EncodeEvent(wire.TypeReady, wire.Ready{
		UserID: sk.user, NodeID: s.opts.NodeID, Region: s.opts.Region,
		HeartbeatMs: s.opts.PingInterval.Milliseconds(),
	})
	if sk.write(frame(nil, func(b []byte) []byte { return append(b, ready...) })) != nil {
		return
	}
	ping := time.NewTicker(s.opts.PingInterval)
	defer ping.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	window := newIDRing(s.opts.MaxUnacked)
	var buf []byte
	const (
		pageSize  = 256
		batchSize = 64 << 10 // bytes written per system call at most
	)
	for {
		// Deliver everything the window allows, a batch of frames per write.
		for {
			window.popUpTo(sk.clientAck.Load())
			room := window.free()
			if room == 0 {
				break
			}
			if room > pageSize {
				room = pageSize
			}
			evs, more, err := s.log.Pending(context.Background(), sk.user, sk.sent.Load(), room)
			if err != nil {
				// The shard is between leaders: try again shortly; the
				// events stay queued meanwhile.
				retry.Reset(250 * time.Millisecond)
				break
			}
			if len(evs) == 0 {
				break
			}
			now := time.Now()
			buf = buf[:0]
			for i := range evs {
				msg, rc := toWire(&evs[i])
				var at int
				buf, at = beginFrame(buf)
				if msg != nil {
					buf = wire.AppendNewMessageEvent(buf, msg)
				} else {
					buf = wire.AppendReceiptEvent(buf, rc)
				}
				buf = endFrame(buf, at)
				window.push(evs[i].ID)
				s.m.deliverySecs.Observe(now.Sub(evs[i].Time()).Seconds())
				if len(buf) >= batchSize || i == len(evs)-1 {
					if sk.write(buf) != nil {
						return
					}
					buf = buf[:0]
					sk.sent.Store(evs[i].ID)
				}
			}
			s.m.deliveries.WithLabelValues("socket").Add(float64(len(evs)))
			if !more {
				break
			}
		}
		if cap(buf) > 2*batchSize {
			buf = nil // do not keep a large buffer on an idle socket
		}
		select {
		case <-sk.done:
			return
		case <-sk.notify:
		case <-retry.C:
		case st := <-sk.status:
			if sk.write(frame(buf[:0], func(b []byte) []byte { return wire.AppendContactStatusEvent(b, &st) })) != nil {
				return
			}
		case sts := <-sk.watch:
			buf = buf[:0]
			for i := range sts {
				buf = frame(buf, func(b []byte) []byte { return wire.AppendContactStatusEvent(b, &sts[i]) })
			}
			if sk.write(buf) != nil {
				return
			}
		case e := <-sk.errs:
			ev := wire.EncodeEvent(wire.TypeError, wire.ErrorDetail{Code: e.Code, Message: e.Message})
			if sk.write(frame(buf[:0], func(b []byte) []byte { return append(b, ev...) })) != nil {
				return
			}
		case data := <-sk.pongs:
			if sk.conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(s.opts.WriteTimeout)) != nil {
				return
			}
		case <-ping.C:
			if sk.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(s.opts.WriteTimeout)) != nil {
				return
			}
		}
	}
}

// idRing remembers the ids written and not yet acknowledged, oldest first,
// at most max of them. It allocates only while events are in flight, so an
// idle socket holds nothing.
type idRing struct {
	ids  []int64
	head int
	max  int
}

func newIDRing(max int) *idRing { return &idRing{max: max} }

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

package edge

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

// A socket costs no goroutine while it is idle; what it holds then is this
// struct, the kernel's connection and one ping timer (a few hundred bytes,
// docs/PERFORMANCE.md).
//
// Reading: on Linux the server's poller (one epoll instance, one goroutine)
// watches every plain-TCP socket; when a socket has bytes to read, a
// goroutine drains them without blocking, handles the complete frames, keeps
// a partial frame for later and goes away. Elsewhere, and on TLS sockets
// (where the bytes must go through crypto/tls), a goroutine per socket reads.
//
// Writing: a writer goroutine runs only while there is something to write.
// Notify (new events in the user's queue), a status update, an error, a pong
// or a ping start it if it is not running; it writes the ready frame first,
// then pulls the user's queue from the relay log past the last id it wrote,
// a batch of frames per system call, and leaves when nothing is left. At
// most one writer runs, so it is the only goroutine that writes. At most
// MaxUnacked events are in flight unacknowledged; a socket that cannot take
// a write within WriteTimeout is closed with its events still queued.
type socket struct {
	srv  *Server
	user int64
	nc   net.Conn
	rc   syscall.RawConn // nil unless nc is a plain TCP connection
	tok  int32           // poller registration

	// Read side, touched by one read burst at a time.
	partial  []byte // an incomplete frame kept between bursts
	message  []byte // a fragmented message being assembled
	msgOp    byte
	lastRead atomic.Int64 // Unix ns of the last bytes received
	typingAt int64        // typing frame limiter: theoretical arrival time, Unix ns (GCRA)

	expires int64 // Unix ns when the token stops being accepted; 0: never. Set before the socket runs.
	opened  int64 // Unix ns of the upgrade, for the socket duration metric

	// Write side and lifecycle, under mu.
	mu         sync.Mutex
	writing    bool // a writer goroutine runs
	again      bool // work arrived while it ran
	reading    bool // a read burst runs
	statuses   []wire.ContactStatus
	watchAns   []wire.ContactStatus
	hasWatch   bool
	errs       []*wire.Error
	pong       []byte
	hasPong    bool
	ping       bool
	pull       bool    // the queue may hold events past sent: pull it
	offers     []offer // events pushed by the user's home, to write without a pull
	closing    bool    // the writer sends the close frame and ends the socket
	closeCode  int
	closeText  string
	reason     string // metric label of the close
	writerDone bool   // the connection is closed
	cleaned    bool

	// Writer-only state.
	blocked      atomic.Bool // the window was full: an ack must pull again
	readySent    bool
	window       idRing
	retryPending atomic.Bool
	pingTimer    *time.Timer

	// The watch list, under watchMu: users the client may see (visible)
	// are watched in the hub; the others (hidden) are answered as never
	// connected and wait for a conversation with the user (unhide).
	watchMu    sync.Mutex
	watchShown []int64
	hidden     map[int64]struct{}
	hiddenN    atomic.Int32
	watchDone  bool // cleanup began: the hub must not get the socket back

	sent       atomic.Int64 // highest queue id written to the socket
	clientAck  atomic.Int64 // highest id the client acknowledged
	pendingAck atomic.Int64 // highest ack not yet committed to the relay log
	durableAck atomic.Int64 // highest ack committed
	ackRunning atomic.Bool
}

const (
	// statusQueue bounds the users whose status update a socket may have
	// waiting. Updates are kept one per user (a newer one replaces the
	// queued one), so only that many distinct users overflow it: well
	// above a full watch list, it is a memory bound, not a speed test (a
	// client that does not read is closed by WriteTimeout).
	statusQueue = wire.MaxWatch + 64
	// maxErrs bounds the error events waiting to be written. A client that
	// sends malformed frames faster than it takes the errors overflows it
	// and is closed with 1008, rather than have errors dropped.
	maxErrs = 16

	// A socket may send typingBurst typing frames at once and typingRate
	// a second on average (clients renew every 3-5 s); excess frames are
	// dropped, as typing is not stored.
	typingRate  = 10
	typingBurst = 20

	// WebSocket close codes (RFC 6455, section 7.4.1).
	closeNormal        = 1000
	closeProtocolError = 1002
	closeInvalidData   = 1007
	closePolicy        = 1008
	closeTooBig        = 1009
	closeRestart       = 1012
)

// expiryVerifier is a Verifier that also tells when a token stops being
// accepted (auth.Verifier does): the socket is closed then.
type expiryVerifier interface {
	VerifyWithExpiry(token string) (userID int64, until time.Time, err error)
}

// authenticateSocket is authenticate for the upgrade, which also learns when
// the token stops being accepted (zero: unknown, the socket is never closed
// for it).
func (s *Server) authenticateSocket(r *http.Request) (int64, time.Time, *wire.Error) {
	user, werr := s.authenticate(r, true)
	if werr != nil {
		return 0, time.Time{}, werr
	}
	ev, ok := s.opts.Verifier.(expiryVerifier)
	if !ok {
		return user, time.Time{}, nil
	}
	// Verified a moment ago: this is the verifier's cache.
	_, until, err := ev.VerifyWithExpiry(token(r, true))
	if err != nil {
		return 0, time.Time{}, wire.Errorf(wire.CodeUnauthenticated, "token expired")
	}
	return user, until, nil
}

func (s *Server) handleSocket(w http.ResponseWriter, r *http.Request) {
	user, until, werr := s.authenticateSocket(r)
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
	sk := &socket{srv: s, user: user, nc: conn.NetConn()}
	sk.window.max = s.opts.MaxUnacked
	if tc, ok := sk.nc.(*net.TCPConn); ok {
		sk.rc, _ = tc.SyscallConn()
	}
	if !until.IsZero() {
		sk.expires = until.UnixNano()
	}
	now := time.Now()
	sk.opened = now.UnixNano()
	sk.lastRead.Store(now.UnixNano())
	sk.pingTimer = time.AfterFunc(s.opts.PingInterval, sk.onPingTimer)
	s.connMu.Lock()
	s.sockets[sk] = struct{}{}
	s.connMu.Unlock()
	s.m.sockets.Inc()
	s.m.socketOpens.Inc()
	s.wg.Add(1)
	// The hub knows the socket before the writer's first pull: an event
	// committed after that pull wakes the writer instead of waiting for the
	// next one. It gets the open time too, so that the online update carries
	// it before the store has it.
	openedAt := s.opts.Now()
	s.hub.ConnectAt(sk, openedAt)
	go func() {
		c, cancel := context.WithTimeout(context.Background(), s.opts.CallTimeout)
		defer cancel()
		_ = s.log.SetLastConnected(c, sk.user, openedAt)
	}()
	sk.kick() // the ready frame, then whatever is queued
	// Registered everywhere: the timer may now fire sooner than an
	// interval, for a token that expires before that.
	if sk.expires != 0 {
		sk.pingTimer.Reset(sk.nextTick(now))
	}
	// Returning from the handler lets net/http drop its buffers for this
	// connection; gorilla's Conn is dropped too, its job (the handshake)
	// done.
	if sk.rc == nil || !s.poller.add(sk) {
		go sk.readLoop()
	}
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

// Notify says the user's queue has new events (or that acks opened the
// window): the writer pulls.
func (sk *socket) Notify() {
	sk.mu.Lock()
	sk.pull = true
	sk.mu.Unlock()
	sk.kick()
}

// offer is a push from the user's home (cluster.Options.Offer): every event
// of the queue with an id above after.
type offer struct {
	after int64
	evs   []relaylog.Event
}

// Offer hands the socket events its user's home pushed. The writer writes
// them if it has written everything up to after; otherwise, or if too many
// wait, it pulls instead.
func (sk *socket) Offer(after int64, evs []relaylog.Event) {
	sk.mu.Lock()
	if len(sk.offers) >= 16 {
		sk.offers, sk.pull = nil, true
	} else {
		sk.offers = append(sk.offers, offer{after, evs})
	}
	sk.mu.Unlock()
	sk.kick()
}

// Status queues a contact_status_update. A status is complete (online,
// lastConnectedAt, typing), so only the latest of a user matters: it
// replaces one of the same user still waiting, in its place. No volume of
// changes of one user can then fill the queue.
func (sk *socket) Status(st wire.ContactStatus) {
	sk.mu.Lock()
	if sk.closing {
		sk.mu.Unlock()
		return
	}
	for i := range sk.statuses {
		if sk.statuses[i].UserID == st.UserID {
			sk.statuses[i] = st
			sk.mu.Unlock()
			return // the writer was kicked for the queued one
		}
	}
	if len(sk.statuses) >= statusQueue {
		sk.mu.Unlock()
		// Changes of that many users wait: the socket is not keeping up;
		// it reconnects and loses nothing durable.
		sk.closeWith(closePolicy, "too slow", "too slow")
		return
	}
	sk.statuses = append(sk.statuses, st)
	sk.mu.Unlock()
	sk.kick()
}

// sendError queues an error event. It reports false when the socket is
// closing, which it is if too many errors already wait: a client cannot
// make the server hold unbounded errors, and none is dropped silently.
func (sk *socket) sendError(e *wire.Error) bool {
	sk.mu.Lock()
	if sk.closing {
		sk.mu.Unlock()
		return false
	}
	if len(sk.errs) >= maxErrs {
		sk.mu.Unlock()
		sk.closeWith(closePolicy, "too many malformed frames", "too many errors")
		return false
	}
	sk.errs = append(sk.errs, e)
	sk.mu.Unlock()
	sk.kick()
	return true
}

// closeWith ends the socket once: the writer sends a close frame with code
// and text, closes the connection and cleans up.
func (sk *socket) closeWith(code int, text, reason string) {
	sk.mu.Lock()
	if sk.closing {
		sk.mu.Unlock()
		return
	}
	sk.closing = true
	sk.closeCode, sk.closeText, sk.reason = code, text, reason
	sk.mu.Unlock()
	sk.kick()
}

// onPingTimer runs at least every ping interval. A client that sent nothing
// for two intervals (it answers pings with pongs) is gone, and a socket
// whose token expired is closed; otherwise the client gets a ping. The
// timer fires again after an interval, or sooner when one of those
// deadlines comes first, so both are met within the timer's precision.
func (sk *socket) onPingTimer() {
	now := time.Now()
	if sk.expires != 0 && now.UnixNano() >= sk.expires {
		sk.closeWith(closePolicy, "token expired", "token expired")
		return
	}
	if sk.silenceLeft(now) <= time.Millisecond {
		sk.closeWith(closeNormal, "", "missed pings")
		return
	}
	sk.mu.Lock()
	if sk.closing {
		sk.mu.Unlock()
		return
	}
	sk.ping = true
	sk.mu.Unlock()
	sk.kick()
	sk.pingTimer.Reset(sk.nextTick(now))
}

// silenceLeft is how long until the client has been silent for two ping
// intervals.
func (sk *socket) silenceLeft(now time.Time) time.Duration {
	return time.Duration(sk.lastRead.Load() + int64(2*sk.srv.opts.PingInterval) - now.UnixNano())
}

// nextTick is when the ping timer fires next: after an interval, or at the
// silence deadline or the token's expiry if either comes first.
func (sk *socket) nextTick(now time.Time) time.Duration {
	d := min(sk.srv.opts.PingInterval, sk.silenceLeft(now))
	if sk.expires != 0 {
		d = min(d, time.Duration(sk.expires-now.UnixNano()))
	}
	return max(d, time.Millisecond)
}

// kick starts the writer unless it runs; if it runs, it looks again before
// it leaves.
func (sk *socket) kick() {
	sk.mu.Lock()
	if sk.writing || sk.writerDone {
		sk.again = true
		sk.mu.Unlock()
		return
	}
	sk.writing = true
	sk.mu.Unlock()
	runTask(task{sk, taskWrite})
}

var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// writeRun is the writer: it writes what is waiting and leaves when nothing
// is, unless the socket is closing, which it finishes.
func (sk *socket) writeRun() {
	s := sk.srv
	bp := writeBufs.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 64<<10 {
			*bp = (*bp)[:0]
			writeBufs.Put(bp)
		}
	}()
	for {
		sk.mu.Lock()
		sk.again = false
		if sk.closing {
			// Error events still waiting go out before the close frame:
			// the client learns what was wrong with its frames.
			errs := sk.errs
			sk.errs = nil
			sk.mu.Unlock()
			sk.finish(errs)
			return
		}
		statuses, watch, hasWatch, errs := sk.statuses, sk.watchAns, sk.hasWatch, sk.errs
		pong, hasPong, ping := sk.pong, sk.hasPong, sk.ping
		pull, offers := sk.pull || !sk.readySent, sk.offers
		sk.statuses, sk.watchAns, sk.hasWatch, sk.errs = nil, nil, false, nil
		sk.pong, sk.hasPong, sk.ping = nil, false, false
		sk.pull, sk.offers = false, nil
		sk.mu.Unlock()

		buf := (*bp)[:0]
		if !sk.readySent {
			sk.readySent = true
			ready := wire.EncodeEvent(wire.TypeReady, wire.Ready{
				UserID: sk.user, NodeID: s.opts.NodeID, Region: s.opts.Region,
				HeartbeatMs: s.opts.PingInterval.Milliseconds(),
			})
			buf = frame(buf, func(b []byte) []byte { return append(b, ready...) })
		}
		for i := range statuses {
			buf = frame(buf, func(b []byte) []byte { return wire.AppendContactStatusEvent(b, &statuses[i]) })
		}
		if hasWatch {
			for i := range watch {
				buf = frame(buf, func(b []byte) []byte { return wire.AppendContactStatusEvent(b, &watch[i]) })
			}
		}
		buf = appendErrors(buf, errs)
		if hasPong {
			buf = controlFrame(buf, 0x8A, pong)
		}
		if ping {
			buf = controlFrame(buf, 0x89, nil)
		}
		var err error
		if len(buf) > 0 {
			err = sk.write(buf)
		}
		for _, o := range offers {
			if err != nil {
				break
			}
			if o.after > sk.sent.Load() {
				pull = true // events before these were not written yet
				continue
			}
			var full bool
			buf, full, err = sk.writeEvents(buf[:0], o.evs)
			pull = pull || full
		}
		if err == nil && pull {
			buf, err = sk.deliver(buf[:0])
		}
		*bp = buf[:0]
		if err != nil {
			sk.closeWith(closeNormal, "", "write failed")
			continue
		}
		sk.mu.Lock()
		if !sk.again && !sk.closing {
			sk.writing = false
			sk.mu.Unlock()
			return
		}
		sk.mu.Unlock()
	}
}

// deliver pulls the user's queue past the last id written and writes
// everything the window allows, a batch of frames per write.
func (sk *socket) deliver(buf []byte) ([]byte, error) {
	s := sk.srv
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
			if sk.retryPending.CompareAndSwap(false, true) {
				time.AfterFunc(250*time.Millisecond, func() {
					sk.retryPending.Store(false)
					sk.Notify()
				})
			}
			return buf, nil
		}
		var full bool
		if buf, full, err = sk.writeEvents(buf[:0], evs); err != nil || full || !more {
			return buf, err
		}
	}
}

const (
	pageSize  = 256      // events pulled at a time
	batchSize = 64 << 10 // bytes written per system call at most
)

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
		msg, rc := toWire(&evs[i])
		var at int
		buf, at = beginFrame(buf)
		if msg != nil {
			buf = wire.AppendNewMessageEvent(buf, msg)
		} else {
			buf = wire.AppendReceiptEvent(buf, rc)
		}
		buf = endFrame(buf, at)
		sk.window.push(evs[i].ID)
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

// write sends b, which holds one or more complete frames, in one system
// call. Server frames are unmasked (RFC 6455), so the server frames them
// itself.
func (sk *socket) write(b []byte) error {
	t0 := time.Now()
	sk.nc.SetWriteDeadline(t0.Add(sk.srv.opts.WriteTimeout))
	_, err := sk.nc.Write(b)
	sk.srv.m.socketWrite.Observe(time.Since(t0).Seconds())
	return err
}

func appendErrors(buf []byte, errs []*wire.Error) []byte {
	for _, e := range errs {
		ev := wire.EncodeEvent(wire.TypeError, wire.ErrorDetail{Code: e.Code, Message: e.Message})
		buf = frame(buf, func(b []byte) []byte { return append(b, ev...) })
	}
	return buf
}

// finish sends the error events still waiting and the close frame, closes
// the connection and, once no read burst runs, cleans up. It runs on the
// writer, which stays marked running so that no other writer starts.
func (sk *socket) finish(errs []*wire.Error) {
	s := sk.srv
	sk.pingTimer.Stop()
	payload := make([]byte, 2, 2+len(sk.closeText))
	binary.BigEndian.PutUint16(payload, uint16(sk.closeCode))
	payload = append(payload, sk.closeText...)
	sk.nc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = sk.nc.Write(controlFrame(appendErrors(nil, errs), 0x88, payload))
	if sk.rc != nil {
		s.poller.remove(sk)
	}
	_ = sk.nc.Close()
	sk.mu.Lock()
	sk.writerDone = true
	last := !sk.reading && !sk.cleaned
	sk.cleaned = sk.cleaned || last
	sk.mu.Unlock()
	if last {
		sk.cleanup()
	}
}

// cleanup runs once, after the connection closed and no reader runs.
func (sk *socket) cleanup() {
	s := sk.srv
	at := s.opts.Now()
	sk.watchMu.Lock()
	sk.watchDone, sk.hidden = true, nil
	sk.setHiddenLocked(0)
	sk.watchMu.Unlock()
	s.hub.Disconnect(sk, at)
	s.connMu.Lock()
	delete(s.sockets, sk)
	s.connMu.Unlock()
	s.release(sk.user)
	s.m.sockets.Dec()
	s.m.socketCloses.WithLabelValues(sk.reason).Inc()
	s.m.socketLife.Observe(time.Since(time.Unix(0, sk.opened)).Seconds())
	c, cancel := context.WithTimeout(context.Background(), s.opts.CallTimeout)
	_ = s.log.SetLastConnected(c, sk.user, at)
	cancel()
	s.wg.Done()
}

// beginRead marks a read burst running; false if the socket is done or a
// burst already runs.
func (sk *socket) beginRead() bool {
	sk.mu.Lock()
	defer sk.mu.Unlock()
	if sk.writerDone || sk.reading {
		return false
	}
	sk.reading = true
	return true
}

// endRead ends a read burst; it reports whether the socket still reads.
func (sk *socket) endRead() bool {
	sk.mu.Lock()
	sk.reading = false
	last := sk.writerDone && !sk.cleaned
	sk.cleaned = sk.cleaned || last
	alive := !sk.closing
	sk.mu.Unlock()
	if last {
		sk.cleanup()
	}
	return alive
}

var readBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// readLoop reads with a goroutine of its own: TLS sockets, systems without
// the poller, or a poller that could not take the socket.
func (sk *socket) readLoop() {
	if !sk.beginRead() {
		return
	}
	buf := make([]byte, 4096)
	for {
		n, err := sk.nc.Read(buf)
		if n > 0 {
			sk.lastRead.Store(time.Now().UnixNano())
			if !sk.feed(buf[:n]) {
				break
			}
		}
		if err != nil {
			sk.closeWith(closeNormal, "", "client closed")
			break
		}
	}
	sk.endRead()
}

// readBurst drains what the kernel holds for the socket without blocking,
// handles the complete frames and re-arms the poller.
func (sk *socket) readBurst() {
	if !sk.beginRead() {
		return
	}
	bp := readBufs.Get().(*[]byte)
	for {
		n, err := rawRead(sk.rc, *bp)
		if err == syscall.EAGAIN {
			break
		}
		if n > 0 {
			sk.lastRead.Store(time.Now().UnixNano())
			if !sk.feed((*bp)[:n]) {
				break
			}
		}
		if err != nil || n == 0 {
			sk.closeWith(closeNormal, "", "client closed")
			break
		}
		if n < len(*bp) {
			// Most likely drained. The poller is level-triggered: if
			// more bytes came meanwhile, re-arming reports them at once,
			// so the read that would answer EAGAIN is not needed.
			break
		}
	}
	readBufs.Put(bp)
	if sk.endRead() {
		sk.srv.poller.rearm(sk)
	}
}

// clientFrame is one parsed client frame.
type clientFrame struct {
	fin     bool
	op      byte
	payload []byte // unmasked in place
}

// protocolError closes the socket with a WebSocket close code.
type protocolError struct {
	code   int
	text   string
	reason string
}

// parseFrame parses one client frame at the start of b and unmasks its
// payload in place. n is 0 while b holds only part of the frame. Limits are
// checked from the header, before any payload is buffered.
func parseFrame(b []byte) (f clientFrame, n int, perr *protocolError) {
	if len(b) < 2 {
		return f, 0, nil
	}
	f.fin, f.op = b[0]&0x80 != 0, b[0]&0x0f
	if b[0]&0x70 != 0 {
		return f, 0, &protocolError{closeProtocolError, "reserved bits set", "protocol error"}
	}
	if b[1]&0x80 == 0 {
		return f, 0, &protocolError{closeProtocolError, "client frames must be masked", "protocol error"}
	}
	length, hl := uint64(b[1]&0x7f), 2
	switch length {
	case 126:
		if len(b) < 4 {
			return f, 0, nil
		}
		length, hl = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return f, 0, nil
		}
		length, hl = binary.BigEndian.Uint64(b[2:]), 10
	}
	switch f.op {
	case 0x0, 0x1, 0x2:
	case 0x8, 0x9, 0xA:
		if length > 125 || !f.fin {
			return f, 0, &protocolError{closeProtocolError, "bad control frame", "protocol error"}
		}
	default:
		return f, 0, &protocolError{closeProtocolError, "unknown opcode", "protocol error"}
	}
	if length > wire.MaxFrameBytes {
		return f, 0, &protocolError{closeTooBig, "frame larger than " + strconv.Itoa(wire.MaxFrameBytes) + " bytes", "frame too large"}
	}
	end := hl + 4 + int(length)
	if len(b) < end {
		return f, 0, nil
	}
	mask := b[hl : hl+4]
	f.payload = b[hl+4 : end]
	for i := range f.payload {
		f.payload[i] ^= mask[i&3]
	}
	return f, end, nil
}

// feed parses the frames in data, after any partial frame kept from the
// previous read, and handles every complete one. It reports false once the
// socket is closing.
func (sk *socket) feed(data []byte) bool {
	if len(sk.partial) > 0 {
		sk.partial = append(sk.partial, data...)
		data = sk.partial
	}
	for {
		f, n, perr := parseFrame(data)
		if perr != nil {
			sk.partial = nil
			sk.closeWith(perr.code, perr.text, perr.reason)
			return false
		}
		if n == 0 {
			break
		}
		if !sk.handleFrame(f) {
			sk.partial = nil
			return false
		}
		data = data[n:]
	}
	switch {
	case len(data) == 0:
		sk.partial = nil
	case len(sk.partial) > 0 && &data[0] == &sk.partial[len(sk.partial)-len(data)]:
		sk.partial = append(sk.partial[:0], data...) // overlapping copy to the front is safe
	default:
		sk.partial = append([]byte(nil), data...)
	}
	return true
}

func (sk *socket) handleFrame(f clientFrame) bool {
	switch f.op {
	case 0x9: // ping: the writer answers
		sk.mu.Lock()
		sk.pong, sk.hasPong = append([]byte(nil), f.payload...), true
		sk.mu.Unlock()
		sk.kick()
		return true
	case 0xA: // pong: its arrival moved lastRead
		return true
	case 0x8: // close: answer it and end
		sk.closeWith(closeNormal, "", "client closed")
		return false
	case 0x1, 0x2:
		if sk.msgOp != 0 {
			sk.closeWith(closeProtocolError, "new message inside a fragmented one", "protocol error")
			return false
		}
		if f.fin {
			return sk.handleMessage(f.op, f.payload)
		}
		sk.msgOp, sk.message = f.op, append([]byte(nil), f.payload...)
		return true
	default: // continuation
		if sk.msgOp == 0 {
			sk.closeWith(closeProtocolError, "continuation without a message", "protocol error")
			return false
		}
		if len(sk.message)+len(f.payload) > wire.MaxFrameBytes {
			sk.closeWith(closeTooBig, "frame larger than "+strconv.Itoa(wire.MaxFrameBytes)+" bytes", "frame too large")
			return false
		}
		sk.message = append(sk.message, f.payload...)
		if !f.fin {
			return true
		}
		op, msg := sk.msgOp, sk.message
		sk.msgOp, sk.message = 0, nil
		return sk.handleMessage(op, msg)
	}
}

// handleMessage acts on one complete client message.
func (sk *socket) handleMessage(op byte, data []byte) bool {
	s := sk.srv
	if op != 0x1 {
		return sk.sendError(wire.Invalid("frames must be JSON text frames"))
	}
	if !utf8.Valid(data) {
		sk.closeWith(closeInvalidData, "text frame is not valid UTF-8", "protocol error")
		return false
	}
	f, werr := wire.DecodeClientFrame(data)
	if werr != nil {
		return sk.sendError(werr)
	}
	switch f.Type {
	case wire.TypeAck:
		sk.ack(f.Ack.UpTo)
	case wire.TypeRead:
		if wait, ok := s.allowCalls(sk.user, 1); !ok {
			return sk.sendError(callsLimited(wait))
		}
		c, cancel := context.WithTimeout(context.Background(), s.opts.CallTimeout)
		err := s.log.MarkRead(c, sk.user, f.Read.UserID, f.Read.UpToMessageID)
		cancel()
		if err != nil {
			return sk.sendError(apiError(err))
		}
	case wire.TypeTyping:
		if sk.typingAllowed(time.Now().UnixNano()) {
			s.typing(sk.user, f.Typing.ToUserID, f.Typing.Typing)
		}
	case wire.TypeWatch:
		if wait, ok := s.allowCalls(sk.user, watchCost(len(f.Watch.UserIDs))); !ok {
			return sk.sendError(callsLimited(wait))
		}
		return sk.watch(f.Watch.UserIDs)
	}
	return true
}

// watchCost is what a watch of n users takes from the user's call bucket:
// one, and one more per 100 users.
func watchCost(n int) float64 { return float64(1 + n/100) }

// watch replaces the socket's watch list. Up to 1000 statuses answer it: the
// hub's for users the client may see, "never connected" for the others; a
// newer watch's answer replaces one not yet written (it covers the new
// list).
func (sk *socket) watch(ids []int64) bool {
	s := sk.srv
	uniq := make([]int64, 0, len(ids))
	seen := make(map[int64]struct{}, len(ids))
	for _, u := range ids {
		if _, dup := seen[u]; !dup {
			seen[u] = struct{}{}
			uniq = append(uniq, u)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.CallTimeout)
	vis, err := s.visible(ctx, sk.user, uniq, false)
	cancel()
	if err != nil {
		return sk.sendError(apiError(err))
	}
	var shown []int64
	var hidden map[int64]struct{}
	for i, u := range uniq {
		if vis[i] {
			shown = append(shown, u)
			continue
		}
		if hidden == nil {
			hidden = make(map[int64]struct{})
		}
		hidden[u] = struct{}{}
	}
	sk.watchMu.Lock()
	if sk.watchDone {
		sk.watchMu.Unlock()
		return false
	}
	sk.watchShown, sk.hidden = shown, hidden
	sk.setHiddenLocked(len(hidden))
	sts := s.hub.Watch(sk, shown)
	sk.watchMu.Unlock()
	if len(hidden) > 0 { // in the order of the list
		known := make(map[int64]wire.ContactStatus, len(sts))
		for _, st := range sts {
			known[st.UserID] = st
		}
		sts = sts[:0]
		for _, u := range uniq {
			if st, ok := known[u]; ok {
				sts = append(sts, st)
			} else if _, ok := hidden[u]; ok {
				sts = append(sts, wire.ContactStatus{UserID: u})
			}
		}
	}
	sk.mu.Lock()
	sk.watchAns, sk.hasWatch = sts, true
	sk.mu.Unlock()
	sk.kick()
	return true
}

// setHiddenLocked records the number of hidden watch entries, and whether
// the socket counts among the server's sockets with some.
func (sk *socket) setHiddenLocked(n int) {
	was := sk.hiddenN.Swap(int32(n))
	switch {
	case was == 0 && n > 0:
		sk.srv.hiddenSockets.Add(1)
	case was > 0 && n == 0:
		sk.srv.hiddenSockets.Add(-1)
	}
}

// unhide starts watching u, hidden until now, when the socket's user and u
// have just started a conversation; the client gets u's status.
func (sk *socket) unhide(u int64) {
	if sk.hiddenN.Load() == 0 {
		return
	}
	sk.watchMu.Lock()
	if _, ok := sk.hidden[u]; !ok || sk.watchDone {
		sk.watchMu.Unlock()
		return
	}
	delete(sk.hidden, u)
	sk.setHiddenLocked(len(sk.hidden))
	sk.watchShown = append(sk.watchShown, u)
	sts := sk.srv.hub.Watch(sk, sk.watchShown)
	sk.watchMu.Unlock()
	for _, st := range sts {
		if st.UserID == u {
			sk.Status(st) // else it arrives from u's home
		}
	}
}

// unhideSenders unhides the senders of messages among evs (the socket is
// writing them: each sender shares a conversation with its user now).
func (sk *socket) unhideSenders(evs []relaylog.Event) {
	for i := range evs {
		if evs[i].Kind != relaylog.KindMessage || sk.hiddenN.Load() == 0 {
			continue
		}
		sk.watchMu.Lock()
		_, hidden := sk.hidden[evs[i].From]
		sk.watchMu.Unlock()
		if hidden {
			sk.srv.visibleCache.put(pairOf(sk.user, evs[i].From), true, sk.srv.opts.Now().UnixNano())
			sk.unhide(evs[i].From)
		}
	}
}

// typingAllowed is the limit on typing frames (GCRA: one int64 of state,
// touched only by the read burst that runs).
func (sk *socket) typingAllowed(now int64) bool {
	const step = int64(time.Second) / typingRate
	tat := max(sk.typingAt, now)
	if tat-now > (typingBurst-1)*step {
		return false
	}
	sk.typingAt = tat + step
	return true
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

// controlFrame appends an unmasked control frame (close 0x88, ping 0x89,
// pong 0x8A) with a payload of at most 125 bytes.
func controlFrame(b []byte, op byte, payload []byte) []byte {
	if len(payload) > 125 {
		payload = payload[:125]
	}
	b = append(b, op, byte(len(payload)))
	return append(b, payload...)
}

// rawRead reads what the kernel holds without blocking: EAGAIN when
// nothing, io.EOF when the peer closed.
func rawRead(rc syscall.RawConn, b []byte) (n int, err error) {
	cerr := rc.Read(func(fd uintptr) bool {
		for {
			n, err = syscall.Read(int(fd), b)
			if err != syscall.EINTR {
				return true // never wait: EAGAIN ends the burst
			}
		}
	})
	if cerr != nil {
		return 0, cerr
	}
	if n < 0 {
		n = 0
	}
	if err == nil && n == 0 {
		err = io.EOF
	}
	return n, err
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

// idRing remembers the ids written and not yet acknowledged, oldest first,
// at most max of them. It allocates only while events are in flight, so an
// idle socket holds nothing.
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

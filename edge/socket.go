package edge

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

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
//
// This file is the socket's state machine: accept, the writer loop, the read
// bursts, the ping timer, the typing limiter and the close. The rest of the
// socket lives by job: frames.go is the frame codec (events into frames,
// client frames parsed, reassembled and validated), flow.go the window of
// unacknowledged events and the pull, acks.go the ack committer, watch.go
// the watch list.
type socket struct {
	// Set at accept, read-only after. (tok is set once by poller.add,
	// before the poller can report the socket; pingTimer is reset by its
	// own callback and stopped by finish.)
	srv       *Server
	user      int64
	dev       string // the device id the socket named ("" = the default device)
	nc        net.Conn
	rc        syscall.RawConn // nil unless nc is a plain TCP connection
	tok       int32           // poller registration
	expires   int64           // Unix ns when the token stops being accepted; 0: never
	opened    int64           // Unix ns of the upgrade, for the socket duration metric
	pingTimer *time.Timer

	// Read burst only: one read burst runs at a time (reading, under mu),
	// on the poller's task or readLoop.
	partial  []byte    // an incomplete frame kept between bursts
	asm      assembler // a fragmented message being assembled
	typingAt int64     // typing frame limiter: theoretical arrival time, Unix ns (GCRA)

	// Writer goroutine only: one writer runs at a time (writing, under mu).
	readySent bool
	attached  bool   // the device's cursor is known (linked.go): events may be written
	window    idRing // ids written and not yet acknowledged (flow.go)

	// Guarded by mu: the writer's inbox and the socket's lifecycle.
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
	pull       bool      // the queue may hold events past sent: pull it
	offers     []offer   // events pushed by the user's home, to write without a pull
	own        *ownSends // messages this device sent through this node (flow.go); nil: none waiting
	closing    bool      // the writer sends the close frame and ends the socket
	closeCode  int       // closeCode, closeText and reason are set with closing, once
	closeText  string
	reason     string // metric label of the close
	writerDone bool   // the connection is closed
	cleaned    bool

	// Guarded by watchMu: the watch list (watch.go). Users the client may
	// see (visible) are watched in the hub; the others (hidden) are
	// answered as never connected and wait for a conversation with the
	// user (unhide).
	watchMu    sync.Mutex
	watchShown []int64
	hidden     map[int64]struct{}
	watchDone  bool // cleanup began: the hub must not get the socket back

	// Atomics, touched by any goroutine.
	lastRead     atomic.Int64 // Unix ns of the last bytes received
	hiddenN      atomic.Int32 // len(hidden), read without watchMu
	blocked      atomic.Bool  // the window was full: an ack must pull again
	retryPending atomic.Bool  // a pull failed and a retry is scheduled
	sent         atomic.Int64 // highest queue id written to the socket, or passed over as the device's own copy (flow.go)
	written      atomic.Int64 // highest queue id written to the socket; set before sent
	clientAck    atomic.Int64 // highest id the client acknowledged
	pendingAck   atomic.Int64 // highest ack not yet committed to the relay log
	durableAck   atomic.Int64 // highest ack committed
	ackRunning   atomic.Bool  // the ack task runs (acks.go)
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
	dev, werr := deviceID(r, true)
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
	sk := &socket{srv: s, user: user, dev: dev, nc: conn.NetConn()}
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

// DeviceID is the device the socket named (presence.DeviceSession).
func (sk *socket) DeviceID() string { return sk.dev }

// Notify says the user's queue has new events (or that acks opened the
// window): the writer pulls.
func (sk *socket) Notify() {
	sk.mu.Lock()
	sk.pull = true
	sk.mu.Unlock()
	sk.kick()
}

// offer is a push from the user's home (presence.Hub.Offer): every event
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
			buf = appendReady(buf, wire.Ready{
				UserID: sk.user, NodeID: s.opts.NodeID, Region: s.opts.Region,
				HeartbeatMs: s.opts.PingInterval.Milliseconds(),
			})
		}
		for i := range statuses {
			buf = appendStatus(buf, &statuses[i])
		}
		if hasWatch {
			for i := range watch {
				buf = appendStatus(buf, &watch[i])
			}
		}
		buf = appendErrors(buf, errs)
		if hasPong {
			buf = controlFrame(buf, opPong, pong)
		}
		if ping {
			buf = controlFrame(buf, opPing, nil)
		}
		var err error
		if len(buf) > 0 {
			err = sk.write(buf)
		}
		if !sk.attached {
			offers, pull = nil, true // the pull attaches first
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

// finish sends the error events still waiting and the close frame, closes
// the connection and, once no read burst runs, cleans up. It runs on the
// writer, which stays marked running so that no other writer starts.
func (sk *socket) finish(errs []*wire.Error) {
	s := sk.srv
	sk.pingTimer.Stop()
	sk.nc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = sk.nc.Write(appendClose(appendErrors(nil, errs), sk.closeCode, sk.closeText))
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

// handleFrame acts on one client frame: a control frame at once, a data
// frame once its message is complete.
func (sk *socket) handleFrame(f clientFrame) bool {
	switch f.op {
	case opPing: // the writer answers
		sk.mu.Lock()
		sk.pong, sk.hasPong = append([]byte(nil), f.payload...), true
		sk.mu.Unlock()
		sk.kick()
		return true
	case opPong: // its arrival moved lastRead
		return true
	case opClose: // answer it and end
		sk.closeWith(closeNormal, "", "client closed")
		return false
	default: // opText, opBinary, opContinuation
		op, msg, done, perr := sk.asm.add(f)
		if perr != nil {
			sk.closeWith(perr.code, perr.text, perr.reason)
			return false
		}
		if !done {
			return true
		}
		return sk.handleMessage(op, msg)
	}
}

// handleMessage acts on one complete client message.
func (sk *socket) handleMessage(op byte, data []byte) bool {
	s := sk.srv
	f, werr, perr := decodeMessage(op, data)
	if perr != nil {
		sk.closeWith(perr.code, perr.text, perr.reason)
		return false
	}
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
		err := s.markRead(c, sk.user, f.Read.UserID, f.Read.UpToMessageID)
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

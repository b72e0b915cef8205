package edge_test

// Contract tests for the WebSocket's presence, heartbeat, error and token
// behaviour (API.md, "WebSocket"), through real servers.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/edgenode/edgenode/auth"
	"github.com/edgenode/edgenode/edge"
	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

// stream reads a socket on a goroutine of its own, so that a test can wait
// for a frame with a timeout without breaking the connection (a gorilla
// read that times out cannot be retried).
type stream struct {
	t      *testing.T
	conn   *websocket.Conn
	frames chan wire.Frame
	done   chan struct{}
	err    error     // why reading ended; set before done closes
	endAt  time.Time // when reading ended
	pings  atomic.Int64
}

// openStream dials user's socket (or, with tok set, the socket of that
// token) and starts reading it. onPing, when set, replaces gorilla's ping
// handler (which answers with a pong).
func (h *harness) openStream(user int64, tok string, onPing func(c *websocket.Conn, data string) error) *stream {
	h.t.Helper()
	hdr := http.Header{}
	if tok != "" {
		hdr.Set("Authorization", "Bearer "+tok)
	}
	c, resp, err := h.dialRaw(user, hdr)
	if err != nil {
		h.t.Fatalf("dial: %v (%v)", err, resp)
	}
	return newStream(h.t, c.conn, onPing)
}

func newStream(t *testing.T, conn *websocket.Conn, onPing func(c *websocket.Conn, data string) error) *stream {
	s := &stream{t: t, conn: conn, frames: make(chan wire.Frame, 1<<16), done: make(chan struct{})}
	def := conn.PingHandler()
	conn.SetPingHandler(func(data string) error {
		s.pings.Add(1)
		if onPing != nil {
			return onPing(conn, data)
		}
		return def(data)
	})
	go func() {
		defer close(s.done)
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				s.err, s.endAt = err, time.Now()
				return
			}
			var f wire.Frame
			if err := json.Unmarshal(data, &f); err != nil {
				s.err, s.endAt = fmt.Errorf("bad frame %s: %v", data, err), time.Now()
				return
			}
			s.frames <- f
		}
	}()
	return s
}

// wait returns the first frame of type typ for which ok holds (nil: any),
// skipping others; it fails the test if the socket ends or within timeout.
func (s *stream) wait(typ string, ok func(json.RawMessage) bool, timeout time.Duration) wire.Frame {
	s.t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case f := <-s.frames:
			if f.Type == typ && (ok == nil || ok(f.Payload)) {
				return f
			}
		case <-s.done:
			// Frames read before the end are still in the channel.
			select {
			case f := <-s.frames:
				if f.Type == typ && (ok == nil || ok(f.Payload)) {
					return f
				}
				continue
			default:
			}
			s.t.Fatalf("waiting for %s: socket ended: %v", typ, s.err)
		case <-timer.C:
			s.t.Fatalf("waiting for %s: timed out after %v", typ, timeout)
		}
	}
}

// closed waits until the socket ends and returns its close error (the
// frames before it are drained).
func (s *stream) closed(timeout time.Duration) *websocket.CloseError {
	s.t.Helper()
	select {
	case <-s.done:
	case <-time.After(timeout):
		s.t.Fatalf("socket still open after %v", timeout)
	}
	var ce *websocket.CloseError
	if !errors.As(s.err, &ce) {
		s.t.Fatalf("socket ended without a close frame: %v", s.err)
	}
	return ce
}

// isOpen reports whether the socket has not ended.
func (s *stream) isOpen() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

func statusOf(t *testing.T, p json.RawMessage) wire.ContactStatus {
	var st wire.ContactStatus
	if err := json.Unmarshal(p, &st); err != nil {
		t.Fatalf("bad status %s: %v", p, err)
	}
	return st
}

func statusFrom(user int64, typing bool) func(json.RawMessage) bool {
	return func(p json.RawMessage) bool {
		var st wire.ContactStatus
		return json.Unmarshal(p, &st) == nil && st.UserID == user && st.Typing == typing
	}
}

func frameBytes(t *testing.T, typ string, payload any) []byte {
	p, _ := json.Marshal(payload)
	b, err := json.Marshal(wire.Frame{Type: typ, Payload: p})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Bug: ~300 back-to-back typing frames from one user closed the recipient's
// socket with 1008 "too slow" although it read as fast as it could.
func TestTypingFloodDoesNotDisconnectRecipient(t *testing.T) {
	h := start(t, nil)
	victim := h.openStream(2, "", nil)
	victim.wait(wire.TypeReady, nil, 5*time.Second)
	attacker := h.dial(5)
	typingOn := frameBytes(t, wire.TypeTyping, wire.TypingFrame{ToUserID: 2, Typing: true})
	typingOff := frameBytes(t, wire.TypeTyping, wire.TypingFrame{ToUserID: 2, Typing: false})
	for i := 0; i < 300; i++ {
		if err := attacker.conn.WriteMessage(websocket.TextMessage, typingOn); err != nil {
			t.Fatal(err)
		}
	}
	victim.wait(wire.TypeContactStatusUpdate, statusFrom(5, true), 5*time.Second)

	// The latest state reaches the victim: the attacker stops typing. (A
	// socket's excess typing frames may be dropped, so repeat until one is
	// taken; the first one relayed ends the indicator.)
	deadline := time.Now().Add(5 * time.Second)
	for seen := false; !seen; {
		if time.Now().After(deadline) {
			t.Fatal("victim never saw typing: false")
		}
		if err := attacker.conn.WriteMessage(websocket.TextMessage, typingOff); err != nil {
			t.Fatal(err)
		}
		select {
		case f := <-victim.frames:
			seen = f.Type == wire.TypeContactStatusUpdate && statusFrom(5, false)(f.Payload)
		case <-victim.done:
			t.Fatalf("victim's socket ended: %v", victim.err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	// And the victim's socket is still open and delivering.
	h.send(1, 2, "after the flood")
	victim.wait(wire.TypeNewMessage, nil, 5*time.Second)
	if !victim.isOpen() {
		t.Fatalf("victim's socket ended: %v", victim.err)
	}
}

// Status updates waiting for a socket are kept one per user, the latest: a
// socket whose writer is stuck (its client not reading) is not closed by any
// volume of one user's status changes, and gets the latest once it reads.
// REST typing is used because it has no per-socket limit.
func TestQueuedStatusesAreCoalescedPerUser(t *testing.T) {
	h := start(t, func(eo *edge.Options, _ *relaylog.Options) {
		eo.WriteTimeout = time.Minute
		eo.MaxContentBytes = 32000
	})
	// The victim's receive buffer is small, so that the server's writes to
	// it block once a few hundred KiB are queued.
	d := *websocket.DefaultDialer
	d.NetDialContext = (&net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		if err != nil {
			return err
		}
		return serr
	}}).DialContext
	conn, _, err := d.Dial("ws"+strings.TrimPrefix(h.url, "http")+"/v1/socket/updates", http.Header{"Authorization": {"Bearer " + tokenFor(t, 2)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h.dial(5)   // the typing user is online
	h.dial(999) // and so is another

	// Fill the pipe: the victim does not read yet.
	content := strings.Repeat("x", 32000)
	for i := 0; i < 300; i++ { // 9.6 MB, more than the kernel buffers
		h.send(1, 2, content)
	}
	// 200 status changes of user 5 while the victim's writer is stuck.
	for i := 0; i < 200; i++ {
		code, _, b := h.do("POST", "/v1/conversations/2/typing", 5, map[string]bool{"typing": i%2 == 0})
		if code != http.StatusNoContent {
			t.Fatalf("typing: %d %s", code, b)
		}
	}
	// Last state: typing false (i = 199). Now the victim reads everything.
	victim := newStream(t, conn, nil)
	victim.wait(wire.TypeReady, nil, 5*time.Second)
	// A later update of another user comes after all of user 5's.
	if code, _, b := h.do("POST", "/v1/conversations/2/typing", 999, map[string]bool{"typing": true}); code != http.StatusNoContent {
		t.Fatalf("typing: %d %s", code, b)
	}
	var fromTyper int
	var last wire.ContactStatus
	victim.wait(wire.TypeContactStatusUpdate, func(p json.RawMessage) bool {
		st := statusOf(t, p)
		if st.UserID == 5 {
			fromTyper++
			last = st
		}
		return st.UserID == 999
	}, 20*time.Second)
	if fromTyper == 0 || last.Typing {
		t.Fatalf("%d updates of user 5, the last %+v; want the latest (typing: false)", fromTyper, last)
	}
	// Coalesced: a handful of updates at most, not one per change.
	if fromTyper > 10 {
		t.Fatalf("%d status updates of user 5 delivered; queued ones were not coalesced (or the writer never blocked)", fromTyper)
	}
	h.send(1, 2, "marker")
	victim.wait(wire.TypeNewMessage, func(p json.RawMessage) bool { return strings.Contains(string(p), "marker") }, 20*time.Second)
}

// A socket's typing frames are limited: a burst to many users reaches only
// some of them (excess frames are dropped silently).
func TestSocketTypingFramesAreLimited(t *testing.T) {
	h := start(t, nil)
	const n = 40
	recips := make([]*stream, n)
	for i := range recips {
		recips[i] = h.openStream(int64(100+i), "", nil)
		recips[i].wait(wire.TypeReady, nil, 5*time.Second)
	}
	h.dial(999) // a second typer, online, whose REST typing is not limited
	attacker := h.dial(5)
	for i := 0; i < n; i++ {
		attacker.sendFrame(wire.TypeTyping, wire.TypingFrame{ToUserID: int64(100 + i), Typing: true})
	}
	// The answer to a watch comes after the typing frames before it were
	// handled.
	attacker.sendFrame(wire.TypeWatch, wire.Watch{UserIDs: []int64{5}})
	attacker.nextStatus()
	for i := 0; i < n; i++ {
		if code, _, b := h.do("POST", fmt.Sprintf("/v1/conversations/%d/typing", 100+i), 999, map[string]bool{"typing": true}); code != http.StatusNoContent {
			t.Fatalf("typing: %d %s", code, b)
		}
	}
	// Each recipient's updates arrive in order: user 5's, if relayed, comes
	// before user 999's.
	reached := 0
	for _, r := range recips {
		saw := false
		r.wait(wire.TypeContactStatusUpdate, func(p json.RawMessage) bool {
			st := statusOf(t, p)
			saw = saw || (st.UserID == 5 && st.Typing)
			return st.UserID == 999
		}, 5*time.Second)
		if saw {
			reached++
		}
	}
	if reached == 0 || reached > 25 {
		t.Fatalf("a burst of %d typing frames reached %d recipients; want some, at most ~20", n, reached)
	}
}

// The ping timeout: a client that answers nothing is closed two ping
// intervals after the server last read from it.
func TestSilentSocketClosedTwoIntervalsAfterLastRead(t *testing.T) {
	const iv = time.Second
	h := start(t, func(eo *edge.Options, _ *relaylog.Options) { eo.PingInterval = iv })
	begin := time.Now()
	s := h.openStream(1, "", func(*websocket.Conn, string) error { return nil }) // never answers
	ce := s.closed(10 * time.Second)
	if ce.Code != websocket.CloseNormalClosure {
		t.Fatalf("closed with %v, want 1000", ce)
	}
	// The server last read the upgrade request, after begin.
	if took := s.endAt.Sub(begin); took < 2*iv-10*time.Millisecond || took > 2*iv+400*time.Millisecond {
		t.Fatalf("silent socket closed %v after it opened; want 2 intervals (%v)", took, 2*iv)
	}
	if s.pings.Load() == 0 {
		t.Fatal("no ping before the close")
	}
}

// A client that answers pings, or sends anything else, is never closed.
func TestAnsweringClientsStayOpen(t *testing.T) {
	const iv = 200 * time.Millisecond
	h := start(t, func(eo *edge.Options, _ *relaylog.Options) { eo.PingInterval = iv })
	pong := h.openStream(1, "", nil) // gorilla answers pings with pongs
	watch := frameBytes(t, wire.TypeWatch, wire.Watch{UserIDs: []int64{}})
	chatty := h.openStream(2, "", func(c *websocket.Conn, _ string) error {
		return c.WriteMessage(websocket.TextMessage, watch) // a frame instead of a pong
	})
	eventually(t, "10 pings on each socket", func() bool {
		if !pong.isOpen() || !chatty.isOpen() {
			return true
		}
		return pong.pings.Load() >= 10 && chatty.pings.Load() >= 10
	})
	if !pong.isOpen() {
		t.Fatalf("socket answering pings was closed: %v", pong.err)
	}
	if !chatty.isOpen() {
		t.Fatalf("socket sending frames was closed: %v", chatty.err)
	}
}

func parseStamp(t *testing.T, st wire.ContactStatus) time.Time {
	t.Helper()
	if st.LastConnectedAt == nil {
		t.Fatalf("lastConnectedAt is null in %+v", st)
	}
	at, err := time.Parse(time.RFC3339Nano, *st.LastConnectedAt)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// When a watched user connects, watchers (and the user watching itself right
// after connecting) see lastConnectedAt = the open time, not an older one.
func TestOnlineUpdateCarriesOpenTime(t *testing.T) {
	h := start(t, nil)
	alice := h.openStream(1, "", nil)
	alice.wait(wire.TypeReady, nil, 5*time.Second)
	if err := alice.conn.WriteMessage(websocket.TextMessage, frameBytes(t, wire.TypeWatch, wire.Watch{UserIDs: []int64{2}})); err != nil {
		t.Fatal(err)
	}
	if st := statusOf(t, alice.wait(wire.TypeContactStatusUpdate, nil, 5*time.Second).Payload); st.UserID != 2 || st.Online {
		t.Fatalf("initial %+v", st)
	}
	isBob := func(online bool) func(json.RawMessage) bool {
		return func(p json.RawMessage) bool { st := statusOf(t, p); return st.UserID == 2 && st.Online == online }
	}
	inRange := func(what string, at, before, after time.Time) {
		t.Helper()
		if at.Before(before.Truncate(time.Millisecond)) || at.After(after) {
			t.Fatalf("%s: lastConnectedAt %v, want the open time in [%v, %v]", what, at, before, after)
		}
	}
	// Twice: the second time the store holds the first socket's times.
	for round := 0; round < 2; round++ {
		before := time.Now()
		bob := h.openStream(2, "", nil)
		st := statusOf(t, alice.wait(wire.TypeContactStatusUpdate, isBob(true), 5*time.Second).Payload)
		// The server takes the open time after it answered the upgrade,
		// so before the update it sends, not before openStream returns.
		after := time.Now()
		inRange(fmt.Sprintf("round %d, watcher", round), parseStamp(t, st), before, after)

		bob.wait(wire.TypeReady, nil, 5*time.Second)
		if err := bob.conn.WriteMessage(websocket.TextMessage, frameBytes(t, wire.TypeWatch, wire.Watch{UserIDs: []int64{2}})); err != nil {
			t.Fatal(err)
		}
		st = statusOf(t, bob.wait(wire.TypeContactStatusUpdate, isBob(true), 5*time.Second).Payload)
		inRange(fmt.Sprintf("round %d, self", round), parseStamp(t, st), before, after)

		closedAt := time.Now()
		bob.conn.Close()
		st = statusOf(t, alice.wait(wire.TypeContactStatusUpdate, isBob(false), 5*time.Second).Payload)
		if at := parseStamp(t, st); at.Before(closedAt.Truncate(time.Millisecond)) {
			t.Fatalf("offline lastConnectedAt %v before the close at %v", at, closedAt)
		}
	}
}

// A user with no socket cannot show as typing: REST typing from an offline
// user is not relayed and the status never says typing while offline.
func TestTypingOnlyWhileOnline(t *testing.T) {
	h := start(t, nil)
	bob := h.openStream(2, "", nil)
	bob.wait(wire.TypeReady, nil, 5*time.Second)
	carol := h.dial(3)
	if code, _, b := h.do("POST", "/v1/conversations/2/typing", 1, map[string]bool{"typing": true}); code != http.StatusNoContent {
		t.Fatalf("typing: %d %s", code, b)
	}
	carol.sendFrame(wire.TypeTyping, wire.TypingFrame{ToUserID: 2, Typing: true})
	// Bob's updates arrive in order: carol's is the first.
	st := statusOf(t, bob.wait(wire.TypeContactStatusUpdate, nil, 5*time.Second).Payload)
	if st.UserID != 3 || !st.Typing || !st.Online {
		t.Fatalf("first update %+v; want carol typing (user 1 has no socket)", st)
	}
	code, _, b := h.do("GET", "/v1/users/1/status", 2, nil)
	var cs wire.ContactStatus
	if code != 200 || json.Unmarshal(b, &cs) != nil || cs.Online || cs.Typing {
		t.Fatalf("status of offline user 1: %d %s", code, b)
	}
}

// Malformed frames get an error event each, or, when a client sends them
// faster than it takes the errors, the socket closes with 1008: errors are
// never dropped silently.
func TestMalformedFloodGetsErrorsOrPolicyClose(t *testing.T) {
	h := start(t, nil)
	s := h.openStream(4, "", nil)
	s.wait(wire.TypeReady, nil, 5*time.Second)
	const n = 100
	for i := 0; i < n; i++ {
		if err := s.conn.WriteMessage(websocket.TextMessage, []byte("not json")); err != nil {
			break // the server may have closed already
		}
	}
	timer := time.NewTimer(5 * time.Second)
	defer timer.Stop()
	errs := 0
	for errs < n {
		select {
		case f := <-s.frames:
			if f.Type == wire.TypeError {
				errs++
			}
		case <-s.done:
			for len(s.frames) > 0 {
				if f := <-s.frames; f.Type == wire.TypeError {
					errs++
				}
			}
			var ce *websocket.CloseError
			if !errors.As(s.err, &ce) || ce.Code != websocket.ClosePolicyViolation || !strings.Contains(ce.Text, "malformed") {
				t.Fatalf("after %d error events the socket ended with %v; want 1008 too many malformed frames", errs, s.err)
			}
			if errs == 0 {
				t.Fatal("no error event before the close")
			}
			return
		case <-timer.C:
			t.Fatalf("%d error events for %d malformed frames, and the socket is still open", errs, n)
		}
	}
}

// exp is enforced on open sockets: the socket closes with 1008 "token
// expired" once its token expires, even while the client answers pings.
func TestSocketClosedWhenTokenExpires(t *testing.T) {
	v, err := auth.NewVerifier(auth.Options{Secret: testSecret, Leeway: -1}) // no clock-skew allowance
	if err != nil {
		t.Fatal(err)
	}
	const iv = 500 * time.Millisecond
	h := start(t, func(eo *edge.Options, _ *relaylog.Options) { eo.Verifier, eo.PingInterval = v, iv })
	exp := time.Now().Unix() + 2 // 1 to 2 s from now
	tok := signed(t, jwt.MapClaims{"sub": "7", "exp": exp}, jwt.SigningMethodHS256, testSecret)
	s := h.openStream(0, tok, nil) // answers pings
	s.wait(wire.TypeReady, nil, 5*time.Second)
	long := h.openStream(8, "", nil) // a token valid for an hour
	ce := s.closed(10 * time.Second)
	if ce.Code != websocket.ClosePolicyViolation || ce.Text != "token expired" {
		t.Fatalf("closed with %v, want 1008 token expired", ce)
	}
	expAt := time.Unix(exp, 0)
	if s.endAt.Before(expAt) || s.endAt.After(expAt.Add(iv+500*time.Millisecond)) {
		t.Fatalf("closed at %v; token expired at %v", s.endAt, expAt)
	}
	if !long.isOpen() {
		t.Fatalf("socket with a valid token closed: %v", long.err)
	}
	// A new socket with the expired token is refused.
	if _, resp, err := h.dialRaw(0, http.Header{"Authorization": {"Bearer " + tok}}); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("dial with expired token: %v %v", err, resp)
	}
}

package edgechat

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgenode/edgenode/wire"
)

// The Real-time Updates Remote DataSource of the seed: one WebSocket,
// reconnected with backoff. Every new socket replays the user's queue from
// its head (API.md, "Delivery"), so a started client catches up through the
// socket alone; GET /v1/messages (Sync) is for programs that do not keep a
// socket.

// Sync fetches everything waiting on the server through GET /v1/messages,
// stores it and acknowledges it (the next page's cursor acknowledges the
// previous page, after it is committed). A started client syncs by itself
// after every (re)connect.
func (c *Client) Sync() error {
	ctx, cancel := context.WithTimeout(c.calls(), 30*time.Second)
	defer cancel()
	return c.SyncContext(ctx)
}

// SyncContext is Sync with a context (Go only).
func (c *Client) SyncContext(ctx context.Context) error {
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	cursor, err := getState(ctx, c.store.db, stateCursor)
	if err != nil {
		return err
	}
	for {
		page, err := c.remote.sync(ctx, cursor, wire.MaxSyncLimit)
		if err != nil {
			return err
		}
		ev := serverEvents{msgs: page.Messages, receipts: page.Receipts, sent: page.SentMessages, reads: page.ConversationsRead}
		if ev.empty() {
			// This call acknowledged the previous page; nothing more waits.
			return nil
		}
		var a applied
		err = c.store.write(ctx, func(tx *sql.Tx) error {
			return c.applyAll(ctx, tx, ev, page.LastSyncedMessage, &a)
		})
		if err != nil {
			return err
		}
		c.notifyApplied(&a)
		cursor = max(cursor, page.LastSyncedMessage)
	}
}

// socket is one open WebSocket.
type socket struct {
	conn    *websocket.Conn
	writeMu sync.Mutex
}

func (s *socket) send(typ string, payload any) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	f, _ := json.Marshal(wire.Frame{Type: typ, Payload: b})
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return s.conn.WriteMessage(websocket.TextMessage, f)
}

// errUnauthorized: the socket's token was refused and no fresh one came.
var errUnauthorized = errors.New("edgechat: token refused")

// errDraining is a close 1012: the node drains, go elsewhere at once.
var errDraining = errors.New("client: edge is draining")

func (c *Client) socketLoop(ctx context.Context) {
	c.notify.connection(ConnConnecting)
	tok, _ := c.auth.current()
	if err := c.edges.refresh(ctx, tok); err != nil {
		c.log.Debug("edges", "err", err)
	}
	failures := 0
	base := time.Duration(c.cfg.ReconnectBaseMillis) * time.Millisecond
	maxWait := time.Duration(c.cfg.ReconnectMaxMillis) * time.Millisecond
	for ctx.Err() == nil {
		edge := c.edges.current()
		wasReady, err := c.runSocket(ctx, edge)
		if ctx.Err() != nil {
			break
		}
		c.notify.connection(ConnConnecting)
		c.log.Debug("socket closed", "edge", edge, "err", err)
		if wasReady {
			failures = 0
		} else {
			failures++
		}
		var wait time.Duration
		if _, failed := c.auth.current(); failed && !errors.Is(err, errUnauthorized) {
			// Revoked (device_revoked) while connected: the same wait.
			err = errUnauthorized
		}
		switch {
		case errors.Is(err, errUnauthorized):
			// The token was refused and no fresh one came: dialling again
			// with it cannot succeed. Wait for SetToken or the TokenSource.
			c.notify.connection(ConnOffline)
			if changed := c.auth.waitChange(); func() bool { _, failed := c.auth.current(); return failed }() {
				select {
				case <-ctx.Done():
				case <-changed:
				}
			}
			failures = 0
			continue
		case errors.Is(err, errDraining):
			c.edges.failed(edge)
		case !wasReady:
			c.edges.failed(edge)
			wait = backoff(failures, base, maxWait)
			if failures%3 == 0 {
				// Edges may have moved; ask again and re-measure.
				tok, _ := c.auth.current()
				c.edges.refresh(ctx, tok)
			}
		default:
			wait = backoff(1, base, maxWait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-c.redial:
			// The network changed: the edges' round trips did too.
			failures = 0
			tok, _ := c.auth.current()
			c.edges.refresh(ctx, tok)
		}
		t.Stop()
	}
	c.notify.connection(ConnOffline)
}

// runSocket connects to one edge and serves the socket until it closes. It
// reports whether the server said ready.
func (c *Client) runSocket(ctx context.Context, edge string) (bool, error) {
	u := "ws" + strings.TrimPrefix(edge, "http") + "/v1/socket/updates"
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, Proxy: http.ProxyFromEnvironment}
	tok, _ := c.auth.current()
	conn, resp, err := d.DialContext(ctx, u, http.Header{"Authorization": {"Bearer " + tok}, wire.DeviceIDHeader: {c.remote.device}})
	if err != nil && resp != nil && resp.StatusCode == http.StatusUnauthorized {
		// Expired or revoked: one fresh token, one more try.
		fresh, rerr := c.auth.refresh(TokenUnauthorized, tok)
		if rerr != nil {
			return false, errUnauthorized
		}
		conn, resp, err = d.DialContext(ctx, u, http.Header{"Authorization": {"Bearer " + fresh}, wire.DeviceIDHeader: {c.remote.device}})
		if err != nil && resp != nil && resp.StatusCode == http.StatusUnauthorized {
			c.auth.fail(wire.CodeUnauthenticated, "the server refused the TokenSource's token")
			return false, errUnauthorized
		}
	}
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusServiceUnavailable {
			return false, errDraining
		}
		return false, err
	}
	defer conn.Close()
	conn.SetReadLimit(16 << 20)
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, b, err := conn.ReadMessage()
	if err != nil {
		return false, err
	}
	var f wire.Frame
	var ready wire.Ready
	if json.Unmarshal(b, &f) != nil || f.Type != wire.TypeReady || json.Unmarshal(f.Payload, &ready) != nil {
		return false, fmt.Errorf("client: first frame is not ready: %.100s", b)
	}
	// The server pings every heartbeat; a socket silent for longer than
	// 2.5 heartbeats is half-open, so stop trusting it.
	hb := time.Duration(ready.HeartbeatMs) * time.Millisecond
	if hb <= 0 {
		hb = 25 * time.Second
	}
	deadline := hb*5/2 + 5*time.Second
	conn.SetReadDeadline(time.Now().Add(deadline))
	s := &socket{conn: conn}
	// beats wakes the presence watchdog on every ping and frame.
	beats := make(chan struct{}, 1)
	beat := func() {
		select {
		case beats <- struct{}{}:
		default:
		}
	}
	conn.SetPingHandler(func(data string) error {
		conn.SetReadDeadline(time.Now().Add(deadline))
		beat()
		s.writeMu.Lock()
		defer s.writeMu.Unlock()
		return conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(5*time.Second))
	})

	c.mu.Lock()
	c.sock = s
	watched := append([]int64(nil), c.watched...)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.sock == s {
			c.sock = nil
		}
		c.mu.Unlock()
		c.presenceUnknown()
	}()
	c.notify.connection(ConnOnline)
	if len(watched) > 0 {
		s.send(wire.TypeWatch, wire.Watch{UserIDs: watched})
	}

	// Every goroutine of this socket ends before runSocket returns:
	// cancel (deferred last, so run first) closes the connection, which
	// ends the reader; the sync stops with the context.
	var workers sync.WaitGroup
	defer workers.Wait()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers.Add(4)
	// The presence watchdog: a socket that misses a ping by a tenth of the
	// interval may be half-open (the network vanished without a close), so
	// what it said of presence and typing is no longer known: cleared at
	// once, well before the read deadline closes the socket. When pings
	// come again, the watch is sent again, and its answer restores them.
	go func() {
		defer workers.Done()
		stale := false
		t := time.NewTimer(hb + hb/10)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-beats:
				if stale {
					stale = false
					c.mu.Lock()
					watched := append([]int64(nil), c.watched...)
					c.mu.Unlock()
					if len(watched) > 0 {
						s.send(wire.TypeWatch, wire.Watch{UserIDs: watched})
					}
				}
			case <-t.C:
				stale = true
				c.presenceUnknown()
			}
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
			t.Reset(hb + hb/10)
		}
	}()
	go func() {
		defer workers.Done()
		<-sctx.Done()
		conn.Close() // unblocks the reader
	}()
	// The network is back: send what is queued without waiting out the
	// backoff. What waits on the server comes on this socket (it replays
	// the queue), so there is no REST sync to make.
	go func() {
		defer workers.Done()
		if err := c.retryNow(sctx); err == nil {
			c.wake()
		}
	}()

	frames := make(chan wire.Frame, 256)
	readErr := make(chan error, 1)
	go func() {
		defer workers.Done()
		defer close(frames)
		for {
			_, b, err := conn.ReadMessage()
			if err != nil {
				readErr <- err
				return
			}
			conn.SetReadDeadline(time.Now().Add(deadline))
			beat()
			var f wire.Frame
			if json.Unmarshal(b, &f) != nil {
				continue
			}
			select {
			case frames <- f:
			case <-sctx.Done():
				readErr <- sctx.Err()
				return
			}
		}
	}()
	for {
		f, ok := <-frames
		if !ok {
			err := <-readErr
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Code == websocket.CloseServiceRestart {
				return true, errDraining
			}
			return true, err
		}
		// Batch what has arrived into one transaction, then acknowledge.
		batch := []wire.Frame{f}
	more:
		for len(batch) < 500 {
			select {
			case f, ok := <-frames:
				if !ok {
					break more
				}
				batch = append(batch, f)
			default:
				break more
			}
		}
		if err := c.handleFrames(sctx, s, batch); err != nil {
			return true, err
		}
	}
}

func (c *Client) handleFrames(ctx context.Context, s *socket, batch []wire.Frame) error {
	var ev serverEvents
	for _, f := range batch {
		switch f.Type {
		case wire.TypeMessageSent:
			var p struct {
				Message wire.Message `json:"message"`
			}
			if json.Unmarshal(f.Payload, &p) == nil && p.Message.MessageID > 0 && p.Message.FromUserID == c.me {
				ev.sent = append(ev.sent, p.Message)
			}
			ev.sentIDs = append(ev.sentIDs, f.ID)
		case wire.TypeConversationRead:
			var r wire.ReadFrame
			if json.Unmarshal(f.Payload, &r) == nil && r.UserID > 0 && r.UpToMessageID > 0 {
				ev.reads = append(ev.reads, r)
			}
			ev.readIDs = append(ev.readIDs, f.ID)
		case wire.TypeNewMessage:
			var p struct {
				Message wire.Message `json:"message"`
			}
			if json.Unmarshal(f.Payload, &p) == nil && p.Message.MessageID > 0 {
				ev.msgs = append(ev.msgs, p.Message)
			}
		case wire.TypeMessageDelivered, wire.TypeMessageRead, wire.TypeMessageExpired:
			var r wire.Receipt
			if json.Unmarshal(f.Payload, &r) == nil && r.ID > 0 {
				ev.receipts = append(ev.receipts, r)
			}
		case wire.TypeContactStatusUpdate:
			var cs wire.ContactStatus
			if json.Unmarshal(f.Payload, &cs) == nil {
				c.contactStatus(ctx, cs)
			}
		case wire.TypeError:
			c.log.Debug("socket error event", "payload", string(f.Payload))
			var e wire.ErrorDetail
			if json.Unmarshal(f.Payload, &e) == nil && e.Code == wire.CodeDeviceRevoked {
				c.auth.fail(e.Code, e.Message)
			}
		}
	}
	if ev.empty() && len(ev.sentIDs) == 0 && len(ev.readIDs) == 0 {
		return nil
	}
	var a applied
	if err := c.store.write(ctx, func(tx *sql.Tx) error {
		return c.applyAll(ctx, tx, ev, 0, &a)
	}); err != nil {
		return err
	}
	c.notifyApplied(&a)
	// Acknowledge only what is committed.
	return s.send(wire.TypeAck, wire.Ack{UpTo: a.maxID})
}

// presenceUnknown: the socket closed, so nothing tells the client of
// contacts going offline or stopping typing any more. Every live status
// becomes offline and not typing (the last seen time stays), and the
// listener hears of each that changed.
func (c *Client) presenceUnknown() {
	c.mu.Lock()
	var changed []ContactInfo
	for id, ci := range c.contacts {
		if ci.Online || ci.Typing {
			ci.Online, ci.Typing = false, false
			c.contacts[id] = ci
			changed = append(changed, ci)
		}
	}
	c.mu.Unlock()
	for _, ci := range changed {
		c.notify.contact(ci)
	}
}

func (c *Client) contactStatus(ctx context.Context, cs wire.ContactStatus) {
	ci := ContactInfo{UserID: cs.UserID, Online: cs.Online, Typing: cs.Typing}
	if cs.LastConnectedAt != nil {
		ci.LastConnectedAt = *cs.LastConnectedAt
		c.store.write(ctx, func(tx *sql.Tx) error {
			if err := ensureUser(ctx, tx, cs.UserID); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `UPDATE Users SET last_connected_at = ? WHERE id = ?`, ci.LastConnectedAt, cs.UserID)
			return err
		})
	}
	c.mu.Lock()
	c.contacts[cs.UserID] = ci
	c.mu.Unlock()
	c.notify.contact(ci)
}

// Watch replaces the set of contacts whose presence the client follows
// (typically the contact of the open conversation, or the chat list). It
// is kept across reconnects. A watched user who shares no conversation
// with this user yet looks never connected; their status follows once a
// message passes between the two. ids is a comma-separated list of user
// ids, for gomobile; Go callers can use WatchIDs.
func (c *Client) Watch(ids string) error {
	var list []int64
	for _, p := range strings.Split(ids, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		var id int64
		if _, err := fmt.Sscan(p, &id); err != nil || id <= 0 {
			return fmt.Errorf("client: bad user id %q", p)
		}
		list = append(list, id)
	}
	return c.WatchIDs(list)
}

// WatchIDs is Watch with a slice (Go only).
func (c *Client) WatchIDs(ids []int64) error {
	if len(ids) > wire.MaxWatch {
		return fmt.Errorf("client: at most %d watched users", wire.MaxWatch)
	}
	c.mu.Lock()
	c.watched = append([]int64(nil), ids...)
	s := c.sock
	c.mu.Unlock()
	if s != nil {
		return s.send(wire.TypeWatch, wire.Watch{UserIDs: ids})
	}
	return nil
}

// ContactInfo returns the last known presence and typing state of a user:
// live when watched over a connected socket, else what chats.db remembers
// (the last time they connected).
func (c *Client) ContactInfo(userID int64) *ContactInfo {
	c.mu.Lock()
	ci, ok := c.contacts[userID]
	c.mu.Unlock()
	if ok {
		return &ci
	}
	ci = ContactInfo{UserID: userID}
	var last sql.NullString
	c.store.db.QueryRow(`SELECT last_connected_at FROM Users WHERE id = ?`, userID).Scan(&last)
	ci.LastConnectedAt = last.String
	return &ci
}

// FetchContactInfo asks the server for a user's status (GET
// /v1/users/{id}/status), remembers it and returns it.
func (c *Client) FetchContactInfo(userID int64) (*ContactInfo, error) {
	ctx, cancel := context.WithTimeout(c.calls(), time.Duration(c.cfg.SendTimeoutMillis)*time.Millisecond)
	defer cancel()
	cs, err := c.remote.status(ctx, userID)
	if err != nil {
		return nil, err
	}
	c.contactStatus(ctx, cs)
	return c.ContactInfo(userID), nil
}

// SetTyping tells contactID whether the user is typing to them. Renew
// typing=true every 3 to 5 s while the user types; the indicator ends by
// itself about 6 s after the last one. It uses the socket when connected,
// REST otherwise.
func (c *Client) SetTyping(contactID int64, typing bool) error {
	c.mu.Lock()
	s := c.sock
	c.mu.Unlock()
	if s != nil && s.send(wire.TypeTyping, wire.TypingFrame{ToUserID: contactID, Typing: typing}) == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(c.calls(), 5*time.Second)
	defer cancel()
	return c.remote.typing(ctx, contactID, typing)
}

// Connected reports whether the real-time socket is open.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sock != nil
}

// CurrentEdge is the base URL of the edge the client uses now.
func (c *Client) CurrentEdge() string { return c.edges.current() }

// Edges is the edges the client knows, in the order it tries them.
func (c *Client) Edges() *EdgeList { return c.edges.snapshot() }

// RefreshEdges asks for GET /v1/edges again and re-measures round trips.
func (c *Client) RefreshEdges() error {
	ctx, cancel := context.WithTimeout(c.calls(), 10*time.Second)
	defer cancel()
	tok, _ := c.auth.current()
	return c.edges.refresh(ctx, tok)
}

package edge_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgenode/edgenode/auth"
	"github.com/edgenode/edgenode/edge"
	"github.com/edgenode/edgenode/presence"
	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

// memStore is an edge.Store in memory: a queue per user, ids increasing
// (laid out as relaylog's, so an event's Time is its commit time), Ack
// removing the events up to an id and committing DELIVERED receipts to
// their senders, MarkRead committing a READ receipt. Like the relay log, it
// tells the presence hub of every commit (notify, which is hub.Committed
// as the node wires it); nothing here needs raft or a disk.
type memStore struct {
	notify func(user int64)

	mu       sync.Mutex
	lastID   int64
	queues   map[int64][]relaylog.Event
	requests map[[2]int64]relaylog.Event // by (sender, requestId)
	shared   map[[2]int64]bool           // by (min, max) user
	lastConn map[int64]time.Time
	// sloppy makes Pending ignore its cursor and answer from the head of
	// the queue, as a store whose copy lags might: the socket must not
	// write an event twice for it.
	sloppy bool
	pulls  int // Pending calls
}

func newMemStore() *memStore {
	return &memStore{
		queues: make(map[int64][]relaylog.Event), requests: make(map[[2]int64]relaylog.Event),
		shared: make(map[[2]int64]bool), lastConn: make(map[int64]time.Time),
	}
}

// nextIDLocked is the next id: above the last one, and carrying the time.
func (m *memStore) nextIDLocked() int64 {
	id := (time.Now().UnixMilli() - relaylog.IDEpochMs) << 12
	if id <= m.lastID {
		id = m.lastID + 1
	}
	m.lastID = id
	return id
}

// appendLocked queues ev for user with a new id, and returns it.
func (m *memStore) appendLocked(user int64, ev relaylog.Event) relaylog.Event {
	ev.ID = m.nextIDLocked()
	m.queues[user] = append(m.queues[user], ev)
	return ev
}

// commit queues ev for user and notifies the hub, as a committed batch of
// the relay log does.
func (m *memStore) commit(user int64, ev relaylog.Event) relaylog.Event {
	m.mu.Lock()
	ev = m.appendLocked(user, ev)
	m.mu.Unlock()
	m.fire(user)
	return ev
}

// message commits a message from one user to another.
func (m *memStore) message(from, to int64, content string) relaylog.Event {
	return m.commit(to, relaylog.Event{Kind: relaylog.KindMessage, From: from, To: to, Content: content, CreatedAt: wire.FormatTime(time.Now())})
}

func (m *memStore) fire(user int64) {
	if m.notify != nil {
		m.notify(user)
	}
}

// queued is the ids in user's queue.
func (m *memStore) queued(user int64) []int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []int64
	for _, ev := range m.queues[user] {
		ids = append(ids, ev.ID)
	}
	return ids
}

func pairKey(a, b int64) [2]int64 {
	if a > b {
		a, b = b, a
	}
	return [2]int64{a, b}
}

func (m *memStore) Send(_ context.Context, from int64, req wire.NewMessageRequest) (relaylog.Event, bool, error) {
	m.mu.Lock()
	if ev, ok := m.requests[[2]int64{from, req.RequestID}]; ok {
		m.mu.Unlock()
		return ev, false, nil
	}
	ev := m.appendLocked(req.ToUserID, relaylog.Event{Kind: relaylog.KindMessage, From: from, To: req.ToUserID, Content: req.Content, CreatedAt: req.CreatedAt})
	m.requests[[2]int64{from, req.RequestID}] = ev
	m.shared[pairKey(from, req.ToUserID)] = true
	m.mu.Unlock()
	m.fire(req.ToUserID)
	return ev, true, nil
}

func (m *memStore) Pending(_ context.Context, user, after int64, limit int) ([]relaylog.Event, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pulls++
	q := m.queues[user]
	i := 0
	if !m.sloppy {
		i = sort.Search(len(q), func(i int) bool { return q[i].ID > after })
	}
	q = q[i:]
	more := len(q) > limit
	if more {
		q = q[:limit]
	}
	return append([]relaylog.Event(nil), q...), more, nil
}

func (m *memStore) Ack(_ context.Context, user, upTo int64) (int, error) {
	m.mu.Lock()
	q := m.queues[user]
	n := sort.Search(len(q), func(i int) bool { return q[i].ID > upTo })
	acked := q[:n]
	m.queues[user] = append([]relaylog.Event(nil), q[n:]...)
	bySender := make(map[int64][]int64)
	var senders []int64
	for _, ev := range acked {
		if ev.Kind != relaylog.KindMessage {
			continue
		}
		if _, ok := bySender[ev.From]; !ok {
			senders = append(senders, ev.From)
		}
		bySender[ev.From] = append(bySender[ev.From], ev.ID)
	}
	for _, s := range senders {
		m.appendLocked(s, relaylog.Event{Kind: relaylog.KindDelivered, By: user, MessageIDs: bySender[s]})
	}
	m.mu.Unlock()
	for _, s := range senders {
		m.fire(s)
	}
	return n, nil
}

func (m *memStore) MarkRead(_ context.Context, reader, sender, upTo int64) error {
	m.commit(sender, relaylog.Event{Kind: relaylog.KindRead, By: reader, UpTo: upTo})
	return nil
}

// Attach, AckDevice, Unlink and LinkedDevices: memStore links no device,
// as a shard with a replica of a build before linked devices: a user's
// devices share one queue (the relay log's devices are tested on it, in
// relaylog and node).
func (m *memStore) Attach(context.Context, int64, string) (int64, bool, error) { return 0, false, nil }

func (m *memStore) AckDevice(ctx context.Context, user int64, _ string, upTo int64) (int, error) {
	return m.Ack(ctx, user, upTo)
}

func (m *memStore) SentCopy(context.Context, int64, relaylog.Event) (bool, error) { return false, nil }

func (m *memStore) ReadSync(context.Context, int64, int64, int64) error { return nil }

func (m *memStore) Unlink(context.Context, int64, string) (bool, error) { return false, nil }

func (m *memStore) LinkedDevices(context.Context, int64) ([]relaylog.Linked, error) { return nil, nil }

func (m *memStore) RegisterDevice(context.Context, int64, relaylog.Device) error { return nil }

func (m *memStore) UnregisterDevice(context.Context, int64, string) error { return nil }

func (m *memStore) SetLastConnected(_ context.Context, user int64, t time.Time) error {
	m.mu.Lock()
	m.lastConn[user] = t
	m.mu.Unlock()
	return nil
}

// LastConnected is the hub's lookup (presence.Options.LastConnected).
func (m *memStore) LastConnected(user int64) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.lastConn[user]
	return t, ok
}

func (m *memStore) Shared(_ context.Context, viewer int64, users []int64) ([]bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]bool, len(users))
	for i, u := range users {
		out[i] = m.shared[pairKey(viewer, u)]
	}
	return out, nil
}

func (m *memStore) Ready() bool { return true }

var _ edge.Store = (*memStore)(nil)

// memHarness is a Server on a memStore behind an httptest server.
type memHarness struct {
	t     *testing.T
	url   string
	store *memStore
	hub   *presence.Hub
	srv   *edge.Server
}

func startMem(t *testing.T, mod func(*edge.Options)) *memHarness {
	t.Helper()
	st := newMemStore()
	hub := presence.New(presence.Options{LastConnected: st.LastConnected})
	st.notify = hub.Committed
	v, err := auth.NewVerifier(auth.Options{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	eo := edge.Options{NodeID: "mem", Region: "test", Log: st, Hub: hub, Verifier: v,
		OpenPresence: true, SendRate: 1000, SendBurst: 1000, CallRate: 1e6, CallBurst: 1e6}
	if mod != nil {
		mod(&eo)
	}
	srv := edge.New(eo)
	hts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		srv.Drain(ctx)
		cancel()
		hts.Close()
	})
	return &memHarness{t: t, url: hts.URL, store: st, hub: hub, srv: srv}
}

// dial opens a socket for user and returns it with its first frame, which
// must be ready.
func (h *memHarness) dial(user int64) *wsClient {
	h.t.Helper()
	hdr := make(map[string][]string)
	hdr["Authorization"] = []string{"Bearer " + tokenFor(h.t, user)}
	conn, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(h.url, "http")+"/v1/socket/updates", hdr)
	if err != nil {
		h.t.Fatalf("dial: %v (%v)", err, resp)
	}
	h.t.Cleanup(func() { conn.Close() })
	c := &wsClient{t: h.t, conn: conn}
	if f := c.read(); f.Type != wire.TypeReady {
		h.t.Fatalf("first frame is %q, want ready", f.Type)
	} else if err := json.Unmarshal(f.Payload, &c.ready); err != nil {
		h.t.Fatal(err)
	}
	return c
}

// read reads the next frame, whatever its type.
func (c *wsClient) read() wire.Frame {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, data, err := c.conn.ReadMessage()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	var f wire.Frame
	if err := json.Unmarshal(data, &f); err != nil {
		c.t.Fatalf("bad frame %s: %v", data, err)
	}
	return f
}

var barrierUser int64 = 1 << 40

// settle returns every frame the server writes until the socket's writer
// has done all the work queued before the call: events missing from it were
// held back, not late. It sends a watch frame and reads up to its answer,
// twice: a writer run writes the answer before the pulls and pushes it took
// with it, but the second answer goes out in a later run.
func (c *wsClient) settle() []wire.Frame {
	c.t.Helper()
	return append(c.barrier(), c.barrier()...)
}

// barrier returns the frames before the answer to a watch frame sent now.
func (c *wsClient) barrier() []wire.Frame {
	c.t.Helper()
	barrierUser++
	u := barrierUser
	c.sendFrame(wire.TypeWatch, wire.Watch{UserIDs: []int64{u}})
	var before []wire.Frame
	for {
		f := c.read()
		if f.Type == wire.TypeContactStatusUpdate {
			var st wire.ContactStatus
			if err := json.Unmarshal(f.Payload, &st); err == nil && st.UserID == u {
				return before
			}
		}
		before = append(before, f)
	}
}

// eventIDs is the ids of the new_message and receipt frames among fs.
func eventIDs(fs []wire.Frame) []int64 {
	var ids []int64
	for _, f := range fs {
		switch f.Type {
		case wire.TypeContactStatusUpdate, wire.TypeError, wire.TypeReady:
		default:
			ids = append(ids, f.ID)
		}
	}
	return ids
}

func idsOf(evs ...relaylog.Event) []int64 {
	ids := make([]int64, len(evs))
	for i := range evs {
		ids[i] = evs[i].ID
	}
	return ids
}

func sameIDs(got, want []int64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// Events queued while the user was away follow ready, oldest first, and
// nothing else comes.
func TestMemReplayAfterReady(t *testing.T) {
	h := startMem(t, nil)
	e1 := h.store.message(1, 2, "one")
	e2 := h.store.message(3, 2, "two")
	e3 := h.store.commit(2, relaylog.Event{Kind: relaylog.KindRead, By: 1, UpTo: 7})
	c := h.dial(2)
	if c.ready.UserID != 2 || c.ready.NodeID != "mem" {
		t.Fatalf("ready = %+v", c.ready)
	}
	var got []int64
	for len(got) < 3 {
		f := c.read()
		got = append(got, f.ID)
		if len(got) == 1 && f.Type != wire.TypeNewMessage {
			t.Fatalf("first event is %q", f.Type)
		}
	}
	if want := idsOf(e1, e2, e3); !sameIDs(got, want) {
		t.Fatalf("replayed %v, want %v", got, want)
	}
	if rest := eventIDs(c.settle()); len(rest) != 0 {
		t.Fatalf("more events after the replay: %v", rest)
	}
}

// An event committed while the socket is open is pushed, whether committed
// by the store or sent through the REST API.
func TestMemLivePush(t *testing.T) {
	h := startMem(t, nil)
	c := h.dial(2)
	ev := h.store.message(1, 2, "live")
	id, msg := c.nextMessage()
	if id != ev.ID || msg.Content != "live" || msg.FromUserID != 1 {
		t.Fatalf("pushed %d %+v, want %d", id, msg, ev.ID)
	}
	hh := &harness{t: t, url: h.url}
	r := hh.send(5, 2, "over rest")
	id, msg = c.nextMessage()
	if id != r.Message.MessageID || msg.Content != "over rest" {
		t.Fatalf("pushed %d %+v, want %d", id, msg, r.Message.MessageID)
	}
}

// The window holds at most MaxUnacked events unacknowledged: more wait in
// the queue until acks come, and an ack removes what it covers.
func TestMemFlowWindowAndAck(t *testing.T) {
	h := startMem(t, func(o *edge.Options) { o.MaxUnacked = 2 })
	var evs []relaylog.Event
	for i := 0; i < 5; i++ {
		evs = append(evs, h.store.message(1, 2, "m"))
	}
	all := idsOf(evs...)
	c := h.dial(2)

	got := eventIDs(c.settle())
	if !sameIDs(got, all[:2]) {
		t.Fatalf("before any ack: %v, want %v", got, all[:2])
	}
	// A commit while the window is full is held back too.
	late := h.store.message(1, 2, "late")
	all = append(all, late.ID)
	if got := eventIDs(c.settle()); len(got) != 0 {
		t.Fatalf("window full, yet sent %v", got)
	}

	// One ack opens one place.
	c.sendFrame(wire.TypeAck, wire.Ack{UpTo: all[0]})
	if f := c.read(); f.ID != all[2] {
		t.Fatalf("after ack: %q %d, want %d", f.Type, f.ID, all[2])
	}
	if got := eventIDs(c.settle()); len(got) != 0 {
		t.Fatalf("one ack, yet sent %v too", got)
	}
	eventually(t, "the ack removing the first event", func() bool {
		q := h.store.queued(2)
		return len(q) == 5 && q[0] == all[1]
	})

	// Acking everything sent lets the rest through.
	c.sendFrame(wire.TypeAck, wire.Ack{UpTo: all[2]})
	got = nil
	for len(got) < 2 {
		got = append(got, c.read().ID)
	}
	if !sameIDs(got, all[3:5]) {
		t.Fatalf("after second ack: %v, want %v", got, all[3:5])
	}
	c.sendFrame(wire.TypeAck, wire.Ack{UpTo: all[4]})
	if f := c.read(); f.ID != all[5] {
		t.Fatalf("last: %d, want %d", f.ID, all[5])
	}
	// An ack beyond what was sent is capped at it; everything sent is
	// acknowledged here, so the queue empties.
	c.sendFrame(wire.TypeAck, wire.Ack{UpTo: all[5] + 1000})
	eventually(t, "the queue to empty", func() bool { return len(h.store.queued(2)) == 0 })
	// The sender got DELIVERED receipts for all six.
	eventually(t, "delivered receipts", func() bool {
		h.store.mu.Lock()
		defer h.store.mu.Unlock()
		n := 0
		for _, ev := range h.store.queues[1] {
			n += len(ev.MessageIDs)
		}
		return n == 6
	})
}

// A malformed client frame is answered with an error event; the socket and
// the node carry on.
func TestMemMalformedFrames(t *testing.T) {
	h := startMem(t, nil)
	c := h.dial(2)
	bad := []struct {
		op   int
		data string
	}{
		{websocket.TextMessage, `not json`},
		{websocket.TextMessage, `{"type":"nope","payload":{}}`},
		{websocket.TextMessage, `{"type":"ack","payload":{"upTo":"x"}}`},
		{websocket.BinaryMessage, `{"type":"ack","payload":{"upTo":1}}`},
	}
	for _, b := range bad {
		if err := c.conn.WriteMessage(b.op, []byte(b.data)); err != nil {
			t.Fatal(err)
		}
		f := c.next(wire.TypeError)
		var e wire.ErrorDetail
		if err := json.Unmarshal(f.Payload, &e); err != nil || e.Code != wire.CodeInvalidArgument || e.Message == "" {
			t.Fatalf("%s: error %s (%v)", b.data, f.Payload, err)
		}
	}
	// The same socket still gets events, and the node takes new sockets.
	ev := h.store.message(1, 2, "still here")
	if id, _ := c.nextMessage(); id != ev.ID {
		t.Fatalf("got %d, want %d", id, ev.ID)
	}
	other := h.dial(3)
	ev = h.store.message(1, 3, "hi")
	if id, _ := other.nextMessage(); id != ev.ID {
		t.Fatalf("other socket got %d, want %d", id, ev.ID)
	}
	if n := h.srv.Sockets(); n != 2 {
		t.Fatalf("%d sockets open, want 2", n)
	}
}

// An event reaches a socket once, though it comes several ways: pushed by
// the user's home twice, and pulled again from a store that answers from the
// head of the queue.
func TestMemNoDuplicates(t *testing.T) {
	h := startMem(t, nil)
	c := h.dial(2)
	// Queued without a notification, then offered twice, as a home's
	// push does (node.deliver hands it to the hub's Offer).
	h.store.mu.Lock()
	h.store.sloppy = true
	e1 := h.store.appendLocked(2, relaylog.Event{Kind: relaylog.KindMessage, From: 1, To: 2, Content: "a"})
	e2 := h.store.appendLocked(2, relaylog.Event{Kind: relaylog.KindMessage, From: 1, To: 2, Content: "b"})
	h.store.mu.Unlock()
	if n := h.hub.Count(2); n != 1 {
		t.Fatalf("%d sessions", n)
	}
	h.hub.Offer(2, 0, []relaylog.Event{e1, e2})
	h.hub.Offer(2, 0, []relaylog.Event{e1, e2})
	h.hub.Offer(2, e1.ID, []relaylog.Event{e2})
	// A commit notifies: the pull answers e1, e2 and e3.
	e3 := h.store.message(1, 2, "c")
	var got []int64
	for len(got) < 3 {
		got = append(got, c.next(wire.TypeNewMessage).ID)
	}
	// More notifications and offers of the same events write nothing.
	h.hub.Committed(2)
	h.hub.Offer(2, 0, []relaylog.Event{e1, e2, e3})
	got = append(got, eventIDs(c.settle())...)
	if want := idsOf(e1, e2, e3); !sameIDs(got, want) {
		t.Fatalf("socket got %v, want %v once each", got, want)
	}
}

package edge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgenode/edgenode/wire"
)

// doDev is harness.do as device dev of user (the Device-Id header).
func (h *harness) doDev(method, path string, user int64, dev string) (int, []byte) {
	h.t.Helper()
	return h.doDevBody(method, path, user, dev, nil)
}

// dialDev opens a socket of user as device dev, named in the header.
func (h *harness) dialDev(user int64, dev string) *wsClient {
	h.t.Helper()
	c, resp, err := h.dialRaw(user, http.Header{wire.DeviceIDHeader: {dev}})
	if err != nil {
		h.t.Fatalf("dial %s: %v (%v)", dev, err, resp)
	}
	c.next("ready")
	return c
}

func (h *harness) devices(user int64, dev string) []wire.LinkedDevice {
	h.t.Helper()
	code, body := h.doDev("GET", "/v1/devices", user, dev)
	if code != http.StatusOK {
		h.t.Fatalf("GET /v1/devices: %d %s", code, body)
	}
	var l wire.DeviceList
	if err := json.Unmarshal(body, &l); err != nil {
		h.t.Fatal(err)
	}
	return l.Devices
}

func (h *harness) syncDev(user int64, dev string, cursor int64) wire.SyncResponse {
	h.t.Helper()
	code, body := h.doDev("GET", "/v1/messages?lastSyncedMessage="+strconv.FormatInt(cursor, 10), user, dev)
	if code != http.StatusOK {
		h.t.Fatalf("sync: %d %s", code, body)
	}
	var r wire.SyncResponse
	if err := json.Unmarshal(body, &r); err != nil {
		h.t.Fatal(err)
	}
	return r
}

// TestEachDeviceOfAUserGetsEveryMessage (issue 17): two devices of a user
// each get a message on their sockets and acknowledge it on their own;
// the sender gets one DELIVERED receipt; a device linked later gets only
// what no device took; a reconnecting device does not get again what it
// acknowledged; revoking a device frees what it held.
func TestEachDeviceOfAUserGetsEveryMessage(t *testing.T) {
	h := start(t, nil)
	phone := h.dialDev(2, "phone")
	tablet := h.dialDev(2, "tablet")
	eventually(t, "both devices linked", func() bool { return len(h.devices(2, "")) == 2 })

	m1 := h.send(1, 2, "to every device").Message
	id, msg := phone.nextMessage()
	if id != m1.MessageID || msg.Content != "to every device" {
		t.Fatalf("phone got %d %+v", id, msg)
	}
	phone.sendFrame(wire.TypeAck, wire.Ack{UpTo: id})
	if id, _ := tablet.nextMessage(); id != m1.MessageID {
		t.Fatalf("tablet got %d, want %d", id, m1.MessageID)
	}
	// The phone's ack raised the one DELIVERED receipt.
	eventually(t, "the sender's receipt", func() bool { return len(h.syncDev(1, "", 0).Receipts) == 1 })
	if evs, _, _ := h.log.Pending(context.Background(), 2, 0, 0); len(evs) != 1 {
		t.Fatalf("queue holds %d events while the tablet has not acknowledged, want 1", len(evs))
	}
	tablet.sendFrame(wire.TypeAck, wire.Ack{UpTo: m1.MessageID})
	eventually(t, "the queue empty once both acknowledged", func() bool {
		evs, _, _ := h.log.Pending(context.Background(), 2, 0, 0)
		return len(evs) == 0
	})
	if rs := h.syncDev(1, "", 0).Receipts; len(rs) != 1 {
		t.Fatalf("sender has %d receipts after both devices acknowledged, want 1", len(rs))
	}

	// The phone goes away; a message reaches the tablet only; a desktop
	// (naming itself in the query, as a browser does) links and gets the
	// message no device took, not the one the tablet has.
	phone.conn.Close()
	m2 := h.send(1, 2, "tablet only").Message
	if id, _ := tablet.nextMessage(); id != m2.MessageID {
		t.Fatalf("tablet got %d, want %d", id, m2.MessageID)
	}
	tablet.sendFrame(wire.TypeAck, wire.Ack{UpTo: m2.MessageID})
	eventually(t, "the tablet's ack", func() bool { return h.log.Depth(2) == 0 })
	m3 := h.send(1, 2, "nobody yet").Message
	desktop := h.dialDevQuery(2, "desktop")
	if id, _ := desktop.nextMessage(); id != m3.MessageID {
		t.Fatalf("desktop's first message %d, want %d (the one no device took)", id, m3.MessageID)
	}

	// The phone comes back: it gets m2 and m3, not m1.
	phone = h.dialDev(2, "phone")
	if id, _ := phone.nextMessage(); id != m2.MessageID {
		t.Fatalf("phone back: first message %d, want %d", id, m2.MessageID)
	}

	// A REST sync as the phone starts after its cursor too, and acks on
	// its own behalf.
	r := h.syncDev(2, "phone", 0)
	if len(r.Messages) != 2 || r.Messages[0].MessageID != m2.MessageID {
		t.Fatalf("phone's sync = %+v", r)
	}

	// Revoking the phone: the queue no longer waits for it.
	if code, body := h.doDev("DELETE", "/v1/devices/phone", 2, "tablet"); code != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", code, body)
	}
	for _, d := range h.devices(2, "tablet") {
		if d.DeviceID == "phone" {
			t.Fatal("revoked phone still listed")
		}
	}
}

// dialDevQuery opens a socket of user as device dev, named in the query
// (browsers cannot set headers on the upgrade).
func (h *harness) dialDevQuery(user int64, dev string) *wsClient {
	h.t.Helper()
	hdr := http.Header{"Authorization": {"Bearer " + tokenFor(h.t, user)}}
	conn, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(h.url, "http")+"/v1/socket/updates?"+url.Values{wire.DeviceIDQuery: {dev}}.Encode(), hdr)
	if err != nil {
		h.t.Fatalf("dial %s: %v (%v)", dev, err, resp)
	}
	h.t.Cleanup(func() { conn.Close() })
	c := &wsClient{t: h.t, conn: conn}
	c.next("ready")
	return c
}

// TestOwnMessagesAndReadsReachTheOtherDevices (issue 17): a message bob
// sends from his phone reaches his tablet as message_sent (and a sync as
// sentMessages), a conversation he reads on the phone reaches the tablet
// as conversation_read; a user with one device gets neither.
func TestOwnMessagesAndReadsReachTheOtherDevices(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	// alice has one device: her sends queue nothing for herself.
	h.dialDev(1, "alice-phone")
	phone := h.dialDev(2, "phone")
	tablet := h.dialDev(2, "tablet")
	eventually(t, "devices linked", func() bool { return len(h.devices(2, "")) == 2 && len(h.devices(1, "")) == 1 })

	in := h.send(1, 2, "hi bob").Message
	if evs, _, _ := h.log.Pending(ctx, 1, 0, 0); len(evs) != 0 {
		t.Fatalf("a one-device sender's queue holds %d events", len(evs))
	}
	phone.nextMessage()
	tablet.nextMessage()

	reqSeq++
	code, body := h.doDevBody("POST", "/v1/messages", 2, "phone", wire.NewMessageRequest{RequestID: reqSeq, ToUserID: 1, Content: "hi alice", CreatedAt: createdAtOf(reqSeq)})
	if code != http.StatusCreated {
		t.Fatalf("send from the phone: %d %s", code, body)
	}
	var sent wire.NewMessageResponse
	json.Unmarshal(body, &sent)
	f := tablet.next(wire.TypeMessageSent)
	var p struct {
		Message wire.Message `json:"message"`
	}
	json.Unmarshal(f.Payload, &p)
	if p.Message.MessageID != sent.Message.MessageID || p.Message.FromUserID != 2 || p.Message.ToUserID != 1 ||
		p.Message.Content != "hi alice" || p.Message.Status != wire.StatusSynced || f.ID <= in.MessageID {
		t.Fatalf("tablet's message_sent: id %d %+v, want message %+v", f.ID, p.Message, sent.Message)
	}

	phone.sendFrame(wire.TypeRead, wire.ReadFrame{UserID: 1, UpToMessageID: in.MessageID})
	f = tablet.next(wire.TypeConversationRead)
	var rd wire.ReadFrame
	json.Unmarshal(f.Payload, &rd)
	if rd.UserID != 1 || rd.UpToMessageID != in.MessageID {
		t.Fatalf("tablet's conversation_read %+v", rd)
	}
	// A read mark of a conversation that carried nothing reaches nobody.
	if code, body := h.doDevBody("POST", "/v1/conversations/3/read", 2, "phone", wire.ReadRequest{UpToMessageID: in.MessageID}); code != http.StatusNoContent {
		t.Fatalf("stranger's mark: %d %s", code, body)
	}
	// A sync as the tablet lists the sent message and the one mark.
	r := h.syncDev(2, "tablet", 0)
	if len(r.SentMessages) != 1 || r.SentMessages[0].MessageID != sent.Message.MessageID || len(r.ConversationsRead) != 1 || r.ConversationsRead[0].UserID != 1 {
		t.Fatalf("tablet's sync: %+v", r)
	}
}

// doDevBody is doDev with a JSON body (nil: none).
func (h *harness) doDevBody(method, path string, user int64, dev string, body any) (int, []byte) {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, h.url+path, rd)
	req.Header.Set("Authorization", "Bearer "+tokenFor(h.t, user))
	if dev != "" {
		req.Header.Set(wire.DeviceIDHeader, dev)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// revokedEnd reads c until the server's device_revoked error and the close
// that follows it (policy violation).
func revokedEnd(t *testing.T, c *wsClient) {
	t.Helper()
	f := c.next(wire.TypeError)
	var e wire.ErrorDetail
	if err := json.Unmarshal(f.Payload, &e); err != nil || e.Code != wire.CodeDeviceRevoked {
		t.Fatalf("error frame %s, want %s", f.Payload, wire.CodeDeviceRevoked)
	}
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := c.conn.ReadMessage()
		if err == nil {
			continue
		}
		if !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
			t.Fatalf("socket ended with %v, want a policy close", err)
		}
		return
	}
}

// TestRevokedDeviceStaysOut (issue 17): revoking a device closes its open
// socket at once and keeps it out: it cannot connect, sync or register a
// push token again under that id, while the user's other devices go on.
func TestRevokedDeviceStaysOut(t *testing.T) {
	h := start(t, nil)
	phone := h.dialDev(2, "phone")
	tablet := h.dialDev(2, "tablet")
	eventually(t, "both devices linked", func() bool { return len(h.devices(2, "phone")) == 2 })

	if code, body := h.doDev("DELETE", "/v1/devices/phone", 2, "tablet"); code != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", code, body)
	}
	revokedEnd(t, phone)

	again := h.dialDev(2, "phone")
	revokedEnd(t, again)
	code, body := h.doDev("GET", "/v1/messages?lastSyncedMessage=0", 2, "phone")
	if code != http.StatusForbidden || !strings.Contains(string(body), wire.CodeDeviceRevoked) {
		t.Fatalf("sync as the revoked phone: %d %s", code, body)
	}
	code, body = h.doDevBody("POST", "/v1/devices", 2, "phone", map[string]any{"platform": "fcm", "token": "phone-token"})
	if code != http.StatusForbidden || !strings.Contains(string(body), wire.CodeDeviceRevoked) {
		t.Fatalf("push token from the revoked phone: %d %s", code, body)
	}

	// The tablet goes on; a new installation of the phone (a new id) is
	// welcome.
	m := h.send(1, 2, "after the revocation").Message
	if id, _ := tablet.nextMessage(); id != m.MessageID {
		t.Fatalf("tablet got %d, want %d", id, m.MessageID)
	}
	fresh := h.dialDev(2, "phone-2")
	if id, _ := fresh.nextMessage(); id != m.MessageID {
		t.Fatalf("the new installation got %d, want %d", id, m.MessageID)
	}
}

// TestDeviceListShowsPush: GET /v1/devices marks the devices that
// registered a push token (they get alerts).
func TestDeviceListShowsPush(t *testing.T) {
	h := start(t, nil)
	h.dialDev(2, "phone")
	h.dialDev(2, "tablet")
	eventually(t, "both devices linked", func() bool { return len(h.devices(2, "phone")) == 2 })
	if code, body := h.doDevBody("POST", "/v1/devices", 2, "phone", map[string]any{"platform": "fcm", "token": "phone-token"}); code != http.StatusCreated {
		t.Fatalf("register: %d %s", code, body)
	}
	push := map[string]bool{}
	for _, d := range h.devices(2, "tablet") {
		push[d.DeviceID] = d.Push
	}
	if !push["phone"] || push["tablet"] {
		t.Fatalf("push flags %v, want the phone's only", push)
	}
}

// sendDev is harness.send as device dev of from.
func (h *harness) sendDev(from int64, dev string, to int64, content string) wire.NewMessageResponse {
	h.t.Helper()
	reqSeq++
	code, body := h.doDevBody("POST", "/v1/messages", from, dev, wire.NewMessageRequest{RequestID: reqSeq, ToUserID: to, Content: content, CreatedAt: createdAtOf(reqSeq)})
	if code != http.StatusCreated {
		h.t.Fatalf("send as %q: %d %s", dev, code, body)
	}
	var r wire.NewMessageResponse
	json.Unmarshal(body, &r)
	return r
}

// metric reads a counter's value from /metrics (0 when absent).
func (h *harness) metric(series string) float64 {
	h.t.Helper()
	_, _, b := h.do("GET", "/metrics", 0, nil)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// nextEvent reads frames up to the next queued event (a frame with an
// id: a message, a receipt, a copy), skipping the rest.
func (c *wsClient) nextEvent() wire.Frame {
	c.t.Helper()
	for {
		if f := c.read(); f.ID != 0 {
			return f
		}
	}
}

// TestTheSendingDeviceSkipsItsOwnCopy (issue 17): a message bob sends
// from his phone, naming it, reaches his tablet as message_sent but not
// the phone's socket on the node that took the send; the phone's ack of
// what it was written before the copy moves its cursor past the copy, so
// the queue forgets it once the tablet acknowledged it. A send naming no
// device (the default device) reaches the phone too; a send naming a
// malformed device id is refused.
func TestTheSendingDeviceSkipsItsOwnCopy(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	phone := h.dialDev(2, "phone")
	tablet := h.dialDev(2, "tablet")
	eventually(t, "bob's devices linked", func() bool { return len(h.devices(2, "")) == 2 })

	// The phone is written alice's message and does not acknowledge it yet.
	m1 := h.send(1, 2, "one").Message
	if f := phone.nextEvent(); f.Type != wire.TypeNewMessage || f.ID != m1.MessageID {
		t.Fatalf("phone's first event %+v, want message %d", f, m1.MessageID)
	}
	if id, _ := tablet.nextMessage(); id != m1.MessageID {
		t.Fatalf("tablet got %d", id)
	}
	tablet.sendFrame(wire.TypeAck, wire.Ack{UpTo: m1.MessageID})

	mine := h.sendDev(2, "phone", 1, "from the phone").Message
	cp := tablet.next(wire.TypeMessageSent)
	var p struct {
		Message wire.Message `json:"message"`
	}
	json.Unmarshal(cp.Payload, &p)
	if p.Message.MessageID != mine.MessageID {
		t.Fatalf("tablet's copy names message %d, want %d", p.Message.MessageID, mine.MessageID)
	}
	tablet.sendFrame(wire.TypeAck, wire.Ack{UpTo: cp.ID})
	eventually(t, "the phone's writer passed over the copy", func() bool {
		return h.metric(`edgenode_deliveries_total{path="own_copy"}`) == 1
	})
	// Acknowledging the message written before the copy covers the copy.
	phone.sendFrame(wire.TypeAck, wire.Ack{UpTo: m1.MessageID})
	eventually(t, "the phone's cursor past its own copy", func() bool {
		c, _ := h.log.Cursor(2, "phone")
		return c == cp.ID
	})
	eventually(t, "bob's queue empty", func() bool {
		evs, _, err := h.log.Pending(ctx, 2, 0, 0)
		return err == nil && len(evs) == 0
	})

	// The phone's next event is alice's next message, not the copy.
	m2 := h.send(1, 2, "two").Message
	if f := phone.nextEvent(); f.Type != wire.TypeNewMessage || f.ID != m2.MessageID {
		t.Fatalf("phone's next event %+v, want message %d", f, m2.MessageID)
	}
	phone.sendFrame(wire.TypeAck, wire.Ack{UpTo: m2.MessageID})

	// A send naming no device is the default device's: the phone gets
	// the copy like the tablet.
	other := h.send(2, 1, "from no device").Message
	if f := phone.nextEvent(); f.Type != wire.TypeMessageSent || !strings.Contains(string(f.Payload), `"messageId":`+strconv.FormatInt(other.MessageID, 10)) {
		t.Fatalf("phone's event after a send naming no device %+v, want the copy of %d", f, other.MessageID)
	}

	reqSeq++
	code, body := h.doDevBody("POST", "/v1/messages", 2, "bad id", wire.NewMessageRequest{RequestID: reqSeq, ToUserID: 1, Content: "x", CreatedAt: createdAtOf(reqSeq)})
	if code != http.StatusBadRequest || !strings.Contains(string(body), "invalid_argument") {
		t.Fatalf("send with a malformed Device-Id: %d %s", code, body)
	}
}

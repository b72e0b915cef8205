package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

// dialDevice opens a socket of user as device dev ("": none named) on n.
func dialDevice(t *testing.T, n *testNode, user int64, dev string) *sock {
	t.Helper()
	hdr := http.Header{"Authorization": {"Bearer " + tok(t, user)}}
	if dev != "" {
		hdr.Set(wire.DeviceIDHeader, dev)
	}
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(n.URL(), "http")+"/v1/socket/updates", hdr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s := &sock{t: t, conn: conn}
	s.next(wire.TypeReady, nil)
	return s
}

// takeMessages reads new_message frames until want distinct ids came,
// acknowledging each, and fails on any id twice.
func (s *sock) takeMessages(want int) []int64 {
	s.t.Helper()
	var ids []int64
	seen := map[int64]bool{}
	s.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	for len(ids) < want {
		_, b, err := s.conn.ReadMessage()
		if err != nil {
			s.t.Fatalf("after %d of %d messages: %v", len(ids), want, err)
		}
		var f wire.Frame
		json.Unmarshal(b, &f)
		if f.Type != wire.TypeNewMessage {
			continue
		}
		if seen[f.ID] {
			s.t.Fatalf("message %d twice on one socket", f.ID)
		}
		seen[f.ID] = true
		ids = append(ids, f.ID)
		ack, _ := json.Marshal(map[string]any{"type": "ack", "payload": map[string]int64{"upTo": f.ID}})
		if err := s.conn.WriteMessage(websocket.TextMessage, ack); err != nil {
			s.t.Fatal(err)
		}
	}
	return ids
}

// syncDevice runs GET /v1/messages on n as device dev of user.
func syncDevice(t *testing.T, n *testNode, user int64, dev string, cursor int64) wire.SyncResponse {
	t.Helper()
	r, _ := http.NewRequest("GET", fmt.Sprintf("%s/v1/messages?lastSyncedMessage=%d&limit=500", n.URL(), cursor), nil)
	r.Header.Set("Authorization", "Bearer "+tok(t, user))
	if dev != "" {
		r.Header.Set(wire.DeviceIDHeader, dev)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sync: %d %s", resp.StatusCode, b)
	}
	var out wire.SyncResponse
	json.Unmarshal(b, &out)
	return out
}

// TestDevicesAcrossNodes (issue 17): a user's phone and tablet on two
// nodes, neither leading the user's shard, and a laptop offline for the
// whole exchange each get every message exactly once, across a
// reconnect to another node and a leader change of the user's shard; the
// sender gets one DELIVERED receipt per message. A message the user sends
// from one device reaches the other, not the one that sent it.
func TestDevicesAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node")
	}
	nodes, n1, n2, n3 := startThree(t, []string{"--jwt-secret", jwtSecret})
	// A leadership move between an ack's receipts and the ack itself
	// repeats the receipts (at least once): start once leaders settled.
	var last string
	settled := time.Now()
	waitFor(t, "leaders on every node, unchanged for 2 s", 30*time.Second, func() bool {
		ss := shardsOf(t, n1)
		leaders := map[string]bool{}
		for _, s := range ss {
			leaders[s.Leader] = true
		}
		b, _ := json.Marshal(ss)
		if string(b) != last {
			last, settled = string(b), time.Now()
		}
		return len(leaders) == 3 && !leaders[""] && time.Since(settled) > 2*time.Second
	})

	const alice, bob = int64(1), int64(2)
	shard := relaylog.ShardOf(bob, 4)
	leader := nodes[shardsOf(t, n1)[shard].Leader]
	var others []*testNode
	for _, n := range []*testNode{n1, n2, n3} {
		if n != leader {
			others = append(others, n)
		}
	}
	// The laptop links through a sync, then stays away.
	syncDevice(t, leader, bob, "laptop", 0)
	phone := dialDevice(t, others[0], bob, "phone")
	tablet := dialDevice(t, others[1], bob, "tablet")
	waitFor(t, "three devices linked", 10*time.Second, func() bool {
		list, err := leader.Log.LinkedDevices(context.Background(), bob)
		return err == nil && len(list) == 3
	})

	var sent []int64
	for i := int64(1); i <= 5; i++ {
		sent = append(sent, mustPost(t, n3, alice, bob, i, fmt.Sprintf("m%d", i)).MessageID)
	}
	if got := phone.takeMessages(5); fmt.Sprint(got) != fmt.Sprint(sent) {
		t.Fatalf("phone got %v, want %v", got, sent)
	}
	if got := tablet.takeMessages(5); fmt.Sprint(got) != fmt.Sprint(sent) {
		t.Fatalf("tablet got %v, want %v", got, sent)
	}

	// Acks are committed in the background: a socket closed before
	// its acks committed gets the messages again (at least once).
	for _, dev := range []string{"phone", "tablet"} {
		waitFor(t, dev+"'s acks committed", 10*time.Second, func() bool {
			c, _ := leader.Log.Cursor(bob, dev)
			return c == sent[4]
		})
	}
	// The shard changes leader; the phone reconnects to the third node.
	if err := leader.Log.Raft(shard).LeadershipTransfer().Error(); err != nil {
		t.Fatal(err)
	}
	phone.conn.Close()
	phone = dialDevice(t, leader, bob, "phone")
	for i := int64(6); i <= 7; i++ {
		sent = append(sent, mustPost(t, n1, alice, bob, i, fmt.Sprintf("m%d", i)).MessageID)
	}
	// The phone gets only what it had not acknowledged, the tablet too.
	if got := phone.takeMessages(2); fmt.Sprint(got) != fmt.Sprint(sent[5:]) {
		t.Fatalf("phone after reconnect got %v, want %v", got, sent[5:])
	}
	if got := tablet.takeMessages(2); fmt.Sprint(got) != fmt.Sprint(sent[5:]) {
		t.Fatalf("tablet got %v, want %v", got, sent[5:])
	}

	// The laptop comes back: everything, once, in a page.
	var laptop []int64
	for _, m := range syncDevice(t, others[0], bob, "laptop", 0).Messages {
		laptop = append(laptop, m.MessageID)
	}
	if fmt.Sprint(laptop) != fmt.Sprint(sent) {
		t.Fatalf("laptop got %v, want %v", laptop, sent)
	}
	newest := laptop[len(laptop)-1]
	if r := syncDevice(t, others[1], bob, "laptop", newest); len(r.Messages) != 0 {
		t.Fatalf("laptop's next page after acknowledging holds %d messages", len(r.Messages))
	}

	// A DELIVERED receipt per message at the sender (exactly one for
	// those acknowledged before the leader change), and bob's queue empty
	// once all three devices acknowledged.
	waitFor(t, "bob's queue empty", 10*time.Second, func() bool {
		ld := nodes[shardsOf(t, n1)[shard].Leader]
		evs, _, err := ld.Log.Pending(context.Background(), bob, 0, 0)
		return ld != nil && err == nil && len(evs) == 0
	})
	named := map[int64]int{}
	for _, rc := range syncDevice(t, n2, alice, "", 0).Receipts {
		if rc.Status == wire.StatusDelivered {
			for _, id := range rc.MessageIDs {
				named[id]++
			}
		}
	}
	for i, id := range sent {
		if named[id] == 0 || i < 5 && named[id] != 1 {
			t.Fatalf("message %d (#%d) named by %d DELIVERED receipts (%v)", id, i+1, named[id], named)
		}
	}

	// bob sends from a device through its node, which does not lead his
	// shard: his other device gets the copy, the sending one does not (its
	// next event is alice's next message).
	from, fromNode, fromDev, other := tablet, others[1], "tablet", phone
	if nodes[shardsOf(t, n1)[shard].Leader] == others[1] {
		from, fromNode, fromDev, other = phone, leader, "phone", tablet
	}
	mine := sendAsDevice(t, fromNode, bob, fromDev, alice, 100, "from "+fromDev)
	other.next(wire.TypeMessageSent, func(p json.RawMessage) bool {
		return strings.Contains(string(p), fmt.Sprintf(`"messageId":%d`, mine.MessageID))
	})
	after := mustPost(t, n1, alice, bob, 101, "after").MessageID
	p, seen, err := from.nextWithin(wire.TypeNewMessage, nil, 10*time.Second)
	if err != nil || !strings.Contains(string(p), fmt.Sprintf(`"messageId":%d`, after)) {
		t.Fatalf("%s waiting for message %d: %v (frames: %q)", fromDev, after, err, seen)
	}
	for _, f := range seen {
		if strings.Contains(f, wire.TypeMessageSent) {
			t.Fatalf("%s got the copy of its own send: %s", fromDev, f)
		}
	}
}

// sendAsDevice sends a message as device dev of from through n.
func sendAsDevice(t *testing.T, n *testNode, from int64, dev string, to, req int64, content string) wire.Message {
	t.Helper()
	code, b := asDevice(t, n, "POST", "/v1/messages", from, dev,
		wire.NewMessageRequest{RequestID: req, ToUserID: to, Content: content, CreatedAt: time.Now().UTC().Format("2006-01-02T15:04:05.000Z")})
	if code != http.StatusCreated {
		t.Fatalf("send as %s: %d %s", dev, code, b)
	}
	var out wire.NewMessageResponse
	json.Unmarshal(b, &out)
	return out.Message
}

// untilRevoked reads s, acknowledging each message, until the server's
// device_revoked error and the close after it; it returns the messages
// that came first (events in flight when the revocation committed).
func (s *sock) untilRevoked() []int64 {
	s.t.Helper()
	var got []int64
	s.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	revoked := false
	for {
		_, b, err := s.conn.ReadMessage()
		if err != nil {
			if !revoked || !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
				s.t.Fatalf("socket ended with %v (device_revoked seen: %v)", err, revoked)
			}
			return got
		}
		var f wire.Frame
		json.Unmarshal(b, &f)
		switch f.Type {
		case wire.TypeNewMessage:
			got = append(got, f.ID)
			ack, _ := json.Marshal(map[string]any{"type": "ack", "payload": map[string]int64{"upTo": f.ID}})
			s.conn.WriteMessage(websocket.TextMessage, ack)
		case wire.TypeError:
			var e wire.ErrorDetail
			json.Unmarshal(f.Payload, &e)
			revoked = revoked || e.Code == wire.CodeDeviceRevoked
		}
	}
}

// TestRevokedDeviceAcrossNodes (issue 17): a device revoked through one
// node while its socket is on another: that socket is closed with
// device_revoked at its next acknowledgement, the device cannot come back
// on any node, and the user's other device goes on.
func TestRevokedDeviceAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node")
	}
	nodes, n1, _, _ := startThree(t, []string{"--jwt-secret", jwtSecret})
	const alice, bob = int64(1), int64(2)
	leader := nodes[shardsOf(t, n1)[relaylog.ShardOf(bob, 4)].Leader]
	var others []*testNode
	for _, n := range nodes {
		if n != leader {
			others = append(others, n)
		}
	}
	phone := dialDevice(t, others[0], bob, "phone")
	laptop := dialDevice(t, others[1], bob, "laptop")
	waitFor(t, "both devices linked", 10*time.Second, func() bool {
		list, err := leader.Log.LinkedDevices(context.Background(), bob)
		return err == nil && len(list) == 2
	})
	if code, _ := asDevice(t, others[0], "DELETE", "/v1/devices/laptop", bob, "phone", nil); code != http.StatusNoContent {
		t.Fatalf("revoke: %d", code)
	}
	m := mustPost(t, n1, alice, bob, 1, "after the revocation")
	if got := laptop.untilRevoked(); len(got) > 1 {
		t.Fatalf("the revoked laptop got %v after the revocation", got)
	}
	if got := phone.takeMessages(1); got[0] != m.MessageID {
		t.Fatalf("phone got %v, want %d", got, m.MessageID)
	}
	for _, n := range nodes {
		again := dialDevice(t, n, bob, "laptop")
		again.untilRevoked()
	}
	if list, _ := leader.Log.LinkedDevices(context.Background(), bob); len(list) != 1 || list[0].ID != "phone" {
		t.Fatalf("linked after the revocation: %+v", list)
	}
}

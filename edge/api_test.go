package edge_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/edgenode/edgenode/wire"
)

func TestSendLiveDeliveryAckAndDeliveredReceipt(t *testing.T) {
	h := start(t, nil)
	bob := h.dial(2)
	if bob.ready.UserID != 2 || bob.ready.NodeID != "n1" || bob.ready.HeartbeatMs <= 0 {
		t.Fatalf("ready = %+v", bob.ready)
	}
	resp := h.send(1, 2, "hello bob")
	if resp.Message.Status != wire.StatusSynced || resp.Message.FromUserID != 1 || resp.Message.ToUserID != 2 ||
		resp.Message.Content != "hello bob" || resp.Message.CreatedAt != createdAtOf(reqSeq) || resp.Message.MessageID <= 0 || resp.Message.MessageID > wire.MaxID {
		t.Fatalf("201 body = %+v", resp)
	}
	id, msg := bob.nextMessage()
	if id != resp.Message.MessageID || msg.MessageID != id || msg.Status != wire.StatusDelivered || msg.Content != "hello bob" {
		t.Fatalf("delivered %d %+v", id, msg)
	}
	bob.sendFrame(wire.TypeAck, wire.Ack{UpTo: id})
	alice := h.dial(1)
	rc := alice.nextReceipt(wire.TypeMessageDelivered)
	if rc.Status != wire.StatusDelivered || rc.ByUserID != 2 || len(rc.MessageIDs) != 1 || rc.MessageIDs[0] != id {
		t.Fatalf("receipt = %+v", rc)
	}
	// Acknowledged events are gone from bob's queue.
	eventually(t, "bob's queue to empty", func() bool { return h.log.Depth(2) == 0 })
}

func TestIdempotentRetry(t *testing.T) {
	h := start(t, nil)
	body := wire.NewMessageRequest{RequestID: 42, ToUserID: 2, Content: "once", CreatedAt: "2026-11-27T10:20:08.123Z"}
	c1, _, b1 := h.do("POST", "/v1/messages", 1, body)
	c2, _, b2 := h.do("POST", "/v1/messages", 1, body)
	if c1 != 201 || c2 != 201 || string(b1) != string(b2) {
		t.Fatalf("retry: %d %s / %d %s", c1, b1, c2, b2)
	}
	code, _, sb := h.do("GET", "/v1/messages", 2, nil)
	var sync wire.SyncResponse
	json.Unmarshal(sb, &sync)
	if code != 200 || len(sync.Messages) != 1 {
		t.Fatalf("sync after retry: %d %s", code, sb)
	}
	body.Content = "different"
	code, _, eb := h.do("POST", "/v1/messages", 1, body)
	if code != 400 || decodeError(t, eb).Code != wire.CodeInvalidArgument {
		t.Fatalf("reused requestId: %d %s", code, eb)
	}
}

func TestReadReceipt(t *testing.T) {
	h := start(t, nil)
	alice := h.dial(1)
	m1 := h.send(1, 2, "one").Message.MessageID
	m2 := h.send(1, 2, "two").Message.MessageID
	code, _, b := h.do("POST", fmt.Sprintf("/v1/conversations/%d/read", 1), 2, map[string]int64{"upToMessageId": m2})
	if code != http.StatusNoContent {
		t.Fatalf("read: %d %s", code, b)
	}
	rc := alice.nextReceipt(wire.TypeMessageRead)
	if rc.Status != wire.StatusRead || rc.ByUserID != 2 || rc.UpToMessageID != m2 || rc.At == "" {
		t.Fatalf("read receipt %+v", rc)
	}
	// Over the socket too, and an older mark changes nothing.
	bob := h.dial(2)
	bob.sendFrame(wire.TypeRead, wire.ReadFrame{UserID: 1, UpToMessageID: m1})
	m3 := h.send(1, 2, "three").Message.MessageID
	bob.sendFrame(wire.TypeRead, wire.ReadFrame{UserID: 1, UpToMessageID: m3})
	rc = alice.nextReceipt(wire.TypeMessageRead)
	if rc.UpToMessageID != m3 {
		t.Fatalf("after an older mark, next receipt = %+v; want up to %d", rc, m3)
	}
}

func TestTyping(t *testing.T) {
	h := start(t, nil)
	bob := h.dial(2)
	h.dial(1)
	code, _, b := h.do("POST", "/v1/conversations/2/typing", 1, map[string]bool{"typing": true})
	if code != http.StatusNoContent {
		t.Fatalf("typing: %d %s", code, b)
	}
	st := bob.nextStatus()
	if st.UserID != 1 || !st.Typing || !st.Online {
		t.Fatalf("typing status %+v", st)
	}
	alice := h.dial(1)
	alice.sendFrame(wire.TypeTyping, wire.TypingFrame{ToUserID: 2, Typing: false})
	st = bob.nextStatus()
	if st.UserID != 1 || st.Typing {
		t.Fatalf("stopped typing status %+v", st)
	}
}

func TestWatchOnlineOfflineAndLastConnected(t *testing.T) {
	h := start(t, nil)
	alice := h.dial(1)
	alice.sendFrame(wire.TypeWatch, wire.Watch{UserIDs: []int64{2}})
	st := alice.nextStatus()
	if st.UserID != 2 || st.Online || st.LastConnectedAt != nil {
		t.Fatalf("initial status %+v", st)
	}
	bob := h.dial(2)
	if st = alice.nextStatus(); st.UserID != 2 || !st.Online {
		t.Fatalf("online status %+v", st)
	}
	bob.conn.Close()
	st = alice.nextStatus()
	if st.UserID != 2 || st.Online || st.LastConnectedAt == nil {
		t.Fatalf("offline status %+v", st)
	}
	eventually(t, "lastConnectedAt in GET status", func() bool {
		code, _, b := h.do("GET", "/v1/users/2/status", 1, nil)
		var cs wire.ContactStatus
		json.Unmarshal(b, &cs)
		return code == 200 && !cs.Online && cs.LastConnectedAt != nil
	})
}

func TestOfflineQueueAndPaginatedSync(t *testing.T) {
	h := start(t, nil)
	var ids []int64
	for i := 0; i < 250; i++ {
		ids = append(ids, h.send(1, 2, fmt.Sprintf("m%d", i)).Message.MessageID)
	}
	var got []int64
	cursor := int64(0)
	for page := 0; ; page++ {
		code, _, b := h.do("GET", fmt.Sprintf("/v1/messages?lastSyncedMessage=%d&limit=100", cursor), 2, nil)
		if code != 200 {
			t.Fatalf("sync: %d %s", code, b)
		}
		var r wire.SyncResponse
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		for _, m := range r.Messages {
			if m.Status != wire.StatusDelivered {
				t.Fatalf("synced message status %q", m.Status)
			}
			got = append(got, m.MessageID)
		}
		if len(r.Messages) > 0 && r.LastSyncedMessage != r.Messages[len(r.Messages)-1].MessageID {
			t.Fatalf("lastSyncedMessage %d != last id", r.LastSyncedMessage)
		}
		cursor = r.LastSyncedMessage
		if !r.HasMore {
			break
		}
		if page > 5 {
			t.Fatal("too many pages")
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Fatalf("synced %d ids in order %v..., want %d", len(got), got[:3], len(ids))
	}
	// The final cursor acknowledges the rest; the sender gets receipts for all.
	h.do("GET", fmt.Sprintf("/v1/messages?lastSyncedMessage=%d", cursor), 2, nil)
	eventually(t, "queue empty", func() bool { return h.log.Depth(2) == 0 })
	code, _, b := h.do("GET", "/v1/messages", 1, nil)
	var r wire.SyncResponse
	json.Unmarshal(b, &r)
	delivered := 0
	for _, rc := range r.Receipts {
		delivered += len(rc.MessageIDs)
	}
	if code != 200 || delivered != 250 || len(r.Messages) != 0 {
		t.Fatalf("sender's receipts cover %d messages: %s", delivered, b)
	}
}

func TestSocketBatchesAndLargeContent(t *testing.T) {
	h := start(t, nil)
	big := strings.Repeat("é", 2048) // 4096 bytes: a 16-bit frame length
	var want []int64
	for i := 0; i < 300; i++ {
		c := fmt.Sprintf("m%d", i)
		if i%50 == 0 {
			c = big
		}
		want = append(want, h.send(1, 2, c).Message.MessageID)
	}
	// Bob connects to a backlog of 300: it arrives in batched writes, in order.
	bob := h.dial(2)
	for i, id := range want {
		got, msg := bob.nextMessage()
		if got != id {
			t.Fatalf("event %d: id %d, want %d", i, got, id)
		}
		if i%50 == 0 && msg.Content != big {
			t.Fatalf("event %d: large content corrupted (%d bytes)", i, len(msg.Content))
		}
	}
}

// A client that acknowledges each event the moment it arrives (before the
// server's write has even returned) empties its queue: an ack is never
// capped below an event the socket already sent. Each round checks one ack.
func TestImmediateAcksEmptyTheQueue(t *testing.T) {
	h := start(t, nil)
	bob := h.dial(2)
	for i := 0; i < 100; i++ {
		h.send(1, 2, fmt.Sprintf("m%d", i))
		id, _ := bob.nextMessage()
		ack, _ := json.Marshal(map[string]any{"type": "ack", "payload": map[string]int64{"upTo": id}})
		if err := bob.conn.WriteMessage(websocket.TextMessage, ack); err != nil {
			t.Fatal(err)
		}
		eventually(t, fmt.Sprintf("bob's queue to empty after ack %d", i), func() bool { return h.log.Depth(2) == 0 })
	}
}

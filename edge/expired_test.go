package edge_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/edgenode/edgenode/edge"
	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

// TestExpiredReceipt: a message its recipient never fetched expires at the
// end of the retention period; its sender's sync lists an EXPIRED receipt
// naming it and the recipient, and the sender's socket gets it as a
// message_expired frame, acknowledged like any other event.
func TestExpiredReceipt(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	h := start(t, func(_ *edge.Options, lo *relaylog.Options) { lo.Now = clock; lo.Retention = time.Hour })
	lost := h.send(1, 2, "bob never comes").Message.MessageID
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	if err := h.log.Expire(context.Background()); err != nil {
		t.Fatal(err)
	}

	code, _, body := h.do("GET", "/v1/messages", 1, nil)
	var sync wire.SyncResponse
	if err := json.Unmarshal(body, &sync); err != nil || code != 200 {
		t.Fatalf("alice's sync: %d %s", code, body)
	}
	if len(sync.Messages) != 0 || len(sync.Receipts) != 1 {
		t.Fatalf("alice's sync = %s", body)
	}
	rc := sync.Receipts[0]
	if rc.Status != wire.StatusExpired || rc.ByUserID != 2 || len(rc.MessageIDs) != 1 || rc.MessageIDs[0] != lost || rc.UpToMessageID != 0 || rc.At == "" || sync.LastSyncedMessage != rc.ID {
		t.Fatalf("alice's receipt = %+v (sync %s)", rc, body)
	}

	alice := h.dial(1)
	got := alice.nextReceipt(wire.TypeMessageExpired)
	if got.ID != rc.ID || got.Status != wire.StatusExpired || got.ByUserID != 2 || len(got.MessageIDs) != 1 || got.MessageIDs[0] != lost {
		t.Fatalf("message_expired = %+v, want %+v", got, rc)
	}
	alice.sendFrame(wire.TypeAck, wire.Ack{UpTo: got.ID})
	eventually(t, "alice's queue to empty", func() bool { return h.log.LastEventID(1) == 0 })

	// Bob finds nothing, and no receipt about the receipt goes anywhere.
	code, _, body = h.do("GET", "/v1/messages", 2, nil)
	if err := json.Unmarshal(body, &sync); err != nil || code != 200 || len(sync.Messages) != 0 || len(sync.Receipts) != 0 {
		t.Fatalf("bob's sync: %d %s", code, body)
	}
}

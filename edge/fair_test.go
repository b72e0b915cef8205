package edge_test

import (
	"strings"
	"testing"

	"github.com/edgenode/edgenode/edge"
	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

// TestOneSenderCannotFillAQueue (issue 13, row 6): with --max-queue-depth
// 20, one sender may have 2 messages (a tenth) undelivered to a recipient;
// its third is refused 429 while other senders still reach the recipient,
// until the queue itself is full.
func TestOneSenderCannotFillAQueue(t *testing.T) {
	h := start(t, func(eo *edge.Options, lo *relaylog.Options) {
		lo.MaxQueueDepth = 20
		eo.SendRate, eo.SendBurst = 1000, 1000
	})
	const to = 900
	send := func(from int64, req int) (int, []byte) {
		code, _, body := h.do("POST", "/v1/messages", from, map[string]any{"requestId": req, "toUserId": to, "content": "x", "createdAt": "2026-11-27T10:20:08.123Z"})
		return code, body
	}
	for req := 1; req <= 2; req++ {
		if code, body := send(1, req); code != 201 {
			t.Fatalf("sender 1, message %d: %d %s", req, code, body)
		}
	}
	code, body := send(1, 3)
	if code != 429 || decodeError(t, body).Code != wire.CodeRateLimited || !strings.Contains(string(body), "a tenth") {
		t.Fatalf("sender 1's third undelivered message: %d %s, want 429 for its share", code, body)
	}
	// Others are not blocked by sender 1: nine more senders fill the rest.
	for from := int64(2); from <= 10; from++ {
		for req := 1; req <= 2; req++ {
			if code, body := send(from, req); code != 201 {
				t.Fatalf("sender %d, message %d, with sender 1 at its share: %d %s", from, req, code, body)
			}
		}
	}
	// Now the queue holds 20: full for anyone.
	code, body = send(11, 1)
	if code != 429 || strings.Contains(string(body), "a tenth") {
		t.Fatalf("a new sender to a full queue: %d %s, want 429 for the full queue", code, body)
	}
}

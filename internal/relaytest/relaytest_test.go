package relaytest_test

import (
	"context"
	"testing"
	"time"

	"github.com/edgenode/edgenode/internal/relaytest"
	"github.com/edgenode/edgenode/wire"
)

// TestOpen: the log Open returns takes calls at once, without waiting for
// elections.
func TestOpen(t *testing.T) {
	l := relaytest.Open(t, relaytest.Options(t.TempDir()))
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req := wire.NewMessageRequest{RequestID: 1, ToUserID: 2, Content: "hi", CreatedAt: "2026-11-27T10:00:00Z"}
	if _, _, err := l.Send(ctx, 1, req); err != nil {
		t.Fatalf("send: %v", err)
	}
	evs, _, err := l.Pending(ctx, 2, 0, 10)
	if err != nil || len(evs) != 1 || evs[0].Content != "hi" {
		t.Fatalf("pending = %+v, %v", evs, err)
	}
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire/nodewire"
)

// Every error of the log that crosses the mesh comes back as itself, and
// the codes on the wire stay what older nodes understand.
func TestNodeErrorsRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code string
	}{
		{relaylog.ErrSenderShareFull, nodewire.NodeErrQueueFull},
		{relaylog.ErrQueueFull, nodewire.NodeErrQueueFull},
		{relaylog.ErrRequestIDReused, nodewire.NodeErrReused},
		{relaylog.ErrRequestExpired, nodewire.NodeErrExpired},
		{relaylog.ErrClosed, nodewire.NodeErrClosed},
		{relaylog.ErrOverloaded, nodewire.NodeErrOverloaded},
	} {
		resp := errorResponse(fmt.Errorf("wrapped: %w", tc.err))
		if resp.Err != tc.code {
			t.Errorf("%v goes on the wire as %q, want %q", tc.err, resp.Err, tc.code)
		}
		if got := responseError(3, resp); !errors.Is(got, tc.err) {
			t.Errorf("%v comes back as %v", tc.err, got)
		}
	}
	// A queue_full from a node that does not tell the sender's share apart
	// is a full queue.
	if got := responseError(3, &nodewire.CallResponse{Err: nodewire.NodeErrQueueFull}); !errors.Is(got, relaylog.ErrQueueFull) || errors.Is(got, relaylog.ErrSenderShareFull) {
		t.Errorf("plain queue_full: %v", got)
	}
	var nl *relaylog.NotLeaderError
	if got := responseError(3, errorResponse(&relaylog.NotLeaderError{Shard: 3, Leader: "n2"})); !errors.As(got, &nl) || nl.Leader != "n2" || nl.Shard != 3 {
		t.Errorf("not leader: %v", got)
	}
	if resp := errorResponse(context.DeadlineExceeded); resp.Err != nodewire.NodeErrOverloaded {
		t.Errorf("a deadline: %q", resp.Err)
	}
	if got := responseError(3, errorResponse(errors.New("disk on fire"))); got == nil || errors.Is(got, relaylog.ErrClosed) {
		t.Errorf("an unknown error: %v", got)
	}
}

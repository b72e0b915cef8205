package cluster

import (
	"testing"
	"time"
)

// A home sums what every node reports a user spent: a report within the
// burst passes, the next node's that spends it blocks the user's sends
// (and only sends, and only that user) until a token is back.
func TestHomeUsageSumsReportsOfAllNodes(t *testing.T) {
	h := newHomeUsage(Limits{SendRate: 1, SendBurst: 10, CallRate: 1, CallBurst: 10})
	now := time.Now()
	if b := h.take(7, 6, 0, now); !b.Sends.IsZero() || !b.Calls.IsZero() {
		t.Fatalf("first node's 6 sends of 10 blocked: %+v", b)
	}
	b := h.take(7, 6, 1, now) // the second node's report crosses the burst
	if b.Sends.IsZero() || !b.Sends.After(now) {
		t.Fatalf("12 sends of a burst of 10 not blocked: %+v", b)
	}
	if !b.Calls.IsZero() {
		t.Fatalf("calls blocked by sends: %+v", b)
	}
	if b := h.take(8, 9, 9, now); !b.Sends.IsZero() || !b.Calls.IsZero() {
		t.Fatalf("another user blocked: %+v", b)
	}
	// The bucket's last token spent: blocked until one is back.
	if b := h.take(8, 0, 1, now); b.Calls.IsZero() || !b.Sends.IsZero() {
		t.Fatalf("10 calls of a burst of 10: %+v, want calls blocked only", b)
	}
}

// Without limits a home keeps no buckets.
func TestHomeUsageOffWithoutLimits(t *testing.T) {
	if h := newHomeUsage(Limits{SendRate: 1, SendBurst: 10}); h != nil {
		t.Fatal("buckets kept without call limits")
	}
	if h := newHomeUsage(Limits{}); h != nil {
		t.Fatal("buckets kept without limits")
	}
}

package relaylog_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/edgenode/edgenode/relaylog"
)

// userOnShard is the smallest user id from start on whose shard (of
// shards) is, or is not, that of other.
func userOnShard(start, other int64, shards int, same bool) int64 {
	for u := start; ; u++ {
		if (relaylog.ShardOf(u, shards) == relaylog.ShardOf(other, shards)) == same {
			return u
		}
	}
}

// TestExpiryTellsTheSender: a message its recipient never received expires
// with an EXPIRED receipt in the sender's queue naming it and the
// recipient; a message the recipient acknowledged in time gets none;
// receipts that expire are dropped without a receipt of their own; the
// EXPIRED receipt survives a snapshot and a restart. Sender and recipient
// on the same shard and on different ones.
func TestExpiryTellsTheSender(t *testing.T) {
	for _, same := range []bool{true, false} {
		t.Run(fmt.Sprintf("sameShard=%v", same), func(t *testing.T) {
			clock, advance := manualClock()
			dir := t.TempDir()
			opts := func(o *relaylog.Options) { o.Now = clock; o.Retention = time.Hour }
			l := openLog(t, dir, opts)
			defer func() { l.Close() }()
			ctx := context.Background()

			const alice = int64(1)
			bob := userOnShard(2, alice, 4, same)        // never comes back
			carol := userOnShard(bob+1, alice, 4, !same) // acknowledges in time
			lost := send(t, l, alice, bob, 1, "to bob")
			got := send(t, l, alice, carol, 2, "to carol")
			if _, err := l.Ack(ctx, carol, got.ID); err != nil {
				t.Fatal(err)
			}
			if evs, _ := pending(t, l, alice, 0, 0); len(evs) != 1 || evs[0].Kind != relaylog.KindDelivered {
				t.Fatalf("alice before expiry = %+v", evs)
			}

			advance(2 * time.Hour)
			if err := l.Expire(ctx); err != nil {
				t.Fatal(err)
			}
			check := func(when string) {
				t.Helper()
				evs, _ := pending(t, l, alice, 0, 0)
				if len(evs) != 1 {
					t.Fatalf("%s: alice's queue = %+v, want one EXPIRED receipt", when, evs)
				}
				rc := evs[0]
				if rc.Kind != relaylog.KindExpired || rc.By != bob || len(rc.MessageIDs) != 1 || rc.MessageIDs[0] != lost.ID {
					t.Fatalf("%s: alice's receipt = %+v, want EXPIRED by %d of [%d]", when, rc, bob, lost.ID)
				}
				if rc.ID <= lost.ID {
					t.Fatalf("%s: receipt id %d not after the message's %d", when, rc.ID, lost.ID)
				}
				for _, u := range []int64{bob, carol} {
					if evs, _ := pending(t, l, u, 0, 0); len(evs) != 0 {
						t.Fatalf("%s: queue of %d = %+v, want empty", when, u, evs)
					}
				}
				if st := l.PushState(alice); st.Unread != 0 {
					t.Fatalf("%s: alice's push state = %+v: a receipt is no message to alert of", when, st)
				}
			}
			check("after expiry")
			// Expiring again changes nothing.
			if err := l.Expire(ctx); err != nil {
				t.Fatal(err)
			}
			check("after a second expiry")

			if err := l.Snapshot(); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = openLog(t, dir, opts)
			check("after snapshot and restart")

			// Acknowledged like any other event.
			evs, _ := pending(t, l, alice, 0, 0)
			if n, err := l.Ack(ctx, alice, evs[0].ID); err != nil || n != 1 {
				t.Fatalf("ack of the receipt = %d, %v", n, err)
			}
			if evs, _ := pending(t, l, alice, 0, 0); len(evs) != 0 {
				t.Fatalf("alice after ack = %+v", evs)
			}
			// The receipt produced no DELIVERED receipt of its own.
			if evs, _ := pending(t, l, bob, 0, 0); len(evs) != 0 {
				t.Fatalf("bob after alice's ack = %+v", evs)
			}
		})
	}
}

// TestExpiredReceiptsGroupBySenderAndRecipient: one receipt per sender and
// recipient, each naming that pair's dropped messages in order.
func TestExpiredReceiptsGroupBySenderAndRecipient(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	l := openLog(t, t.TempDir(), func(o *relaylog.Options) { o.Now = clock; o.Retention = time.Hour })
	defer l.Close()
	ctx := context.Background()
	want := map[[2]int64][]int64{} // (sender, recipient) → ids
	req := int64(0)
	for _, from := range []int64{1, 2} {
		for _, to := range []int64{10, 11, 12} {
			for range 3 {
				req++
				want[[2]int64{from, to}] = append(want[[2]int64{from, to}], send(t, l, from, to, req, "x").ID)
			}
		}
	}
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	if err := l.Expire(ctx); err != nil {
		t.Fatal(err)
	}
	for _, from := range []int64{1, 2} {
		evs, _ := pending(t, l, from, 0, 0)
		if len(evs) != 3 {
			t.Fatalf("sender %d: %d receipts, want 3: %+v", from, len(evs), evs)
		}
		for _, e := range evs {
			w := want[[2]int64{from, e.By}]
			if e.Kind != relaylog.KindExpired || fmt.Sprint(e.MessageIDs) != fmt.Sprint(w) {
				t.Fatalf("sender %d: receipt %+v, want EXPIRED of %v", from, e, w)
			}
			delete(want, [2]int64{from, e.By})
		}
	}
	if len(want) != 0 {
		t.Fatalf("no receipt for %v", want)
	}
	for _, to := range []int64{10, 11, 12} {
		if d := l.Depth(to); d != 0 {
			t.Fatalf("recipient %d still holds %d messages", to, d)
		}
	}
}

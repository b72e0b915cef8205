package relaylog_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/edgenode/edgenode/relaylog"
)

func link(t *testing.T, l *relaylog.Log, user int64, dev string) {
	t.Helper()
	if _, err := l.Link(context.Background(), user, dev); err != nil {
		t.Fatal(err)
	}
}

func ackDev(t *testing.T, l *relaylog.Log, user int64, dev string, upTo int64) int {
	t.Helper()
	n, err := l.AckDeviceVia(context.Background(), user, dev, upTo, nil)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// pendingFor is what a reader for dev gets of user's queue: the events
// past dev's cursor.
func pendingFor(t *testing.T, l *relaylog.Log, user int64, dev string) []relaylog.Event {
	t.Helper()
	c, ok := l.Cursor(user, dev)
	if !ok {
		t.Fatalf("device %q of %d not linked", dev, user)
	}
	evs, _ := pending(t, l, user, c, 0)
	return evs
}

func ids(evs []relaylog.Event) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

// delivered lists the message ids of the DELIVERED receipts queued for
// sender, in order.
func delivered(t *testing.T, l *relaylog.Log, sender int64) []int64 {
	t.Helper()
	evs, _ := pending(t, l, sender, 0, 0)
	var out []int64
	for _, e := range evs {
		if e.Kind == relaylog.KindDelivered {
			out = append(out, e.MessageIDs...)
		}
	}
	return out
}

// TestEachLinkedDeviceGetsEveryEvent: a user's events stay queued until
// each linked device acknowledged them; the first device to take a
// message raises its one DELIVERED receipt, and the second none.
func TestEachLinkedDeviceGetsEveryEvent(t *testing.T) {
	l := openLog(t, t.TempDir(), nil)
	defer l.Close()
	link(t, l, 2, "phone")
	link(t, l, 2, "tablet")
	m1 := send(t, l, 1, 2, 1, "one")
	m2 := send(t, l, 1, 2, 2, "two")
	if d := l.Depth(2); d != 2 {
		t.Fatalf("depth = %d, want 2", d)
	}
	if n := ackDev(t, l, 2, "phone", m2.ID); n != 0 {
		t.Fatalf("phone's ack removed %d events while the tablet has none", n)
	}
	if got := fmt.Sprint(delivered(t, l, 1)); got != fmt.Sprint([]int64{m1.ID, m2.ID}) {
		t.Fatalf("receipts after the phone's ack name %s", got)
	}
	if d := l.Depth(2); d != 0 {
		t.Fatalf("depth after one device took both = %d, want 0", d)
	}
	if got := ids(pendingFor(t, l, 2, "phone")); len(got) != 0 {
		t.Fatalf("phone still gets %v", got)
	}
	if got := fmt.Sprint(ids(pendingFor(t, l, 2, "tablet"))); got != fmt.Sprint([]int64{m1.ID, m2.ID}) {
		t.Fatalf("tablet gets %s, want both", got)
	}
	if n := ackDev(t, l, 2, "tablet", m1.ID); n != 1 {
		t.Fatalf("tablet's ack of the first removed %d events, want 1", n)
	}
	if n := ackDev(t, l, 2, "tablet", m2.ID); n != 1 {
		t.Fatalf("tablet's ack of the second removed %d events, want 1", n)
	}
	if evs, _ := pending(t, l, 2, 0, 0); len(evs) != 0 {
		t.Fatalf("queue after both devices = %v", ids(evs))
	}
	if got := delivered(t, l, 1); len(got) != 2 {
		t.Fatalf("receipts after the tablet's acks name %v, want the phone's two only", got)
	}
}

// TestNewDeviceStartsAfterTheOthers: a device linked later gets what no
// device took yet, not what the others acknowledged; the first device of
// a user gets everything queued.
func TestNewDeviceStartsAfterTheOthers(t *testing.T) {
	l := openLog(t, t.TempDir(), nil)
	defer l.Close()
	m1 := send(t, l, 1, 2, 1, "before any device")
	link(t, l, 2, "phone")
	if got := ids(pendingFor(t, l, 2, "phone")); len(got) != 1 || got[0] != m1.ID {
		t.Fatalf("first device gets %v, want the queued message", got)
	}
	ackDev(t, l, 2, "phone", m1.ID)
	m2 := send(t, l, 1, 2, 2, "undelivered")
	link(t, l, 2, "desktop")
	if got := ids(pendingFor(t, l, 2, "desktop")); len(got) != 1 || got[0] != m2.ID {
		t.Fatalf("new device gets %v, want only %d", got, m2.ID)
	}
	// Linking again is idempotent: the cursor stays.
	again, err := l.Link(context.Background(), 2, "desktop")
	if err != nil || again {
		t.Fatalf("second link: new=%v err=%v", again, err)
	}
	if got := ids(pendingFor(t, l, 2, "desktop")); len(got) != 1 {
		t.Fatalf("after linking again the desktop gets %v", got)
	}
}

// TestUnlinkedDeviceHoldsNothing: revoking a lagging device frees what it
// held, and its acknowledgements change nothing afterwards.
func TestUnlinkedDeviceHoldsNothing(t *testing.T) {
	l := openLog(t, t.TempDir(), nil)
	defer l.Close()
	link(t, l, 2, "phone")
	link(t, l, 2, "old-tablet")
	m := send(t, l, 1, 2, 1, "hi")
	ackDev(t, l, 2, "phone", m.ID)
	if evs, _ := pending(t, l, 2, 0, 0); len(evs) != 1 {
		t.Fatalf("queue before unlink holds %d events, want 1", len(evs))
	}
	if was, err := l.Unlink(context.Background(), 2, "old-tablet"); err != nil || !was {
		t.Fatalf("unlink = %v, %v", was, err)
	}
	if evs, _ := pending(t, l, 2, 0, 0); len(evs) != 0 {
		t.Fatalf("queue after unlink = %v", ids(evs))
	}
	m2 := send(t, l, 1, 2, 2, "again")
	if n, err := l.AckDevice(context.Background(), 2, "old-tablet", m2.ID); n != 0 || !errors.Is(err, relaylog.ErrDeviceRevoked) {
		t.Fatalf("an unlinked device's ack removed %d events (%v), want none and ErrDeviceRevoked", n, err)
	}
	if got := delivered(t, l, 1); len(got) != 1 {
		t.Fatalf("an unlinked device's ack raised receipts: %v", got)
	}
	if _, ok := l.Cursor(2, "old-tablet"); ok {
		t.Fatal("unlinked device still has a cursor")
	}
	if was, err := l.Unlink(context.Background(), 2, "old-tablet"); err != nil || was {
		t.Fatalf("second unlink = %v, %v", was, err)
	}
}

// TestUserWithoutDevicesKeepsOneQueue: until a device links, any
// acknowledgement (with a device id or without) removes what it covers,
// as before devices existed.
func TestUserWithoutDevicesKeepsOneQueue(t *testing.T) {
	l := openLog(t, t.TempDir(), nil)
	defer l.Close()
	m1 := send(t, l, 1, 2, 1, "a")
	m2 := send(t, l, 1, 2, 2, "b")
	if n := ackDev(t, l, 2, "never-linked", m1.ID); n != 1 {
		t.Fatalf("ack of an unlinked user's device removed %d, want 1", n)
	}
	if n, err := l.Ack(context.Background(), 2, m2.ID); err != nil || n != 1 {
		t.Fatalf("plain ack = %d, %v", n, err)
	}
	if got := delivered(t, l, 1); len(got) != 2 {
		t.Fatalf("receipts = %v", got)
	}
}

// TestLinkedDevicesAreBounded: linking one device past MaxLinkedPerUser
// forgets the one seen longest ago, and what it held goes with it.
func TestLinkedDevicesAreBounded(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); now = now.Add(time.Millisecond); return now }
	l := openLog(t, t.TempDir(), func(o *relaylog.Options) { o.Now = clock })
	defer l.Close()
	for i := 0; i < relaylog.MaxLinkedPerUser; i++ {
		link(t, l, 2, fmt.Sprintf("d%d", i))
	}
	m := send(t, l, 1, 2, 1, "x")
	for i := 1; i < relaylog.MaxLinkedPerUser; i++ {
		ackDev(t, l, 2, fmt.Sprintf("d%d", i), m.ID) // d0 lags, and was seen longest ago
	}
	link(t, l, 2, "new")
	list, _ := l.LinkedDevices(context.Background(), 2)
	if len(list) != relaylog.MaxLinkedPerUser {
		t.Fatalf("%d devices linked, want %d", len(list), relaylog.MaxLinkedPerUser)
	}
	for _, d := range list {
		if d.ID == "d0" {
			t.Fatal("the device seen longest ago is still linked")
		}
	}
	if evs, _ := pending(t, l, 2, 0, 0); len(evs) != 0 {
		t.Fatalf("the forgotten device's events stay: %v", ids(evs))
	}
}

// TestDeviceGoneForRetentionHoldsNothing: a device that neither
// acknowledged nor linked again for the retention period is forgotten by
// the expiry sweep, and the queue no longer waits for it.
func TestDeviceGoneForRetentionHoldsNothing(t *testing.T) {
	clock, advance := manualClock()
	l := openLog(t, t.TempDir(), func(o *relaylog.Options) { o.Now = clock; o.Retention = time.Hour })
	defer l.Close()
	link(t, l, 2, "phone")
	link(t, l, 2, "lost")
	advance(50 * time.Minute)
	m := send(t, l, 1, 2, 1, "recent")
	ackDev(t, l, 2, "phone", m.ID)
	advance(20 * time.Minute) // "lost" last seen 70 minutes ago, the phone 20
	if err := l.Expire(context.Background()); err != nil {
		t.Fatal(err)
	}
	if list, _ := l.LinkedDevices(context.Background(), 2); len(list) != 1 || list[0].ID != "phone" {
		t.Fatalf("linked after expiry = %+v", list)
	}
	if evs, _ := pending(t, l, 2, 0, 0); len(evs) != 0 {
		t.Fatalf("queue after the lost device expired = %v", ids(evs))
	}
}

// TestLinkedDevicesSurviveRestart: links, cursors and what the queue
// holds for a lagging device come back from the log and from a snapshot.
func TestLinkedDevicesSurviveRestart(t *testing.T) {
	for _, snap := range []bool{false, true} {
		t.Run(fmt.Sprintf("snapshot=%v", snap), func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, nil)
			link(t, l, 2, "phone")
			link(t, l, 2, "tablet")
			m1 := send(t, l, 1, 2, 1, "one")
			m2 := send(t, l, 1, 2, 2, "two")
			ackDev(t, l, 2, "phone", m2.ID)
			ackDev(t, l, 2, "tablet", m1.ID)
			if snap {
				if err := l.Snapshot(); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = openLog(t, dir, nil)
			defer l.Close()
			if got := ids(pendingFor(t, l, 2, "tablet")); len(got) != 1 || got[0] != m2.ID {
				t.Fatalf("tablet after restart gets %v, want %d", got, m2.ID)
			}
			if got := ids(pendingFor(t, l, 2, "phone")); len(got) != 0 {
				t.Fatalf("phone after restart gets %v", got)
			}
			if d := l.Depth(2); d != 0 {
				t.Fatalf("depth after restart = %d, want 0 (delivered to the phone)", d)
			}
			// The tablet's ack of the rest raises no second receipt.
			ackDev(t, l, 2, "tablet", m2.ID)
			if got := delivered(t, l, 1); len(got) != 2 {
				t.Fatalf("receipts = %v, want one per message", got)
			}
			if evs, _ := pending(t, l, 2, 0, 0); len(evs) != 0 {
				t.Fatalf("queue = %v", ids(evs))
			}
		})
	}
}

// TestDevicesWaitForEveryReplica: while a server of the shard's
// configuration (here a non-voter) runs a build without linked devices,
// nothing proposes their commands, which that replica could not read: a
// device is not linked and acknowledgements remove events as they did.
func TestDevicesWaitForEveryReplica(t *testing.T) {
	l := openLog(t, t.TempDir(), func(o *relaylog.Options) {
		o.Shards = 1
		o.PeerFeatures = func(node string) uint64 { return 0 } // every other node is older
	})
	defer l.Close()
	ctx := context.Background()
	if _, ok, err := l.Attach(ctx, 2, "phone"); err != nil || !ok {
		t.Fatalf("attach on a lone node: ok=%v err=%v", ok, err)
	}
	if err := l.Raft(0).AddNonvoter("old", "127.0.0.1:1", 0, 0).Error(); err != nil {
		t.Fatal(err)
	}
	// Until the leader checks again (hasFeature trusts a yes for a few
	// seconds), devices may still link: each try is another user's.
	u := int64(100)
	eventually(t, "the gate to close", func() bool {
		u++
		_, ok, err := l.Attach(ctx, u, "tablet")
		return err == nil && !ok
	})
	if _, err := l.Link(ctx, 2, "tablet"); !errors.Is(err, relaylog.ErrDevicesUnavailable) {
		t.Fatalf("link with an older replica: %v", err)
	}
	if list, _ := l.LinkedDevices(ctx, 2); len(list) != 1 {
		t.Fatalf("linked = %+v, want the phone only", list)
	}
	// A user without linked devices: a device's acknowledgement removes
	// what it covers, as before.
	m := send(t, l, 1, 3, 1, "x")
	if n := ackDev(t, l, 3, "laptop", m.ID); n != 1 {
		t.Fatalf("ack removed %d events, want 1", n)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRevokedDevicesStayOut: a revoked device cannot link, acknowledge or
// bind a push token again, across restarts and snapshots; the default
// device is unlinked but not kept out; a user keeps the latest
// MaxRevokedPerUser revocations, each for the retention period.
func TestRevokedDevicesStayOut(t *testing.T) {
	for _, snap := range []bool{false, true} {
		t.Run(fmt.Sprintf("snapshot=%v", snap), func(t *testing.T) {
			clock, advance := manualClock()
			dir := t.TempDir()
			opts := func(o *relaylog.Options) { o.Now = clock; o.Retention = time.Hour }
			l := openLog(t, dir, opts)
			ctx := context.Background()
			link(t, l, 2, "phone")
			link(t, l, 2, "stolen")
			link(t, l, 2, relaylog.DefaultDevice)
			m := send(t, l, 1, 2, 1, "hi")
			for _, dev := range []string{"stolen", relaylog.DefaultDevice} {
				if found, err := l.Unlink(ctx, 2, dev); err != nil || !found {
					t.Fatalf("revoke %q = %v, %v", dev, found, err)
				}
			}
			if snap {
				if err := l.Snapshot(); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = openLog(t, dir, opts)
			defer l.Close()
			if _, _, err := l.Attach(ctx, 2, "stolen"); !errors.Is(err, relaylog.ErrDeviceRevoked) {
				t.Fatalf("attach of the revoked device = %v, want ErrDeviceRevoked", err)
			}
			if _, err := l.Link(ctx, 2, "stolen"); !errors.Is(err, relaylog.ErrDeviceRevoked) {
				t.Fatalf("link of the revoked device = %v, want ErrDeviceRevoked", err)
			}
			if _, err := l.AckDevice(ctx, 2, "stolen", m.ID); !errors.Is(err, relaylog.ErrDeviceRevoked) {
				t.Fatalf("ack of the revoked device = %v, want ErrDeviceRevoked", err)
			}
			if err := l.RegisterDevice(ctx, 2, relaylog.Device{Platform: "fcm", Token: "t", DeviceID: "stolen"}); !errors.Is(err, relaylog.ErrDeviceRevoked) {
				t.Fatalf("token of the revoked device = %v, want ErrDeviceRevoked", err)
			}
			if _, _, err := l.Attach(ctx, 2, relaylog.DefaultDevice); err != nil {
				t.Fatalf("the default device comes back: %v", err)
			}
			if got := ids(pendingFor(t, l, 2, "phone")); len(got) != 1 || got[0] != m.ID {
				t.Fatalf("phone gets %v", got)
			}

			// Bounded: the oldest of MaxRevokedPerUser+1 revocations goes.
			for i := range relaylog.MaxRevokedPerUser {
				link(t, l, 3, fmt.Sprint("d", i))
				if _, err := l.Unlink(ctx, 3, fmt.Sprint("d", i)); err != nil {
					t.Fatal(err)
				}
			}
			link(t, l, 3, "last")
			if _, err := l.Unlink(ctx, 3, "last"); err != nil {
				t.Fatal(err)
			}
			if _, err := l.Link(ctx, 3, "d0"); err != nil {
				t.Fatalf("the oldest revocation beyond the bound still holds: %v", err)
			}
			if _, err := l.Link(ctx, 3, "d1"); !errors.Is(err, relaylog.ErrDeviceRevoked) {
				t.Fatalf("a revocation within the bound was forgotten: %v", err)
			}

			// After the retention period the revocation is forgotten.
			advance(2 * time.Hour)
			if err := l.Expire(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := l.Link(ctx, 2, "stolen"); err != nil {
				t.Fatalf("revocation kept past the retention period: %v", err)
			}
		})
	}
}

// TestBatchedAcknowledgements: with Options.AckBatch, an acknowledgement
// that raises a DELIVERED receipt commits before it answers, one that
// raises none waits up to the batch time (the leader's Attach already
// answers with it), then commits and trims; one still waiting when the
// log closes is committed first.
func TestBatchedAcknowledgements(t *testing.T) {
	dir := t.TempDir()
	opts := func(o *relaylog.Options) { o.AckBatch = 200 * time.Millisecond }
	l := openLog(t, dir, opts)
	ctx := context.Background()
	link(t, l, 2, "phone")
	link(t, l, 2, "tablet")
	m := send(t, l, 1, 2, 1, "hi")
	ackDev(t, l, 2, "phone", m.ID)
	if got := delivered(t, l, 1); len(got) != 1 || got[0] != m.ID {
		t.Fatalf("receipts right after the first ack = %v", got)
	}
	if c, _ := l.Cursor(2, "phone"); c != m.ID {
		t.Fatalf("phone's cursor %d right after its ack, want %d: an ack raising a receipt commits at once", c, m.ID)
	}
	ackDev(t, l, 2, "tablet", m.ID)
	if c, _, err := l.Attach(ctx, 2, "tablet"); err != nil || c != m.ID {
		t.Fatalf("tablet attaches after %d (%v), want %d (its waiting ack)", c, err, m.ID)
	}
	eventually(t, "the tablet's batched ack committed", func() bool {
		c, _ := l.Cursor(2, "tablet")
		return c == m.ID
	})
	if evs, _ := pending(t, l, 2, 0, 0); len(evs) != 0 {
		t.Fatalf("queue after both acks = %v", ids(evs))
	}

	// Closing commits what waits.
	m2 := send(t, l, 1, 2, 2, "two")
	ackDev(t, l, 2, "phone", m2.ID)
	ackDev(t, l, 2, "tablet", m2.ID)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, opts)
	defer l.Close()
	if c, _ := l.Cursor(2, "tablet"); c != m2.ID {
		t.Fatalf("tablet's cursor after a restart %d, want %d", c, m2.ID)
	}
}

// TestCopiesHaveTimeIDs: sent copies and read syncs get their ids from the
// proposer's clock like every other event (their id's time is when they
// were queued), not just the shard's last id plus one.
func TestCopiesHaveTimeIDs(t *testing.T) {
	l := openLog(t, t.TempDir(), nil)
	defer l.Close()
	ctx := context.Background()
	for _, dev := range []string{"phone", "tablet"} {
		if _, err := l.Link(ctx, 1, dev); err != nil {
			t.Fatal(err)
		}
	}
	before := time.Now()
	if queued, err := l.SentCopy(ctx, 1, relaylog.Event{ID: 1, To: 2, Content: "x", CreatedAt: "2026-12-07T00:00:00Z"}); err != nil || !queued {
		t.Fatal(queued, err)
	}
	evs, _ := pending(t, l, 1, 0, 0)
	if len(evs) != 1 || evs[0].Kind != relaylog.KindSent {
		t.Fatalf("queue %+v", evs)
	}
	if at := evs[0].Time(); at.Before(before.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
		t.Fatalf("sent copy's id time %v, queued at %v", at, before)
	}
}

// TestFlushAcksBeforeHandover: FlushAcks commits a shard's waiting
// acknowledgements at once (the cluster calls it before it hands the
// shard's leadership to another node, which would not have them).
func TestFlushAcksBeforeHandover(t *testing.T) {
	l := openLog(t, t.TempDir(), func(o *relaylog.Options) { o.AckBatch = time.Hour })
	defer l.Close()
	link(t, l, 2, "phone")
	link(t, l, 2, "tablet")
	m := send(t, l, 1, 2, 1, "hi")
	ackDev(t, l, 2, "phone", m.ID)
	ackDev(t, l, 2, "tablet", m.ID)
	if c, _ := l.Cursor(2, "tablet"); c != 0 {
		t.Fatalf("tablet's cursor %d before the batch went out", c)
	}
	l.FlushAcks(l.ShardFor(2))
	if c, _ := l.Cursor(2, "tablet"); c != m.ID {
		t.Fatalf("tablet's cursor %d after FlushAcks, want %d", c, m.ID)
	}
}

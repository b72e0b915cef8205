package relaylog_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

func sendReq(l *relaylog.Log, from, to, req int64, content string) (relaylog.Event, bool, error) {
	return l.Send(context.Background(), from, wire.NewMessageRequest{RequestID: req, ToUserID: to, Content: content, CreatedAt: createdAt(req)})
}

// sameShard returns n users of user's shard (user first).
func sameShard(user int64, shards, n int) []int64 {
	out := []int64{user}
	for u := user + 1; len(out) < n; u++ {
		if relaylog.ShardOf(u, shards) == relaylog.ShardOf(user, shards) {
			out = append(out, u)
		}
	}
	return out
}

func TestRetryWithinHorizonAfterSnapshotAndRestart(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	first, _, err := sendReq(l, 1, 2, 1, "remember me")
	if err != nil {
		t.Fatal(err)
	}
	// Other sends of the same sender to the same shard, fewer than it
	// remembers.
	for i, to := range sameShard(2, 4, relaylog.IdempotencyPerSender-1)[1:] {
		if _, _, err := sendReq(l, 1, to, int64(10+i), "other"); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Snapshot(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l = openLog(t, dir, nil)
	defer l.Close()
	again, created, err := sendReq(l, 1, 2, 1, "remember me")
	if err != nil || created || again.ID != first.ID {
		t.Fatalf("retry after snapshot and restart = %+v created=%v err=%v, want id %d", again, created, err, first.ID)
	}
	// The key is (sender, recipient, requestId): the same requestId to
	// another recipient is another message, in this shard or another.
	for _, to := range []int64{sameShard(2, 4, 2)[1], 3} {
		if ev, created, err := sendReq(l, 1, to, 1, "remember me"); err != nil || !created || ev.ID == first.ID {
			t.Fatalf("requestId 1 to %d = %+v created=%v err=%v", to, ev, created, err)
		}
	}
}

func TestRetryPastHorizonIsRefused(t *testing.T) {
	t.Run("count", func(t *testing.T) {
		dir := t.TempDir()
		l := openLog(t, dir, nil)
		if _, _, err := sendReq(l, 1, 2, 1, "first"); err != nil {
			t.Fatal(err)
		}
		// As many newer sends to the shard as it remembers push the
		// first out.
		for i := 0; i < relaylog.IdempotencyPerSender; i++ {
			if _, _, err := sendReq(l, 1, 2, int64(100+i), "newer"); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Snapshot(); err != nil {
			t.Fatal(err)
		}
		l.Close()
		l = openLog(t, dir, nil)
		defer l.Close()
		if _, _, err := sendReq(l, 1, 2, 1, "first"); !errors.Is(err, relaylog.ErrRequestExpired) {
			t.Fatalf("retry of a forgotten request: err = %v, want ErrRequestExpired", err)
		}
		if evs, _ := pending(t, l, 2, 0, 0); len(evs) != 1+relaylog.IdempotencyPerSender {
			t.Fatalf("%d events queued, want %d: the refused retry stored something", len(evs), 1+relaylog.IdempotencyPerSender)
		}
		// A new message, written after the forgotten ones, goes through.
		if _, created, err := sendReq(l, 1, 2, 1000, "new"); err != nil || !created {
			t.Fatalf("new message: created=%v err=%v", created, err)
		}
	})
	t.Run("time", func(t *testing.T) {
		var mu sync.Mutex
		now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		dir := t.TempDir()
		opts := func(o *relaylog.Options) { o.Now = clock; o.IdempotencyWindow = time.Hour }
		l := openLog(t, dir, opts)
		first, _, err := sendReq(l, 1, 2, 1, "first")
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		now = now.Add(59 * time.Minute)
		mu.Unlock()
		if err := l.Expire(context.Background()); err != nil {
			t.Fatal(err)
		}
		if ev, created, err := sendReq(l, 1, 2, 1, "first"); err != nil || created || ev.ID != first.ID {
			t.Fatalf("retry within the window = %+v created=%v err=%v", ev, created, err)
		}
		mu.Lock()
		now = now.Add(2 * time.Minute)
		mu.Unlock()
		if err := l.Expire(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := l.StateSizes().IdempotencyRecords; got != 0 {
			t.Fatalf("%d idempotency records after the window, want 0", got)
		}
		if err := l.Snapshot(); err != nil {
			t.Fatal(err)
		}
		l.Close()
		l = openLog(t, dir, opts)
		defer l.Close()
		if _, _, err := sendReq(l, 1, 2, 1, "first"); !errors.Is(err, relaylog.ErrRequestExpired) {
			t.Fatalf("retry after the window: err = %v, want ErrRequestExpired", err)
		}
		if evs, _ := pending(t, l, 2, 0, 0); len(evs) != 1 {
			t.Fatalf("%d events queued, want 1", len(evs))
		}
	})
}

func TestIdleStateIsGoneAfterRetention(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	dir := t.TempDir()
	opts := func(o *relaylog.Options) { o.Now = clock; o.Retention = 48 * time.Hour }
	l := openLog(t, dir, opts)
	ctx := context.Background()
	m, _, err := sendReq(l, 1, 2, 1, "hi")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Ack(ctx, 2, m.ID); err != nil { // a DELIVERED receipt for 1
		t.Fatal(err)
	}
	if err := l.MarkRead(ctx, 2, 1, m.ID); err != nil {
		t.Fatal(err)
	}
	if err := l.RegisterDevice(ctx, 2, relaylog.Device{Platform: "fcm", Token: "t2"}); err != nil {
		t.Fatal(err)
	}
	if err := l.SetLastConnected(ctx, 2, clock()); err != nil {
		t.Fatal(err)
	}
	z := l.StateSizes()
	if z.Queues == 0 || z.Senders != 1 || z.IdempotencyRecords != 1 || z.Devices != 1 || z.LastConnected != 1 || z.ReadMarks != 1 {
		t.Fatalf("state before = %+v", z)
	}
	mu.Lock()
	now = now.Add(49 * time.Hour)
	mu.Unlock()
	if err := l.Expire(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Snapshot(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l = openLog(t, dir, opts)
	defer l.Close()
	if z := l.StateSizes(); z != (relaylog.StateSizes{}) {
		t.Fatalf("state of users idle past retention after snapshot and restore = %+v, want none", z)
	}
	if d := l.Devices(2); len(d) != 0 {
		t.Fatalf("devices = %+v", d)
	}
}

func TestReadMarkWithoutMessageCreatesNothing(t *testing.T) {
	l := openLog(t, t.TempDir(), nil)
	defer l.Close()
	ctx := context.Background()
	m, _, err := sendReq(l, 1, 2, 1, "hi")
	if err != nil {
		t.Fatal(err)
	}
	// Ids no message to reader 2 can have: from another shard, or from the
	// future. (A made-up id of the reader's shard from the past still makes
	// a mark; it expires with the retention period.)
	other := m.ID + 1
	for relaylog.IDShard(other, 4) == relaylog.ShardOf(2, 4) {
		other++
	}
	for _, upTo := range []int64{other, m.ID + (int64(time.Hour/time.Millisecond) << 12)} {
		if err := l.MarkRead(ctx, 2, 9, upTo); err != nil {
			t.Fatal(err)
		}
	}
	if z := l.StateSizes(); z.ReadMarks != 0 {
		t.Fatalf("%d read marks from marks naming no message", z.ReadMarks)
	}
	if evs, _ := pending(t, l, 9, 0, 0); len(evs) != 0 {
		t.Fatalf("user 9 got %+v", evs)
	}
	if err := l.MarkRead(ctx, 2, 1, m.ID); err != nil {
		t.Fatal(err)
	}
	if z := l.StateSizes(); z.ReadMarks != 1 {
		t.Fatalf("%d read marks, want 1", z.ReadMarks)
	}
}

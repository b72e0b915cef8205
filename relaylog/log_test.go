package relaylog_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/edgenode/edgenode/internal/relaytest"
	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

func openLog(t *testing.T, dir string, mod func(*relaylog.Options)) *relaylog.Log {
	t.Helper()
	o := relaytest.Options(dir)
	if mod != nil {
		mod(&o)
	}
	return relaytest.Open(t, o)
}

func send(t *testing.T, l *relaylog.Log, from, to, req int64, content string) relaylog.Event {
	t.Helper()
	ev, _, err := l.Send(context.Background(), from, wire.NewMessageRequest{RequestID: req, ToUserID: to, Content: content, CreatedAt: createdAt(req)})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// manualClock is a clock for Options.Now that moves only by advance.
func manualClock() (clock func() time.Time, advance func(time.Duration)) {
	var mu sync.Mutex
	now := time.Now()
	clock = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance = func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	return clock, advance
}

// createdAt is a distinct createdAt per request, as a client's clock gives.
func createdAt(req int64) string {
	return time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC).Add(time.Duration(req) * time.Millisecond).Format(time.RFC3339Nano)
}

func TestSendPendingAckReceipt(t *testing.T) {
	for _, store := range []string{relaylog.StoreWAL, relaylog.StoreShared, relaylog.StoreBoltPerShard} {
		t.Run(store, func(t *testing.T) {
			l := openLog(t, t.TempDir(), func(o *relaylog.Options) { o.Store = store })
			defer l.Close()
			m1 := send(t, l, 1, 2, 10, "hello")
			m2 := send(t, l, 3, 2, 11, "hi there")
			if m2.ID <= m1.ID {
				t.Fatalf("ids not increasing: %d then %d", m1.ID, m2.ID)
			}
			evs, more := pending(t, l, 2, 0, 10)
			if len(evs) != 2 || more || evs[0].ID != m1.ID || evs[1].Content != "hi there" {
				t.Fatalf("pending = %+v more=%v", evs, more)
			}
			if n, err := l.Ack(context.Background(), 2, m1.ID); err != nil || n != 1 {
				t.Fatalf("ack = %d, %v", n, err)
			}
			evs, _ = pending(t, l, 2, 0, 10)
			if len(evs) != 1 || evs[0].ID != m2.ID {
				t.Fatalf("after ack pending = %+v", evs)
			}
			rc, _ := pending(t, l, 1, 0, 10)
			if len(rc) != 1 || rc[0].Kind != relaylog.KindDelivered || rc[0].By != 2 || len(rc[0].MessageIDs) != 1 || rc[0].MessageIDs[0] != m1.ID {
				t.Fatalf("sender's receipt = %+v", rc)
			}
			if rc[0].ID <= m1.ID {
				t.Fatalf("receipt id %d not after message id %d", rc[0].ID, m1.ID)
			}
		})
	}
}

func TestIdempotentSend(t *testing.T) {
	l := openLog(t, t.TempDir(), nil)
	defer l.Close()
	req := wire.NewMessageRequest{RequestID: 7, ToUserID: 2, Content: "once", CreatedAt: "2026-11-27T10:00:00.000Z"}
	a, created, err := l.Send(context.Background(), 1, req)
	if err != nil || !created {
		t.Fatal(err, created)
	}
	b, created, err := l.Send(context.Background(), 1, req)
	if err != nil || created || b.ID != a.ID || b.Content != a.Content || b.CreatedAt != a.CreatedAt {
		t.Fatalf("retry = %+v created=%v err=%v; want %+v", b, created, err, a)
	}
	if evs, _ := pending(t, l, 2, 0, 10); len(evs) != 1 {
		t.Fatalf("retry queued a second event: %+v", evs)
	}
	req.Content = "other"
	if _, _, err := l.Send(context.Background(), 1, req); !errors.Is(err, relaylog.ErrRequestIDReused) {
		t.Fatalf("reused requestId with other content: err = %v", err)
	}
	// Another sender may use the same requestId.
	if _, created, err := l.Send(context.Background(), 9, req); err != nil || !created {
		t.Fatal(err, created)
	}
}

func TestQueueDepthLimit(t *testing.T) {
	l := openLog(t, t.TempDir(), func(o *relaylog.Options) { o.MaxQueueDepth = 3 })
	defer l.Close()
	// Three senders, one message each (a sender's share of a queue of 3
	// is 1).
	for from := int64(1); from <= 3; from++ {
		send(t, l, from, 2, from, "x")
	}
	_, _, err := l.Send(context.Background(), 4, wire.NewMessageRequest{RequestID: 4, ToUserID: 2, Content: "x", CreatedAt: createdAt(4)})
	if !errors.Is(err, relaylog.ErrQueueFull) || errors.Is(err, relaylog.ErrSenderShareFull) {
		t.Fatalf("err = %v, want ErrQueueFull", err)
	}
	evs, _ := pending(t, l, 2, 0, 0)
	if _, err := l.Ack(context.Background(), 2, evs[0].ID); err != nil {
		t.Fatal(err)
	}
	send(t, l, 4, 2, 4, "x")
}

// TestSenderShare: one sender may have a tenth of a recipient's queue
// undelivered; a retry of a send already taken is still answered with its
// message.
func TestSenderShare(t *testing.T) {
	l := openLog(t, t.TempDir(), func(o *relaylog.Options) { o.MaxQueueDepth = 20 })
	defer l.Close()
	first := send(t, l, 1, 2, 1, "a")
	send(t, l, 1, 2, 2, "b")
	_, _, err := l.Send(context.Background(), 1, wire.NewMessageRequest{RequestID: 3, ToUserID: 2, Content: "c", CreatedAt: createdAt(3)})
	if !errors.Is(err, relaylog.ErrSenderShareFull) || !errors.Is(err, relaylog.ErrQueueFull) {
		t.Fatalf("a third undelivered message of one sender: err = %v, want ErrSenderShareFull", err)
	}
	ev, created, err := l.Send(context.Background(), 1, wire.NewMessageRequest{RequestID: 1, ToUserID: 2, Content: "a", CreatedAt: createdAt(1)})
	if err != nil || created || ev.ID != first.ID {
		t.Fatalf("retry at the share: %v %v %v, want the first message", ev.ID, created, err)
	}
	send(t, l, 5, 2, 1, "another sender")
}

func TestReadReceiptsCoalesceAndIgnoreOlder(t *testing.T) {
	l := openLog(t, t.TempDir(), nil)
	defer l.Close()
	ctx := context.Background()
	m := send(t, l, 1, 2, 1, "a")
	n := send(t, l, 1, 2, 2, "b")
	for _, up := range []int64{m.ID, n.ID, m.ID, n.ID} {
		if err := l.MarkRead(ctx, 2, 1, up); err != nil {
			t.Fatal(err)
		}
	}
	evs, _ := pending(t, l, 1, 0, 0)
	if len(evs) != 1 || evs[0].Kind != relaylog.KindRead || evs[0].UpTo != n.ID || evs[0].By != 2 {
		t.Fatalf("sender's queue = %+v, want one READ up to %d", evs, n.ID)
	}
}

func TestRestartKeepsEverything(t *testing.T) {
	for _, snap := range []bool{false, true} {
		t.Run(fmt.Sprintf("snapshot=%v", snap), func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, nil)
			var sent []relaylog.Event
			for i := int64(1); i <= 200; i++ {
				sent = append(sent, send(t, l, i%7+1, 100+i%5, i, fmt.Sprintf("m%d", i)))
			}
			ctx := context.Background()
			if err := l.RegisterDevice(ctx, 101, relaylog.Device{Platform: "apns", Token: "tok1", Topic: "app"}); err != nil {
				t.Fatal(err)
			}
			if err := l.SetLastConnected(ctx, 101, time.UnixMilli(1800000000000)); err != nil {
				t.Fatal(err)
			}
			if snap {
				if err := l.Snapshot(); err != nil {
					t.Fatal(err)
				}
				send(t, l, 1, 100, 1000, "after snapshot")
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = openLog(t, dir, func(o *relaylog.Options) { o.Shards = 0 })
			defer l.Close()
			total := 0
			for u := int64(100); u < 105; u++ {
				evs, _ := pending(t, l, u, 0, 0)
				total += len(evs)
			}
			want := 200
			if snap {
				want++
			}
			if total != want {
				t.Fatalf("after restart %d events, want %d", total, want)
			}
			// Idempotency survives the restart.
			again, created, err := l.Send(ctx, sent[0].From, wire.NewMessageRequest{RequestID: 1, ToUserID: sent[0].To, Content: sent[0].Content, CreatedAt: sent[0].CreatedAt})
			if err != nil || created || again.ID != sent[0].ID {
				t.Fatalf("retry after restart = %+v created=%v err=%v", again, created, err)
			}
			if d := l.Devices(101); len(d) != 1 || d[0].Token != "tok1" {
				t.Fatalf("devices = %+v", d)
			}
			if at, ok := l.LastConnected(101); !ok || at.UnixMilli() != 1800000000000 {
				t.Fatalf("last connected = %v %v", at, ok)
			}
			// New ids stay above the old ones.
			if n := send(t, l, 1, 100, 5000, "new"); n.ID <= sent[len(sent)-1].ID {
				t.Fatalf("id after restart %d not above %d", n.ID, sent[len(sent)-1].ID)
			}
		})
	}
}

func TestShardCountIsFixed(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	l.Close()
	if _, err := relaylog.Open(relaylog.Options{Dir: dir, NodeID: "n1", Shards: 8}); err == nil {
		t.Fatal("reopening with another shard count succeeded")
	}
}

func TestExpire(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	l := openLog(t, t.TempDir(), func(o *relaylog.Options) { o.Now = clock; o.Retention = time.Hour; o.IdempotencyWindow = time.Minute })
	defer l.Close()
	old := send(t, l, 1, 2, 1, "old")
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	send(t, l, 1, 2, 2, "new")
	if err := l.Expire(context.Background()); err != nil {
		t.Fatal(err)
	}
	evs, _ := pending(t, l, 2, 0, 0)
	if len(evs) != 1 || evs[0].Content != "new" {
		t.Fatalf("after expiry = %+v", evs)
	}
	// The old request is forgotten, and a retry of it is refused rather
	// than taken for a new message.
	_, _, err := l.Send(context.Background(), 1, wire.NewMessageRequest{RequestID: 1, ToUserID: 2, Content: "old", CreatedAt: createdAt(1)})
	if !errors.Is(err, relaylog.ErrRequestExpired) {
		t.Fatalf("retry after the window: err = %v, want ErrRequestExpired (first id %d)", err, old.ID)
	}
}

func TestConcurrentSendsAreBatched(t *testing.T) {
	l := openLog(t, t.TempDir(), func(o *relaylog.Options) { o.Shards = 8 })
	defer l.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				_, _, err := l.Send(context.Background(), int64(g+1), wire.NewMessageRequest{RequestID: int64(i + 1), ToUserID: int64(1000 + i%20), Content: "x", CreatedAt: createdAt(int64(i + 1))})
				if err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := 0
	seen := map[int64]bool{}
	for u := int64(1000); u < 1020; u++ {
		evs, _ := pending(t, l, u, 0, 0)
		for i, e := range evs {
			if seen[e.ID] {
				t.Fatalf("duplicate id %d", e.ID)
			}
			seen[e.ID] = true
			if i > 0 && e.ID <= evs[i-1].ID {
				t.Fatalf("queue of %d out of order", u)
			}
		}
		total += len(evs)
	}
	if total != 64*50 {
		t.Fatalf("%d events, want %d", total, 64*50)
	}
}

func pending(t *testing.T, l *relaylog.Log, user, after int64, limit int) ([]relaylog.Event, bool) {
	t.Helper()
	evs, more, err := l.Pending(context.Background(), user, after, limit)
	if err != nil {
		t.Fatal(err)
	}
	return evs, more
}

// TestReadMarksNeedAConversation: a mark-read creates a READ receipt only
// for a conversation that carried a message from the sender to the reader,
// up to the sender's newest message; the contacts survive a snapshot and
// a restart.
func TestReadMarksNeedAConversation(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	ctx := context.Background()
	m := send(t, l, 5, 6, 1, "hi")
	stranger := send(t, l, 7, 6, 1, "someone else")
	reads := func(l *relaylog.Log, user int64) int {
		evs, _ := pending(t, l, user, 0, 0)
		n := 0
		for _, e := range evs {
			if e.Kind == relaylog.KindRead {
				n++
			}
		}
		return n
	}
	for _, c := range []struct{ sender, upTo int64 }{{8, m.ID}, {5, stranger.ID + 1<<20}} {
		if err := l.MarkRead(ctx, 6, c.sender, c.upTo); err != nil {
			t.Fatal(err)
		}
	}
	if reads(l, 8) != 0 || reads(l, 5) != 0 {
		t.Fatal("a mark without a conversation, or past its newest message, made a receipt")
	}
	if z := l.StateSizes(); z.Contacts != 2 {
		t.Fatalf("%d contacts, want 2 (5→6, 7→6)", z.Contacts)
	}
	if err := l.Snapshot(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l = openLog(t, dir, nil)
	defer l.Close()
	if z := l.StateSizes(); z.Contacts != 2 {
		t.Fatalf("%d contacts after a snapshot and a restart, want 2", z.Contacts)
	}
	if err := l.MarkRead(ctx, 6, 5, m.ID); err != nil {
		t.Fatal(err)
	}
	if reads(l, 5) != 1 {
		t.Fatal("no READ receipt for a message the sender sent")
	}
}

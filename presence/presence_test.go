package presence

import (
	"sync"
	"testing"
	"time"

	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

type fakeSession struct {
	user     int64
	mu       sync.Mutex
	statuses []wire.ContactStatus
	notified int
	offered  int
}

func (s *fakeSession) UserID() int64 { return s.user }
func (s *fakeSession) Notify()       { s.mu.Lock(); s.notified++; s.mu.Unlock() }
func (s *fakeSession) Offer(int64, []relaylog.Event) {
	s.mu.Lock()
	s.offered++
	s.mu.Unlock()
}
func (s *fakeSession) Status(st wire.ContactStatus) {
	s.mu.Lock()
	s.statuses = append(s.statuses, st)
	s.mu.Unlock()
}
func (s *fakeSession) take() []wire.ContactStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.statuses
	s.statuses = nil
	return out
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestTypingExpires(t *testing.T) {
	c := &clock{t: time.Unix(1800000000, 0)}
	h := New(Options{Now: c.now, TypingTimeout: 6 * time.Second})
	bob := &fakeSession{user: 2}
	h.Connect(bob)
	h.Connect(&fakeSession{user: 1}) // only an online user types
	h.SetTyping(1, 2, true)
	if st := bob.take(); len(st) != 1 || !st[0].Typing || st[0].UserID != 1 {
		t.Fatalf("typing start: %+v", st)
	}
	c.advance(5 * time.Second)
	h.ExpireTyping()
	if st := bob.take(); len(st) != 0 {
		t.Fatalf("expired too early: %+v", st)
	}
	h.SetTyping(1, 2, true) // renewal moves the expiry
	bob.take()
	c.advance(5 * time.Second)
	h.ExpireTyping()
	if st := bob.take(); len(st) != 0 {
		t.Fatalf("renewed indicator expired: %+v", st)
	}
	c.advance(2 * time.Second)
	h.ExpireTyping()
	if st := bob.take(); len(st) != 1 || st[0].Typing || st[0].UserID != 1 {
		t.Fatalf("after expiry: %+v", st)
	}
	if h.Status(2, 1).Typing {
		t.Fatal("status still typing")
	}
}

func TestStopTypingWithoutStartSendsNothing(t *testing.T) {
	h := New(Options{})
	bob := &fakeSession{user: 2}
	h.Connect(bob)
	h.SetTyping(1, 2, false)
	if st := bob.take(); len(st) != 0 {
		t.Fatalf("%+v", st)
	}
}

func TestWatchersSeeOnlineOfflineAndTypingEnds(t *testing.T) {
	c := &clock{t: time.Unix(1800000000, 0)}
	h := New(Options{Now: c.now})
	alice := &fakeSession{user: 1}
	h.Connect(alice)
	initial := h.Watch(alice, []int64{2, 2, 3})
	if len(initial) != 2 || initial[0].UserID != 2 || initial[0].Online || initial[1].UserID != 3 {
		t.Fatalf("watch answer (deduplicated): %+v", initial)
	}
	bob1, bob2 := &fakeSession{user: 2}, &fakeSession{user: 2}
	h.Connect(bob1)
	h.Connect(bob2) // a second socket is no news
	if st := alice.take(); len(st) != 1 || !st[0].Online {
		t.Fatalf("online: %+v", st)
	}
	h.SetTyping(2, 1, true)
	alice.take()
	h.Disconnect(bob1, c.now())
	if st := alice.take(); len(st) != 0 {
		t.Fatalf("offline while another socket is open: %+v", st)
	}
	h.Disconnect(bob2, c.now())
	st := alice.take()
	// Watchers learn bob is offline; alice, who was typed to, learns the
	// typing ended (she is both here).
	if len(st) != 2 || st[0].Online || st[0].LastConnectedAt == nil || st[1].Typing {
		t.Fatalf("offline: %+v", st)
	}
	// Replacing the watch list stops updates for users no longer in it.
	h.Watch(alice, []int64{3})
	h.Connect(&fakeSession{user: 2})
	if st := alice.take(); len(st) != 0 {
		t.Fatalf("unwatched user's update delivered: %+v", st)
	}
}

func TestCommittedReachesEverySession(t *testing.T) {
	h := New(Options{})
	a, b := &fakeSession{user: 5}, &fakeSession{user: 5}
	h.Connect(a)
	h.Connect(b)
	h.Committed(5)
	h.Committed(6)
	if a.notified != 1 || b.notified != 1 {
		t.Fatalf("notified %d, %d", a.notified, b.notified)
	}
	if h.Count(5) != 2 || !h.Online(5) || h.Online(6) {
		t.Fatal("counts wrong")
	}
}

// A home's push reaches every session of its user here, and no other.
func TestOfferReachesTheUsersSessions(t *testing.T) {
	h := New(Options{})
	a1, a2, b := &fakeSession{user: 2}, &fakeSession{user: 2}, &fakeSession{user: 3}
	h.Connect(a1)
	h.Connect(a2)
	h.Connect(b)
	h.Offer(2, 5, []relaylog.Event{{ID: 6, To: 2}})
	for _, s := range []*fakeSession{a1, a2} {
		s.mu.Lock()
		got := s.offered
		s.mu.Unlock()
		if got != 1 {
			t.Fatalf("user 2's session offered %d times, want 1", got)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.offered != 0 || b.notified != 0 {
		t.Fatalf("user 3's session offered %d, notified %d: want neither", b.offered, b.notified)
	}
}

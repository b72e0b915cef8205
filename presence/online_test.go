package presence

import (
	"testing"
	"time"

	"github.com/edgenode/edgenode/wire"
)

// A user with no session anywhere is never typing: its indicator is not
// relayed, and no status says typing without online.
func TestTypingOnlyWhileOnline(t *testing.T) {
	h := New(Options{})
	bob := &fakeSession{user: 2}
	h.Connect(bob)
	h.SetTyping(1, 2, true) // user 1 has no session
	if st := bob.take(); len(st) != 0 {
		t.Fatalf("typing from an offline user relayed: %+v", st)
	}
	if st := h.Status(2, 1); st.Typing || st.Online {
		t.Fatalf("status of offline user: %+v", st)
	}
	// Online, typing; offline again, the indicator ends and stays ended.
	alice := &fakeSession{user: 1}
	h.Connect(alice)
	h.SetTyping(1, 2, true)
	if st := bob.take(); len(st) != 1 || !st[0].Typing || !st[0].Online {
		t.Fatalf("typing from an online user: %+v", st)
	}
	h.Disconnect(alice, time.Now())
	if st := bob.take(); len(st) != 1 || st[0].Typing || st[0].Online {
		t.Fatalf("after the typer left: %+v", st)
	}
	if st := h.Status(2, 1); st.Typing {
		t.Fatalf("status: %+v", st)
	}
}

// A remote typer (cluster) is relayed only while some node holds its socket.
type fakeRemote struct{ online map[int64]bool }

func (r *fakeRemote) IsHome(int64) bool                { return true }
func (r *fakeRemote) Online(u int64) bool              { return r.online[u] }
func (r *fakeRemote) Presence(u int64) (bool, int64)   { return r.online[u], 0 }
func (r *fakeRemote) Watch(int64, bool)                {}
func (r *fakeRemote) Typing(from, to int64, _, _ bool) {}
func (r *fakeRemote) Connected(int64)                  {}
func (r *fakeRemote) Disconnected(int64)               {}

func TestRemoteTypingOnlyWhileOnline(t *testing.T) {
	r := &fakeRemote{online: map[int64]bool{}}
	h := New(Options{Remote: r})
	bob := &fakeSession{user: 2}
	h.Connect(bob)
	h.DeliverTyping(1, 2, true, false) // relayed from a node that found user 1 gone
	if st := bob.take(); len(st) != 0 {
		t.Fatalf("typing of an offline user delivered: %+v", st)
	}
	h.SetTyping(1, 2, true) // taken here: user 1 has no socket anywhere
	if st := bob.take(); len(st) != 0 {
		t.Fatalf("typing of an offline user delivered: %+v", st)
	}
	r.online[1] = true
	h.SetTyping(1, 2, true)
	if st := bob.take(); len(st) != 1 || !st[0].Typing || !st[0].Online {
		t.Fatalf("typing of a user online elsewhere: %+v", st)
	}
	// Relayed by a node that found user 1 online: delivered as online
	// without asking again (the home now says offline: not asked).
	r.online[1] = false
	h.DeliverTyping(1, 2, false, true)
	h.DeliverTyping(1, 2, true, true)
	if st := bob.take(); len(st) != 2 || !st[1].Typing || !st[1].Online {
		t.Fatalf("typing relayed with the origin's finding: %+v", st)
	}
}

// The online update of a user's first socket carries the open time as
// lastConnectedAt, although the store still has an older one (or none).
func TestOnlineUpdateCarriesOpenTime(t *testing.T) {
	stored := time.UnixMilli(1700000000000)
	h := New(Options{LastConnected: func(int64) (time.Time, bool) { return stored, true }})
	alice := &fakeSession{user: 1}
	h.Connect(alice)
	h.Watch(alice, []int64{2})
	opened := time.UnixMilli(1800000000123)
	bob := &fakeSession{user: 2}
	h.ConnectAt(bob, opened)
	want := wire.FormatTime(opened)
	st := alice.take()
	if len(st) != 1 || !st[0].Online || st[0].LastConnectedAt == nil || *st[0].LastConnectedAt != want {
		t.Fatalf("online update %+v; want lastConnectedAt %s", st, want)
	}
	// Bob watching himself, and anyone asking, see it too.
	if got := h.Watch(bob, []int64{2}); len(got) != 1 || got[0].LastConnectedAt == nil || *got[0].LastConnectedAt != want {
		t.Fatalf("self watch %+v", got)
	}
	// A second socket opening, then closing, moves it.
	bob2 := &fakeSession{user: 2}
	h.ConnectAt(bob2, opened.Add(time.Second))
	closed := opened.Add(2 * time.Second)
	h.Disconnect(bob2, closed)
	if st := h.Status(1, 2); st.LastConnectedAt == nil || *st.LastConnectedAt != wire.FormatTime(closed) {
		t.Fatalf("after a second socket closed: %+v", st)
	}
	// A status pushed by the home with the stale stored time is corrected
	// for watchers here.
	old := wire.FormatTime(stored)
	h.PushStatus(wire.ContactStatus{UserID: 2, Online: true, LastConnectedAt: &old})
	if st := alice.take(); len(st) != 1 || *st[0].LastConnectedAt != wire.FormatTime(closed) {
		t.Fatalf("pushed status %+v", st)
	}
}

// A home's offline status that arrives after one of the user's sockets
// opened here is stale: watchers here keep seeing the user online.
func TestStaleOfflineStatusIsDropped(t *testing.T) {
	h := New(Options{Remote: &fakeRemote{online: map[int64]bool{}}})
	alice := &fakeSession{user: 1}
	h.Connect(alice)
	h.Watch(alice, []int64{2})
	alice.take()
	h.PushStatus(wire.ContactStatus{UserID: 2, Online: false})
	if st := alice.take(); len(st) != 1 || st[0].Online {
		t.Fatalf("offline status with no socket of user 2 here: %+v, want it delivered", st)
	}
	h.Connect(&fakeSession{user: 2})
	alice.take()
	h.PushStatus(wire.ContactStatus{UserID: 2, Online: false})
	if st := alice.take(); len(st) != 0 {
		t.Fatalf("offline status delivered while user 2 has a socket here: %+v", st)
	}
}

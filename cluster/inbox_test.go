package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

func evs(ids ...int64) []relaylog.Event {
	out := make([]relaylog.Event, len(ids))
	for i, id := range ids {
		out[i] = relaylog.Event{ID: id, To: 7}
	}
	return out
}

func ids(d Delivery) []int64 {
	var out []int64
	for _, ev := range d.Events {
		out = append(out, ev.ID)
	}
	return out
}

func next(t *testing.T, b *Inbox) []Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out := b.Next(ctx)
	if out == nil {
		t.Fatal("nothing delivered")
	}
	return out
}

// Offers that follow on from each other are joined; one that does not, or
// a plain wake, turns the user's entry into a pull.
func TestInboxJoinsOffersThatFollowOn(t *testing.T) {
	b := newInbox()
	b.offer(7, 0, evs(1, 2))
	b.offer(7, 2, evs(3))
	got := next(t, b)
	if len(got) != 1 || got[0].Kind != Wake || got[0].After != 0 || len(ids(got[0])) != 3 || ids(got[0])[2] != 3 {
		t.Fatalf("joined offer: %+v", got)
	}

	b.offer(7, 3, evs(4))
	b.offer(7, 9, evs(10)) // a gap: the socket must pull
	got = next(t, b)
	if len(got) != 1 || got[0].Events != nil {
		t.Fatalf("offer after a gap: %+v, want a pull", got)
	}

	b.offer(7, 0, evs(1))
	b.wakeUser(7)
	b.offer(7, 1, evs(2)) // joins a pull: still a pull
	if got = next(t, b); len(got) != 1 || got[0].Events != nil {
		t.Fatalf("wake then offer: %+v, want a pull", got)
	}
}

// No number of offers of one user grows its entry past inboxEvents.
func TestInboxBoundsAUsersEvents(t *testing.T) {
	b := newInbox()
	for id := int64(0); id < 2*inboxEvents; id++ {
		b.offer(7, id, evs(id+1))
	}
	got := next(t, b)
	if len(got) != 1 || got[0].Events != nil {
		t.Fatalf("%d events offered one by one: %d deliveries, %d events, want one pull", 2*inboxEvents, len(got), len(got[0].Events))
	}
}

// A status replaces the user's waiting one, and deliveries leave in the
// order of their latest change: an offline status set after a typing
// indicator is delivered after it.
func TestInboxKeepsTheLatestInOrderOfChange(t *testing.T) {
	b := newInbox()
	b.status(wire.ContactStatus{UserID: 1, Online: true})
	b.typingTo(1, 2, true, true)
	b.offline(3)
	b.status(wire.ContactStatus{UserID: 1, Online: false})
	got := next(t, b)
	if len(got) != 3 {
		t.Fatalf("deliveries %+v, want 3", got)
	}
	if got[0].Kind != Typing || got[0].From != 1 || got[0].User != 2 || !got[0].Typing {
		t.Fatalf("first %+v, want the typing indicator", got[0])
	}
	if got[1].Kind != Offline || got[1].User != 3 {
		t.Fatalf("second %+v, want user 3 offline", got[1])
	}
	if got[2].Kind != Status || got[2].Status.UserID != 1 || got[2].Status.Online {
		t.Fatalf("third %+v, want user 1's latest status (offline)", got[2])
	}
}

// Typing indicators beyond inboxTyping are dropped; everything else still
// gets in, and the cap frees once read.
func TestInboxCapsTyping(t *testing.T) {
	b := newInbox()
	for from := int64(1); from <= inboxTyping+10; from++ {
		b.typingTo(from, 2, true, true)
	}
	b.offline(9)
	got := next(t, b)
	if len(got) != inboxTyping+1 || got[len(got)-1].Kind != Offline {
		t.Fatalf("%d deliveries (last %+v), want %d typing and the offline notice", len(got), got[len(got)-1], inboxTyping)
	}
	b.typingTo(1, 2, false, true)
	if got = next(t, b); len(got) != 1 || got[0].Typing {
		t.Fatalf("after a read: %+v", got)
	}
}

// Next waits for a delivery and ends with its context.
func TestInboxNextWaits(t *testing.T) {
	b := newInbox()
	done := make(chan []Delivery)
	go func() { done <- b.Next(context.Background()) }()
	b.wakeUser(5)
	if got := <-done; len(got) != 1 || got[0].User != 5 {
		t.Fatalf("woken with %+v", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got := b.Next(ctx); got != nil {
		t.Fatalf("after its context ended: %+v", got)
	}
}

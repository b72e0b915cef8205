package cluster

import (
	"cmp"
	"context"
	"slices"
	"sync"

	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

// The inbox: the one way the cluster hands this node's sockets, watchers
// and push what the homes decided. The subscriptions publish into it (a
// home's wake-up with or without the events, a contact's status, a typing
// indicator, a user gone offline everywhere); the node's fan-out reads it
// (Inbox.Next), as it reads the relay log's commit stream, and hands each
// delivery to the presence hub or to push. The cluster calls nothing above
// it, and the hub and push need not exist when the cluster starts.
//
// Bounds: one entry per key, the latest value winning: per user for wakes
// (events pushed by a home are joined while they follow on from each other,
// up to inboxEvents, then the entry becomes a plain wake and the socket
// pulls), per watched user for statuses (a status is complete), per user
// for offline notices, per (from, to) for typing, whose entries are capped
// at inboxTyping (beyond, new indicators are dropped: they are soft and end
// by themselves). Entries leave in the order of their latest change, so a
// status that follows a typing indicator is delivered after it.

// DeliveryKind says what a Delivery carries.
type DeliveryKind uint8

const (
	// Wake: User's local sockets pull their queue (Events nil), or are
	// handed Events, every event of the queue with an id above After.
	Wake DeliveryKind = iota + 1
	// Status: a contact_status_update for the local watchers of
	// Status.UserID.
	Status
	// Typing: From is typing (or stopped) to User, for User's local
	// sockets; FromOnline is the home's finding that From has a socket.
	Typing
	// Offline: User's last socket anywhere in the cluster closed (told to
	// the user's home only), for push.
	Offline
)

// Delivery is one entry of the inbox.
type Delivery struct {
	Kind   DeliveryKind
	User   int64
	After  int64            // Wake with Events
	Events []relaylog.Event // Wake: the events a home pushed; nil: pull
	Status wire.ContactStatus
	From   int64
	Typing bool
	// FromOnline: Typing's sender has a socket somewhere.
	FromOnline bool
}

// inboxEvents bounds the events one user's wake carries in the inbox.
const inboxEvents = 4 * pushPage

// inboxTyping bounds the typing indicators waiting in the inbox.
const inboxTyping = 1 << 16

type inboxKey struct {
	kind DeliveryKind
	user int64
	from int64
}

type inboxEntry struct {
	Delivery
	seq uint64
}

// Inbox is the cluster's delivery stream (Cluster.Inbox); it has one
// reader.
type Inbox struct {
	mu      sync.Mutex
	entries map[inboxKey]*inboxEntry
	typing  int
	seq     uint64
	wake    chan struct{}
}

func newInbox() *Inbox {
	return &Inbox{entries: make(map[inboxKey]*inboxEntry), wake: make(chan struct{}, 1)}
}

// put stores d under k, replacing what waits there, and moves it to the
// end of the order. update, if set, merges d into a waiting entry instead.
func (b *Inbox) put(k inboxKey, d Delivery, update func(e *Delivery)) {
	b.mu.Lock()
	e := b.entries[k]
	switch {
	case e != nil && update != nil:
		update(&e.Delivery)
	case e != nil:
		e.Delivery = d
	case k.kind == Typing && b.typing >= inboxTyping:
		b.mu.Unlock()
		return
	default:
		e = &inboxEntry{Delivery: d}
		b.entries[k] = e
		if k.kind == Typing {
			b.typing++
		}
	}
	b.seq++
	e.seq = b.seq
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// wakeUser: user's local sockets pull.
func (b *Inbox) wakeUser(user int64) {
	b.put(inboxKey{kind: Wake, user: user}, Delivery{Kind: Wake, User: user}, func(e *Delivery) {
		e.After, e.Events = 0, nil
	})
}

// offer: user's local sockets are handed evs, the queue past after. It
// joins a waiting offer it follows on from; anything else makes a pull.
func (b *Inbox) offer(user, after int64, evs []relaylog.Event) {
	b.put(inboxKey{kind: Wake, user: user}, Delivery{Kind: Wake, User: user, After: after, Events: evs}, func(e *Delivery) {
		n := len(e.Events)
		if n == 0 || e.Events[n-1].ID != after || n+len(evs) > inboxEvents {
			e.After, e.Events = 0, nil
			return
		}
		e.Events = append(e.Events[:n:n], evs...)
	})
}

func (b *Inbox) status(st wire.ContactStatus) {
	b.put(inboxKey{kind: Status, user: st.UserID}, Delivery{Kind: Status, User: st.UserID, Status: st}, nil)
}

func (b *Inbox) typingTo(from, to int64, typing, fromOnline bool) {
	b.put(inboxKey{kind: Typing, user: to, from: from}, Delivery{Kind: Typing, User: to, From: from, Typing: typing, FromOnline: fromOnline}, nil)
}

func (b *Inbox) offline(user int64) {
	b.put(inboxKey{kind: Offline, user: user}, Delivery{Kind: Offline, User: user}, nil)
}

// Next waits for deliveries and returns every one published since the
// last call, in the order of their latest change. It returns nil when ctx
// ends.
func (b *Inbox) Next(ctx context.Context) []Delivery {
	for {
		b.mu.Lock()
		if len(b.entries) > 0 {
			waiting := make([]*inboxEntry, 0, len(b.entries))
			for _, e := range b.entries {
				waiting = append(waiting, e)
			}
			clear(b.entries)
			b.typing = 0
			b.mu.Unlock()
			slices.SortFunc(waiting, func(x, y *inboxEntry) int { return cmp.Compare(x.seq, y.seq) })
			out := make([]Delivery, len(waiting))
			for i, e := range waiting {
				out[i] = e.Delivery
			}
			return out
		}
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-b.wake:
		}
	}
}

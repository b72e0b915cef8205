package relaylog

import (
	"slices"
	"sort"
)

// Linked devices: several installations of one user's app (phone, tablet,
// desktop) each read the user's queue with a cursor of their own.
//
// An event is stored once per user queue, whatever the number of devices.
// Each linked device has a cursor (the id up to which it acknowledged the
// queue), and the queue keeps an event until every linked device is past
// it: it is trimmed at the lowest cursor. The queue also remembers how far
// any device got (queue.delivered): a message up to there reached the
// user, so it raised its DELIVERED receipt, needs no push and does not
// count against the recipient's queue depth (queue.held counts those
// messages).
//
// A device links once (cmdLink, when it first connects) and starts after
// what the user's other devices already acknowledged: it gets what is
// still undelivered, never the others' history (the app keeps history on
// the device). A user keeps at most MaxLinkedPerUser devices: linking one
// more forgets the one seen longest ago. A device goes when it is
// unlinked (revoked), or when it has not acknowledged or connected for the
// retention period (expire), and then holds nothing back.
//
// A device revoked by its user (cmdRevoke) stays out: linking it again is
// refused (ErrDeviceRevoked), so an installation removed from the account
// cannot come back under the same id, and its sockets are told so at their
// next acknowledgement. A user keeps the MaxRevokedPerUser latest
// revocations, each for the retention period. The default device is
// unlinked but never kept out (clients without a device id have no other
// way in).
//
// Laggards are bounded: of the events already delivered to some device, a
// queue keeps at most MaxHeldEvents; past it the oldest go, and a device
// that stayed away that long misses them.
//
// A user with no linked device (every user of clients without a device id,
// and every queue written before devices existed) keeps the behaviour of
// one device: an acknowledgement (cmdAck, or cmdAckDevice of any device)
// removes the events it covers.

// MaxLinkedPerUser bounds the devices linked to one user.
const MaxLinkedPerUser = 10

// MaxHeldEvents bounds, per user queue, the events kept for lagging
// devices after another device acknowledged them.
const MaxHeldEvents = 10000

// MaxRevokedPerUser bounds the revoked devices a user keeps out.
const MaxRevokedPerUser = 10

// MaxDeviceIDBytes bounds a device id.
const MaxDeviceIDBytes = 64

// DefaultDevice is the device of clients that name none.
const DefaultDevice = ""

// Linked is a device linked to a user, with its cursor in the user's queue.
type Linked struct {
	ID     string // the app's id for the installation; "" for clients that send none
	Cursor int64  // acknowledged the queue up to this event id
	Seen   int64  // Unix ms of its link or latest acknowledgement or connection
	// Push: a push token is registered for the device (Device.DeviceID);
	// filled by Log.LinkedDevices.
	Push bool
}

// Revoked is a device its user removed from the account.
type Revoked struct {
	ID string
	At int64 // Unix ms of the revocation
}

// ValidDeviceID reports whether id may name a device: 1 to
// MaxDeviceIDBytes of ASCII letters, digits, '-', '_' and '.'.
func ValidDeviceID(id string) bool {
	if len(id) == 0 || len(id) > MaxDeviceIDBytes {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func linkIndex(list []Linked, dev string) int {
	for i := range list {
		if list[i].ID == dev {
			return i
		}
	}
	return -1
}

// link applies cmdLink: dev of c.user is linked (or seen again) at c.at,
// unless dev was revoked.
func (f *fsm) link(c *command) result {
	if f.isRevokedLocked(c.user, c.dev) {
		return result{err: ErrDeviceRevoked}
	}
	old, _ := f.links.get(c.user)
	// Lists are replaced, never written in place: snapshots share them.
	list := slices.Clone(old)
	if i := linkIndex(list, c.dev); i >= 0 {
		list[i].Seen = max(list[i].Seen, c.at)
		f.links.set(c.user, list)
		return result{}
	}
	q, _ := f.queues.get(c.user)
	start := q.delivered
	if len(list) == 0 {
		// The first device: everything queued is undelivered.
		start = 0
	}
	list = append(list, Linked{ID: c.dev, Cursor: start, Seen: c.at})
	if len(list) > MaxLinkedPerUser {
		oldest := 0
		for i := range list[:len(list)-1] {
			if list[i].Seen < list[oldest].Seen {
				oldest = i
			}
		}
		list = slices.Delete(list, oldest, oldest+1)
		f.links.set(c.user, list)
		f.trim(c.user, list)
		return result{created: true}
	}
	f.links.set(c.user, list)
	return result{created: true}
}

// unlink applies cmdUnlink: dev no longer holds c.user's queue.
func (f *fsm) unlink(c *command) result {
	old, _ := f.links.get(c.user)
	i := linkIndex(old, c.dev)
	if i < 0 {
		return result{}
	}
	list := slices.Delete(slices.Clone(old), i, i+1)
	if len(list) == 0 {
		f.links.del(c.user)
	} else {
		f.links.set(c.user, list)
	}
	f.trim(c.user, list)
	return result{n: 1}
}

// revoke applies cmdRevoke: dev is unlinked and, unless it is the default
// device, kept out from c.at on.
func (f *fsm) revoke(c *command) result {
	r := f.unlink(c)
	if c.dev == DefaultDevice {
		return r
	}
	old, _ := f.revoked.get(c.user)
	list := make([]Revoked, 0, len(old)+1)
	for _, x := range old {
		if x.ID != c.dev {
			list = append(list, x)
		}
	}
	list = append(list, Revoked{ID: c.dev, At: c.at})
	if len(list) > MaxRevokedPerUser {
		list = list[len(list)-MaxRevokedPerUser:]
	}
	f.revoked.set(c.user, list)
	return r
}

// isRevokedLocked reports whether dev of user was revoked; f.mu held (or
// the apply goroutine).
func (f *fsm) isRevokedLocked(user int64, dev string) bool {
	list, _ := f.revoked.get(user)
	for _, x := range list {
		if x.ID == dev {
			return true
		}
	}
	return false
}

// isRevoked is isRevokedLocked from the outside.
func (f *fsm) isRevoked(user int64, dev string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.isRevokedLocked(user, dev)
}

// ackDevice applies cmdAckDevice (and cmdAck, as the default device): dev
// acknowledged c.user's queue up to c.upTo. It returns how many events
// left the queue.
func (f *fsm) ackDevice(c *command) result {
	q, hasQ := f.queues.get(c.user)
	old, _ := f.links.get(c.user)
	if len(old) == 0 {
		// One device: the acknowledgement removes what it covers.
		if !hasQ {
			return result{}
		}
		n := sort.Search(len(q.events), func(i int) bool { return q.events[i].ID > c.upTo })
		f.dropPrefix(c.user, q, n)
		return result{n: n}
	}
	i := linkIndex(old, c.dev)
	if i < 0 {
		return result{} // a device unlinked meanwhile (or never linked)
	}
	upTo := c.upTo
	if hasQ && len(q.events) > 0 {
		upTo = min(upTo, q.events[len(q.events)-1].ID)
	} else {
		upTo = min(upTo, q.delivered)
	}
	list := slices.Clone(old)
	list[i].Seen = max(list[i].Seen, c.at)
	if upTo > list[i].Cursor {
		list[i].Cursor = upTo
	}
	f.links.set(c.user, list)
	if !hasQ {
		return result{}
	}
	if upTo > q.delivered {
		for _, e := range q.events[sort.Search(len(q.events), func(i int) bool { return q.events[i].ID > q.delivered }):] {
			if e.ID > upTo {
				break
			}
			if e.Kind == KindMessage {
				q.held++
			}
		}
		q.delivered = upTo
		f.queues.set(c.user, q)
	}
	return result{n: f.trim(c.user, list)}
}

// trim drops the events of user's queue that every device in list is
// past, and the oldest delivered ones beyond MaxHeldEvents. It returns how
// many it dropped.
func (f *fsm) trim(user int64, list []Linked) int {
	q, ok := f.queues.get(user)
	if !ok || len(list) == 0 {
		return 0
	}
	low := list[0].Cursor
	for _, d := range list[1:] {
		low = min(low, d.Cursor)
	}
	n := sort.Search(len(q.events), func(i int) bool { return q.events[i].ID > low })
	held := sort.Search(len(q.events), func(i int) bool { return q.events[i].ID > q.delivered })
	n = max(n, held-MaxHeldEvents)
	f.dropPrefix(user, q, n)
	return n
}

// linkedOf lists user's linked devices.
func (f *fsm) linkedOf(user int64) []Linked {
	f.mu.RLock()
	defer f.mu.RUnlock()
	list, _ := f.links.get(user)
	return slices.Clone(list)
}

// linked is dev of user as linked, and whether it is.
func (f *fsm) linked(user int64, dev string) (Linked, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	list, _ := f.links.get(user)
	if i := linkIndex(list, dev); i >= 0 {
		return list[i], true
	}
	return Linked{}, false
}

// cursorOf is dev's cursor in user's queue and whether dev is linked.
func (f *fsm) cursorOf(user int64, dev string) (int64, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	list, _ := f.links.get(user)
	if i := linkIndex(list, dev); i >= 0 {
		return list[i].Cursor, true
	}
	return 0, false
}

// toAcknowledge is what an acknowledgement of user's queue up to upTo by
// dev covers: moved reports whether it moves anything (dev's cursor, or
// the queue of a user without linked devices), first the events it
// delivers to the user for the first time (those raise DELIVERED
// receipts), and last the id of the newest event it covers.
func (f *fsm) toAcknowledge(user int64, dev string, upTo int64) (moved bool, first []Event, last int64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	q, _ := f.queues.get(user)
	n := sort.Search(len(q.events), func(i int) bool { return q.events[i].ID > upTo })
	list, _ := f.links.get(user)
	if len(list) == 0 {
		if n == 0 {
			return false, nil, 0
		}
		return true, append([]Event(nil), q.events[:n]...), q.events[n-1].ID
	}
	i := linkIndex(list, dev)
	if i < 0 || n == 0 || q.events[n-1].ID <= list[i].Cursor {
		return false, nil, 0
	}
	d := sort.Search(n, func(i int) bool { return q.events[i].ID > q.delivered })
	return true, append([]Event(nil), q.events[d:n]...), q.events[n-1].ID
}

// expireLinks forgets the devices not seen since retainMs and trims their
// users' queues.
func (f *fsm) expireLinks(retainMs int64) {
	type change struct {
		user int64
		list []Linked
	}
	var changes []change
	f.links.each(func(u int64, list []Linked) {
		kept := make([]Linked, 0, len(list))
		for _, d := range list {
			if d.Seen >= retainMs {
				kept = append(kept, d)
			}
		}
		if len(kept) < len(list) {
			changes = append(changes, change{u, kept})
		}
	})
	for _, c := range changes {
		if len(c.list) == 0 {
			f.links.del(c.user)
		} else {
			f.links.set(c.user, c.list)
			f.trim(c.user, c.list)
		}
	}
	var users []int64
	f.revoked.each(func(u int64, list []Revoked) {
		if list[0].At < retainMs {
			users = append(users, u)
		}
	})
	for _, u := range users {
		old, _ := f.revoked.get(u)
		var kept []Revoked
		for _, x := range old {
			if x.At >= retainMs {
				kept = append(kept, x)
			}
		}
		if len(kept) == 0 {
			f.revoked.del(u)
		} else {
			f.revoked.set(u, kept)
		}
	}
}

// Own sent messages and read marks on the user's other devices. A message
// a user sends from one device is queued for the user too (KindSent, by
// cmdSentCopy on the sender's shard once the recipient's shard committed
// it), and so is a read mark made on one device (KindReadSync, by
// cmdReadSync on the reader's shard), so that every device shows the whole
// conversation and the same unread counts. Both are queued only for a user
// with two or more linked devices: one device has them already. The
// device that sent or read is in the queue's reach too (it drops them by
// message id, or finds the mark already set); the edge that took a send
// from it passes over its copy on that device's socket (edge/flow.go).

// sentCopy applies cmdSentCopy.
func (f *fsm) sentCopy(c *command, touched *[]int64) result {
	if list, _ := f.links.get(c.user); len(list) < 2 {
		return result{}
	}
	q, _ := f.queues.get(c.user)
	return f.queueEvent(c.user, q, Event{ID: f.nextID(c.id), Kind: KindSent, From: c.user, To: c.from, UpTo: c.upTo, Content: c.content, CreatedAt: c.createdAt}, touched)
}

// readSync applies cmdReadSync. Like a read mark, it needs a conversation:
// a message from the sender to the reader up to the mark, which the
// reader's shard remembers (contacts).
func (f *fsm) readSync(c *command, touched *[]int64) result {
	if list, _ := f.links.get(c.user); len(list) < 2 {
		return result{}
	}
	if newest, ok := f.contacts.get(c.user, c.from); !ok || c.upTo <= 0 || c.upTo > newest {
		return result{}
	}
	q, _ := f.queues.get(c.user)
	for i := range q.events {
		if e := &q.events[i]; e.Kind == KindReadSync && e.By == c.from {
			if e.UpTo >= c.upTo {
				return result{}
			}
			q.events = withoutEvent(q.events, i)
			break
		}
	}
	return f.queueEvent(c.user, q, Event{ID: f.nextID(c.id), Kind: KindReadSync, By: c.from, UpTo: c.upTo}, touched)
}

// otherDevices reports whether user has two or more linked devices.
func (f *fsm) otherDevices(user int64) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	list, _ := f.links.get(user)
	return len(list) >= 2
}

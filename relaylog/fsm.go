package relaylog

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgenode/edgenode/internal/varint"
	"github.com/hashicorp/raft"
)

// fsm is the replicated state of one shard: the undelivered queues of its
// users, the idempotency records of sends to them, their push devices, their
// last connection times and the read marks of conversations whose sender
// lives here. Everything is in memory; raft's log and snapshots make it
// durable. Every table is bounded by users, not by traffic (docs/DESIGN.md,
// "State and its bounds"):
//
//   - queues: one per user with undelivered events, at most MaxQueueDepth
//     messages plus one READ receipt per contact and the DELIVERED and
//     EXPIRED receipts not yet acknowledged; events expire after the
//     retention period. Only messages count toward the depth limit and a
//     sender's share of it. Receipts are bounded by the user's own sends:
//     a DELIVERED receipt names messages of the user that its recipient
//     acknowledged, an EXPIRED one (at most MaxExpiredIDs ids) messages
//     of the user that the retention period dropped from its recipient's
//     queue undelivered, each message named once while its receipt is
//     queued (cmdExpired drops ids a queued EXPIRED receipt of the same
//     recipient already names); receipts that expire are dropped without
//     a receipt of their own;
//   - senders: per sender with a send to this shard, at most
//     IdempotencyPerSender records, each for at most the idempotency window,
//     and the entry itself until the retention period after its last send;
//   - devices: at most MaxDevicesPerUser per user, dropped once the user has
//     neither connected nor registered a device for the retention period;
//   - lastConn: per user, dropped after the retention period;
//   - lastRead: per sender on this shard, the read marks of at most
//     MaxPairsPerUser readers, each dropped once it is older than the
//     retention period;
//   - contacts: per reader on this shard, at most MaxPairsPerUser senders
//     with a message to the reader, each with the id of the newest; dropped
//     once that id is older than the retention period.
//
// Tables are copy-on-write towards snapshots (see table), so taking a
// snapshot costs O(1) under the lock whatever the state's size.
type fsm struct {
	shard     int
	shards    int
	shardBits uint
	notify    func(users []int64) // called after commit, outside the lock; must not block

	mu       sync.RWMutex
	lastID   int64
	queues   table[int64, queue]
	senders  table[int64, senderIdem]
	devices  table[int64, []Device]
	links    table[int64, []Linked]  // user → linked devices (linked.go)
	revoked  table[int64, []Revoked] // user → devices kept out (linked.go)
	tokens   map[string]int64        // device token → user, so a token moves between users; rebuilt on restore
	lastConn table[int64, int64]     // user → Unix ms
	lastRead pairs                   // sender → (reader, read up to id)
	contacts pairs                   // reader → (sender, id of the newest message from sender)
	retainID int64                   // the latest retention cutoff (cmdExpire): older pairs are dropped as they are met
	gen      int                     // generation of the latest freeze
	idemRecs int                     // records in all senders' entries
	queued   atomic.Int64            // messages in all queues (metrics read it without the lock)
}

// IdempotencyPerSender is how many of a sender's latest accepted sends to
// the users of one shard are remembered (within the idempotency window).
// Kafka's idempotent producer keeps five per partition; the SDK sends one
// request at a time per recipient, so a retry is almost always the newest.
const IdempotencyPerSender = 8

// senderIdem is what a shard remembers of one sender's sends to its users.
// A request that is not among recs and whose createdAt is at or before
// floor may be a retry of a forgotten one: it is answered ErrRequestExpired
// rather than risk a second copy.
type senderIdem struct {
	recs  []idemRec // oldest first; replaced, never written in place (snapshots share it)
	floor int64     // Unix µs: the newest createdAt among forgotten records
	last  int64     // id of the sender's newest accepted send here
}

type idemRec struct {
	to, reqID, id int64
	fp            uint64
	created       int64 // createdAt in Unix µs
}

// maxClockSkewID is ten minutes in id units: a read mark may name an id
// assigned by another node whose clock is ahead of this shard's leader.
const maxClockSkewID = 10 * 60 * 1000 << 12

// queue holds events in increasing id order. Its slice is copy-on-write
// towards snapshots: the prefix is dropped by reslicing, new events are
// appended past every snapshot's length, and removal from the middle builds
// a new slice.
type queue struct {
	events []Event
	msgs   int   // events of KindMessage
	pushed int64 // the user's devices were alerted of messages up to this id
	// delivered: some linked device acknowledged the queue up to this id
	// (0 for users without linked devices, whose acknowledgements remove
	// events); held counts the messages up to it that wait for other
	// devices. Messages past it are undelivered, bounded by the depth
	// limit (linked.go).
	delivered int64
	held      int
}

// undelivered is how many messages no device of the user acknowledged.
func (q *queue) undelivered() int { return q.msgs - q.held }

func newFSM(shard, shards int, notify func([]int64)) *fsm {
	f := &fsm{shard: shard, shards: shards, shardBits: shardBits(shards), notify: notify}
	f.reset()
	return f
}

func (f *fsm) reset() {
	f.lastID = 0
	f.queues = newTable[int64, queue]()
	f.senders = newTable[int64, senderIdem]()
	f.devices = newTable[int64, []Device]()
	f.links = newTable[int64, []Linked]()
	f.revoked = newTable[int64, []Revoked]()
	f.tokens = make(map[string]int64)
	f.lastConn = newTable[int64, int64]()
	f.lastRead = newPairs()
	f.contacts = newPairs()
	f.retainID = 0
	f.idemRecs = 0
	f.queued.Store(0)
}

// result is what applying one command answers to its proposer.
type result struct {
	ev      Event
	created bool
	n       int
	err     error
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch implements raft.BatchingFSM: one lock and one round of
// notifications for everything raft committed together.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	var touched []int64
	f.mu.Lock()
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		cmds, err := decodeEntry(l.Data)
		if err != nil {
			// A corrupt entry cannot be applied on any replica; skipping
			// it keeps every replica identical.
			out[i] = []result{{err: fmt.Errorf("relaylog: shard %d entry %d: %w", f.shard, l.Index, err)}}
			continue
		}
		res := make([]result, len(cmds))
		for j := range cmds {
			res[j] = f.apply(&cmds[j], &touched)
		}
		out[i] = res
	}
	f.mu.Unlock()
	if f.notify != nil {
		f.notify(touched)
	}
	return out
}

// Errors answered by the state machine.
var (
	// ErrQueueFull: the recipient has too many undelivered messages.
	ErrQueueFull = errors.New("relaylog: recipient's queue is full")
	// ErrSenderShareFull: the sender has its share of the recipient's
	// queue undelivered (SenderShare). It is an ErrQueueFull.
	ErrSenderShareFull = fmt.Errorf("%w: the sender's share of it is", ErrQueueFull)
	// ErrRequestIDReused: a requestId came again with other content.
	ErrRequestIDReused = errors.New("relaylog: requestId already used for a different message")
	// ErrRequestExpired: a request the shard does not remember is older
	// than requests of the same sender it has forgotten, so it may be a
	// retry of one of them; nothing is stored.
	ErrRequestExpired = errors.New("relaylog: request too old to be checked against earlier sends")
)

func (f *fsm) nextID(proposed int64) int64 {
	id := proposed
	if id <= f.lastID {
		id = f.lastID + 1<<f.shardBits
	}
	f.lastID = id
	return id
}

// createdMicros is createdAt in Unix µs; 0 when it does not parse (the edge
// checks it, so only entries written by hand fail).
func createdMicros(createdAt string) int64 {
	t, err := time.Parse(time.RFC3339Nano, createdAt)
	if err != nil {
		return 0
	}
	return t.UnixMicro()
}

// SenderShare is how many undelivered messages one sender may have in a
// queue of at most limit: a tenth of it, at least 1.
func SenderShare(limit int64) int64 { return max(1, limit/10) }

// overShare reports whether a send of c would take its sender past its
// share of the recipient's queue (SenderShare of c.limit). A retry of a
// send the shard remembers never is: it is answered with its message. The
// leader checks this before proposing, as admission control like the rate
// limit; the state machine's rules (and so the replay of entries written
// by earlier versions) are unchanged. Concurrent sends of one sender may
// overshoot the share by the sends in flight.
func (f *fsm) overShare(c *command) bool {
	share := SenderShare(c.limit)
	f.mu.RLock()
	defer f.mu.RUnlock()
	q, _ := f.queues.get(c.user)
	if c.limit <= 0 || int64(q.undelivered()) < share {
		return false
	}
	s, _ := f.senders.get(c.from)
	for i := range s.recs {
		if r := &s.recs[i]; r.reqID == c.reqID && (r.to == c.user || r.to == 0) {
			return false
		}
	}
	n := int64(0)
	for i := range q.events {
		if e := &q.events[i]; e.Kind == KindMessage && e.From == c.from && e.ID > q.delivered {
			if n++; n >= share {
				return true
			}
		}
	}
	return false
}

func (f *fsm) send(c *command, touched *[]int64) result {
	s, _ := f.senders.get(c.from)
	fp := fingerprint(c.user, c.content, c.createdAt)
	for i := len(s.recs) - 1; i >= 0; i-- {
		r := &s.recs[i]
		// to == 0: a record restored from a version 1-2 snapshot, whose
		// key was (sender, requestId) alone; its fingerprint holds the
		// recipient.
		if r.reqID == c.reqID && (r.to == c.user || r.to == 0) {
			if r.fp != fp {
				return result{err: ErrRequestIDReused}
			}
			return result{ev: Event{ID: r.id, Kind: KindMessage, From: c.from, To: c.user, Content: c.content, CreatedAt: c.createdAt}}
		}
	}
	created := createdMicros(c.createdAt)
	if s.floor != 0 && created <= s.floor {
		return result{err: ErrRequestExpired}
	}
	q, _ := f.queues.get(c.user)
	if c.limit > 0 && int64(q.undelivered()) >= c.limit {
		return result{err: ErrQueueFull}
	}
	ev := Event{ID: f.nextID(c.id), Kind: KindMessage, From: c.from, To: c.user, Content: c.content, CreatedAt: c.createdAt}
	q.events = append(q.events, ev)
	q.msgs++
	f.queues.set(c.user, q)
	f.queued.Add(1)
	rec := idemRec{to: c.user, reqID: c.reqID, id: ev.ID, fp: fp, created: created}
	keep := s.recs
	if len(keep) >= IdempotencyPerSender {
		for _, r := range keep[:len(keep)-IdempotencyPerSender+1] {
			s.floor = max(s.floor, r.created)
		}
		keep = keep[len(keep)-IdempotencyPerSender+1:]
	}
	f.idemRecs += len(keep) + 1 - len(s.recs)
	if f.senders.shared() {
		recs := make([]idemRec, len(keep), len(keep)+1)
		copy(recs, keep)
		s.recs = append(recs, rec)
	} else {
		// keep is a suffix of s.recs, which no snapshot reads: shifted in
		// place, the array stays at IdempotencyPerSender records.
		s.recs = append(s.recs[:copy(s.recs, keep)], rec)
	}
	s.last = ev.ID
	f.senders.set(c.from, s)
	f.contacts.set(c.user, c.from, ev.ID, f.retainID)
	*touched = append(*touched, c.user)
	return result{ev: ev, created: true}
}

func (f *fsm) apply(c *command, touched *[]int64) result {
	switch c.kind {
	case cmdSend:
		return f.send(c, touched)
	case cmdDelivered:
		q, _ := f.queues.get(c.user)
		return f.queueEvent(c.user, q, Event{ID: f.nextID(c.id), Kind: KindDelivered, By: c.from, MessageIDs: c.ids}, touched)
	case cmdExpired:
		q, _ := f.queues.get(c.user)
		ids := unnamedExpired(q.events, c.from, c.ids)
		if len(ids) == 0 {
			return result{}
		}
		return f.queueEvent(c.user, q, Event{ID: f.nextID(c.id), Kind: KindExpired, By: c.from, MessageIDs: ids}, touched)
	case cmdRead:
		// A mark can only name a message to the reader: such ids carry
		// the reader's shard and were assigned before this command. Any
		// other mark (a conversation that carried no message) creates
		// nothing.
		if c.upTo <= 0 || IDShard(c.upTo, f.shards) != ShardOf(c.from, f.shards) || c.upTo > c.id+maxClockSkewID {
			return result{}
		}
		if last, _ := f.lastRead.get(c.user, c.from); last >= c.upTo {
			return result{}
		}
		f.lastRead.set(c.user, c.from, c.upTo, f.retainID)
		q, _ := f.queues.get(c.user)
		// A newer read mark replaces the one still queued: a sender needs
		// only the latest, and the queue stays bounded by contacts.
		for i := range q.events {
			if e := &q.events[i]; e.Kind == KindRead && e.By == c.from {
				q.events = withoutEvent(q.events, i)
				break
			}
		}
		return f.queueEvent(c.user, q, Event{ID: f.nextID(c.id), Kind: KindRead, By: c.from, UpTo: c.upTo}, touched)
	case cmdAck, cmdAckDevice:
		return f.ackDevice(c)
	case cmdSentCopy:
		return f.sentCopy(c, touched)
	case cmdReadSync:
		return f.readSync(c, touched)
	case cmdLink:
		return f.link(c)
	case cmdUnlink:
		return f.unlink(c)
	case cmdRevoke:
		return f.revoke(c)
	case cmdDevice, cmdDeviceOf:
		f.removeToken(c.device.Token)
		d := c.device
		d.RegisteredAt = c.at
		if c.kind == cmdDevice {
			d.DeviceID = DefaultDevice
		}
		old, _ := f.devices.get(c.user)
		list := append(append(make([]Device, 0, len(old)+1), old...), d)
		if len(list) > MaxDevicesPerUser {
			delete(f.tokens, list[0].Token)
			list = list[1:]
		}
		f.devices.set(c.user, list)
		f.tokens[d.Token] = c.user
		return result{created: true}
	case cmdDeviceRemove:
		if owner, ok := f.tokens[c.device.Token]; !ok || owner != c.user {
			return result{}
		}
		// at > 0 removes the token only if it was not registered again
		// since at (push removing a token the provider rejected).
		if c.at > 0 {
			list, _ := f.devices.get(c.user)
			for _, d := range list {
				if d.Token == c.device.Token && d.RegisteredAt > c.at {
					return result{}
				}
			}
		}
		f.removeToken(c.device.Token)
		return result{n: 1}
	case cmdPushed:
		if q, ok := f.queues.get(c.user); ok && c.upTo > q.pushed {
			q.pushed = c.upTo
			f.queues.set(c.user, q)
		}
		return result{}
	case cmdLastConnected:
		if last, _ := f.lastConn.get(c.user); c.at > last {
			f.lastConn.set(c.user, c.at)
		}
		return result{}
	case cmdExpire:
		return result{n: f.expire(c.upTo, c.at)}
	}
	return result{err: fmt.Errorf("relaylog: unknown command %d", c.kind)}
}

// queueEvent appends ev, which is not a message, to user's queue q and
// records user as touched (its readers are woken after the commit).
func (f *fsm) queueEvent(user int64, q queue, ev Event, touched *[]int64) result {
	q.events = append(q.events, ev)
	f.queues.set(user, q)
	*touched = append(*touched, user)
	return result{ev: ev, created: true}
}

// withoutEvent is events without events[i], in a new slice: the queue's
// slice is shared with snapshots and never written in place.
func withoutEvent(events []Event, i int) []Event {
	kept := make([]Event, 0, len(events))
	kept = append(kept, events[:i]...)
	return append(kept, events[i+1:]...)
}

// unnamedExpired is ids without those a queued EXPIRED receipt of by
// already names: an expiry repeated after its receipts were committed (the
// leader lost its leadership before cmdExpire committed) queues each id
// once. It returns ids itself when nothing is taken out.
func unnamedExpired(events []Event, by int64, ids []int64) []int64 {
	var named map[int64]bool
	for i := range events {
		if e := &events[i]; e.Kind == KindExpired && e.By == by {
			if named == nil {
				named = make(map[int64]bool)
			}
			for _, id := range e.MessageIDs {
				named[id] = true
			}
		}
	}
	if named == nil {
		return ids
	}
	var out []int64
	for _, id := range ids {
		if !named[id] {
			out = append(out, id)
		}
	}
	return out
}

// expiringMsg is a message an expiry would drop undelivered.
type expiringMsg struct{ id, from, to int64 }

// expiring lists, oldest first, the messages that cmdExpire with retainID
// would drop from the queues, at most limit of them, and the cutoff that
// drops exactly those: retainID, or the id of the first message left out.
// It scans every queue, as expire does, and holds at most 2*(limit+1)
// messages at a time.
func (f *fsm) expiring(retainID int64, limit int) ([]expiringMsg, int64) {
	var out []expiringMsg
	byID := func(a, b expiringMsg) int { return cmp.Compare(a.id, b.id) }
	f.mu.RLock()
	f.queues.each(func(_ int64, q queue) {
		if q.undelivered() == 0 {
			return
		}
		for i := 0; i < len(q.events) && q.events[i].ID < retainID; i++ {
			if e := &q.events[i]; e.Kind == KindMessage && e.ID > q.delivered {
				out = append(out, expiringMsg{id: e.ID, from: e.From, to: e.To})
				if len(out) >= 2*(limit+1) {
					slices.SortFunc(out, byID)
					out = out[:limit+1]
				}
			}
		}
	})
	f.mu.RUnlock()
	slices.SortFunc(out, byID)
	if len(out) > limit {
		return out[:limit], out[limit].id
	}
	return out, retainID
}

// expire drops what the retention period (events and marks with ids below
// retainID, users idle since before it) and the idempotency window (records
// with ids below idemID) no longer keep. It scans every table: O(state) per
// run, once a minute.
func (f *fsm) expire(retainID, idemID int64) int {
	retainMs := IDTime(retainID).UnixMilli()
	f.expireLinks(retainMs)
	n := 0
	type dropQ struct {
		user int64
		q    queue
		k    int
	}
	var drops []dropQ
	f.queues.each(func(user int64, q queue) {
		if k := sort.Search(len(q.events), func(i int) bool { return q.events[i].ID >= retainID }); k > 0 {
			drops = append(drops, dropQ{user, q, k})
		}
	})
	for _, d := range drops {
		n += d.k
		f.dropPrefix(d.user, d.q, d.k)
	}
	type senderChange struct {
		from int64
		s    senderIdem
		gone bool
	}
	var sc []senderChange
	f.senders.each(func(from int64, s senderIdem) {
		k := 0
		for k < len(s.recs) && s.recs[k].id < idemID {
			s.floor = max(s.floor, s.recs[k].created)
			k++
		}
		f.idemRecs -= k
		switch {
		case len(s.recs) == k && s.last < retainID:
			sc = append(sc, senderChange{from: from, gone: true})
		case k > 0:
			s.recs = s.recs[k:len(s.recs):len(s.recs)]
			if len(s.recs) == 0 {
				s.recs = nil
			}
			sc = append(sc, senderChange{from: from, s: s})
		}
	})
	for _, c := range sc {
		if c.gone {
			f.senders.del(c.from)
		} else {
			f.senders.set(c.from, c.s)
		}
	}
	f.lastConn.deleteIf(func(_, ms int64) bool { return ms < retainMs })
	// Devices of users idle past retention go, with their tokens.
	f.devices.deleteIf(func(u int64, list []Device) bool {
		if ms, _ := f.lastConn.get(u); ms >= retainMs {
			return false
		}
		for _, d := range list {
			if d.RegisteredAt >= retainMs {
				return false
			}
		}
		for _, d := range list {
			delete(f.tokens, d.Token)
		}
		return true
	})
	f.retainID = max(f.retainID, retainID)
	f.lastRead.expire(retainID)
	f.contacts.expire(retainID)
	return n
}

func (f *fsm) dropPrefix(user int64, q queue, n int) {
	if n == 0 {
		return
	}
	for i := 0; i < n; i++ {
		if q.events[i].Kind == KindMessage {
			q.msgs--
			if q.events[i].ID <= q.delivered {
				q.held--
			}
			f.queued.Add(-1)
		}
	}
	if n == len(q.events) {
		f.queues.del(user)
		return
	}
	q.events = q.events[n:]
	f.queues.set(user, q)
}

// tokenOwner is the user of this shard a device token is registered for,
// or 0.
func (f *fsm) tokenOwner(token string) int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.tokens[token]
}

func (f *fsm) removeToken(token string) {
	owner, ok := f.tokens[token]
	if !ok {
		return
	}
	delete(f.tokens, token)
	list, _ := f.devices.get(owner)
	kept := make([]Device, 0, len(list))
	for _, d := range list {
		if d.Token != token {
			kept = append(kept, d)
		}
	}
	if len(kept) == 0 {
		f.devices.del(owner)
	} else {
		f.devices.set(owner, kept)
	}
}

// Reads, used by the node that leads the shard.

func (f *fsm) pending(user, after int64, limit int) ([]Event, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	q, ok := f.queues.get(user)
	if !ok {
		return nil, false
	}
	i := sort.Search(len(q.events), func(i int) bool { return q.events[i].ID > after })
	rest := q.events[i:]
	more := false
	if limit > 0 && len(rest) > limit {
		rest, more = rest[:limit], true
	}
	out := make([]Event, len(rest))
	copy(out, rest)
	return out, more
}

// depth is how many messages wait for user.
func (f *fsm) depth(user int64) int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	q, _ := f.queues.get(user)
	return q.undelivered()
}

func (f *fsm) lastConnected(user int64) (int64, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.lastConn.get(user)
}

func (f *fsm) devicesOf(user int64) []Device {
	f.mu.RLock()
	defer f.mu.RUnlock()
	list, _ := f.devices.get(user)
	return append([]Device(nil), list...)
}

// pushState is what a push alert for user needs: the messages no device
// acknowledged, the newest of them, and how far the user was already
// alerted.
func (f *fsm) pushState(user int64) (unread int, latest Event, pushed int64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.pushStateLocked(user)
}

func (f *fsm) pushStateLocked(user int64) (unread int, latest Event, pushed int64) {
	q, ok := f.queues.get(user)
	if !ok {
		return 0, Event{}, 0
	}
	for i := len(q.events) - 1; i >= 0 && q.events[i].ID > q.delivered; i-- {
		if q.events[i].Kind == KindMessage {
			latest = q.events[i]
			break
		}
	}
	return q.undelivered(), latest, q.pushed
}

// devicePushState is pushState for linked device dev of user: the
// messages after dev's cursor. For a device not linked it is pushState.
func (f *fsm) devicePushState(user int64, dev string) (unread int, latest Event, pushed int64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	list, _ := f.links.get(user)
	i := linkIndex(list, dev)
	if i < 0 {
		return f.pushStateLocked(user)
	}
	q, _ := f.queues.get(user)
	for j := len(q.events) - 1; j >= 0 && q.events[j].ID > list[i].Cursor; j-- {
		if q.events[j].Kind == KindMessage {
			if unread == 0 {
				latest = q.events[j]
			}
			unread++
		}
	}
	return unread, latest, q.pushed
}

// pushDueLocked reports whether user's newest message is newer than the
// push mark while a push token's device may lack it: a token bound to a
// linked device whose cursor is behind it, or any other token while no
// device acknowledged it.
func (f *fsm) pushDueLocked(user int64, q *queue) bool {
	tokens, _ := f.devices.get(user)
	if len(tokens) == 0 {
		return false
	}
	for i := len(q.events) - 1; i >= 0; i-- {
		e := &q.events[i]
		if e.Kind != KindMessage {
			continue
		}
		if e.ID <= q.pushed {
			return false
		}
		list, _ := f.links.get(user)
		for _, t := range tokens {
			if j := linkIndex(list, t.DeviceID); j >= 0 {
				if list[j].Cursor < e.ID {
					return true
				}
			} else if e.ID > q.delivered {
				return true
			}
		}
		return false
	}
	return false
}

// pushDue is pushDueLocked from the outside.
func (f *fsm) pushDue(user int64) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	q, ok := f.queues.get(user)
	return ok && f.pushDueLocked(user, &q)
}

// awaitingPush lists the users with a message newer than their last push
// that some device may lack.
func (f *fsm) awaitingPush() []int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []int64
	f.queues.each(func(u int64, q queue) {
		if f.pushDueLocked(u, &q) {
			out = append(out, u)
		}
	})
	return out
}

// lastEvent is the id of the newest event in user's queue, 0 if it is empty.
func (f *fsm) lastEvent(user int64) int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if q, _ := f.queues.get(user); len(q.events) > 0 {
		return q.events[len(q.events)-1].ID
	}
	return 0
}

func (f *fsm) maxID() int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.lastID
}

// StateSizes counts the entries of each table of a shard's state machine.
type StateSizes struct {
	Queues, Senders, IdempotencyRecords, Devices, LastConnected, ReadMarks, Contacts, Linked, Revoked int
}

// hasContact reports whether sender sent reader (a user of this shard) a
// message within the retention period, and the id of the newest.
func (f *fsm) hasContact(reader, sender int64) (int64, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.contacts.get(reader, sender)
}

// contactPairs reports, for each (reader, sender) pair of pairs (flat:
// reader, sender, reader, sender, ...), whether sender sent reader a
// message within the retention period.
func (f *fsm) contactPairs(pairs []int64) []bool {
	out := make([]bool, len(pairs)/2)
	f.mu.RLock()
	defer f.mu.RUnlock()
	for i := range out {
		_, out[i] = f.contacts.get(pairs[2*i], pairs[2*i+1])
	}
	return out
}

func (f *fsm) sizes() StateSizes {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return StateSizes{Queues: f.queues.len(), Senders: f.senders.len(), IdempotencyRecords: f.idemRecs, Devices: f.devices.len(), LastConnected: f.lastConn.len(), ReadMarks: f.lastRead.len(), Contacts: f.contacts.len(), Linked: f.links.len(), Revoked: f.revoked.len()}
}

// Snapshots.

// Version 3 keeps idempotency records per sender (with the recipient and
// createdAt of each, and the sender's floor) and the push mark inside each
// queue; version 4 adds the contacts at the end. Versions 1 to 3 still
// restore (without contacts: they come back with the next messages).
// EXPIRED receipts (KindExpired events) came later within version 4: an
// older build restores a version 4 snapshot unless it holds one.
// Version 5 adds linked devices and each queue's delivered mark at the
// end; a snapshot without either is written as version 4, which older
// builds restore (a rolling upgrade stays possible until the first device
// links).
//
// Version 6 adds, at the end, the linked device each push token is bound
// to (Device.DeviceID) and the revoked devices; a snapshot without either
// is written as version 5 or 4.
const snapshotVersion = 6

type fsmSnapshot struct {
	f        *fsm
	gen      int
	lastID   int64
	queues   map[int64]queue
	senders  map[int64]senderIdem
	devices  map[int64][]Device
	links    map[int64][]Linked
	revoked  map[int64][]Revoked
	lastConn map[int64]int64
	lastRead map[int64][]pair // sender → readers
	contacts map[int64][]pair // reader → senders
	nRead    int              // pairs in lastRead
	nContact int              // pairs in contacts
}

// Snapshot implements raft.FSM. It freezes the tables, O(1) whatever their
// size: applies go on into the tables' deltas while Persist writes the
// frozen maps, and Release folds the deltas back in.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gen++
	return &fsmSnapshot{
		f:        f,
		gen:      f.gen,
		lastID:   f.lastID,
		queues:   f.queues.freeze(f.gen),
		senders:  f.senders.freeze(f.gen),
		devices:  f.devices.freeze(f.gen),
		links:    f.links.freeze(f.gen),
		revoked:  f.revoked.freeze(f.gen),
		lastConn: f.lastConn.freeze(f.gen),
		lastRead: f.lastRead.t.freeze(f.gen),
		contacts: f.contacts.t.freeze(f.gen),
		nRead:    f.lastRead.len(),
		nContact: f.contacts.len(),
	}, nil
}

// Release implements raft.FSMSnapshot: the frozen maps are writable again.
func (s *fsmSnapshot) Release() {
	f := s.f
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queues.thaw(s.gen)
	f.senders.thaw(s.gen)
	f.devices.thaw(s.gen)
	f.links.thaw(s.gen)
	f.revoked.thaw(s.gen)
	f.lastConn.thaw(s.gen)
	f.lastRead.t.thaw(s.gen)
	f.contacts.t.thaw(s.gen)
}

// persistMu lets one snapshot of this process be written at a time. Every
// shard's raft checks for a snapshot on the same schedule, so after a
// restart or at a steady rate most shards write theirs within the same
// minute (11 of 16 in one minute of the soak); each ends with an fsync, and
// on one disk those writes and fsyncs queue in front of the WAL's
// fdatasync, which every commit of every shard waits for. One at a time,
// a snapshot waits instead (it holds no lock a write needs: applies go on
// into the tables' deltas).
var persistMu sync.Mutex

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	persistMu.Lock()
	defer persistMu.Unlock()
	w := bufio.NewWriterSize(sink, 256<<10)
	e := varint.Encoder{B: make([]byte, 0, 64<<10)}
	var werr error
	flush := func() {
		if len(e.B) < 48<<10 || werr != nil {
			return
		}
		_, werr = w.Write(e.B)
		e.B = e.B[:0]
	}
	version := byte(4)
	delivered, deviceEvents := 0, false
	for _, q := range s.queues {
		if q.delivered > 0 {
			delivered++
		}
		for i := range q.events {
			if k := q.events[i].Kind; k == KindSent || k == KindReadSync {
				deviceEvents = true
			}
		}
	}
	if len(s.links) > 0 || delivered > 0 || deviceEvents {
		version = 5
	}
	bound := 0
	for _, list := range s.devices {
		for _, d := range list {
			if d.DeviceID != DefaultDevice {
				bound++
			}
		}
	}
	if bound > 0 || len(s.revoked) > 0 {
		version = 6
	}
	e.Byte(version)
	e.Varint(s.lastID)
	e.Uvarint(uint64(len(s.queues)))
	for u, q := range s.queues {
		e.Varint(u)
		e.Varint(q.pushed)
		e.Uvarint(uint64(len(q.events)))
		for j := range q.events {
			encodeEvent(&e, &q.events[j])
			flush()
		}
	}
	e.Uvarint(uint64(len(s.senders)))
	for from, si := range s.senders {
		e.Varint(from)
		e.Varint(si.floor)
		e.Varint(si.last)
		e.Uvarint(uint64(len(si.recs)))
		for _, r := range si.recs {
			e.Varint(r.to)
			e.Varint(r.reqID)
			e.Varint(r.id)
			e.Uvarint(r.fp)
			e.Varint(r.created)
		}
		flush()
	}
	e.Uvarint(uint64(len(s.devices)))
	for u, list := range s.devices {
		e.Varint(u)
		e.Uvarint(uint64(len(list)))
		for _, d := range list {
			e.Str(d.Platform)
			e.Str(d.Token)
			e.Str(d.Topic)
			e.Bool(d.Sandbox)
			e.Varint(d.RegisteredAt)
		}
		flush()
	}
	e.Uvarint(uint64(len(s.lastConn)))
	for u, t := range s.lastConn {
		e.Varint(u)
		e.Varint(t)
		flush()
	}
	// Pairs are written one by one as (sender, reader, id), as versions
	// before lists were.
	e.Uvarint(uint64(s.nRead))
	for sender, list := range s.lastRead {
		for _, p := range list {
			e.Varint(sender)
			e.Varint(p.other)
			e.Varint(p.id)
			flush()
		}
	}
	e.Uvarint(uint64(s.nContact))
	for reader, list := range s.contacts {
		for _, p := range list {
			e.Varint(p.other)
			e.Varint(reader)
			e.Varint(p.id)
			flush()
		}
	}
	if version >= 5 {
		e.Uvarint(uint64(delivered))
		for u, q := range s.queues {
			if q.delivered > 0 {
				e.Varint(u)
				e.Varint(q.delivered)
				flush()
			}
		}
		e.Uvarint(uint64(len(s.links)))
		for u, list := range s.links {
			e.Varint(u)
			e.Uvarint(uint64(len(list)))
			for _, d := range list {
				e.Str(d.ID)
				e.Varint(d.Cursor)
				e.Varint(d.Seen)
			}
			flush()
		}
	}
	if version >= 6 {
		e.Uvarint(uint64(bound))
		for u, list := range s.devices {
			for _, d := range list {
				if d.DeviceID != DefaultDevice {
					e.Varint(u)
					e.Str(d.Token)
					e.Str(d.DeviceID)
					flush()
				}
			}
		}
		e.Uvarint(uint64(len(s.revoked)))
		for u, list := range s.revoked {
			e.Varint(u)
			e.Uvarint(uint64(len(list)))
			for _, r := range list {
				e.Str(r.ID)
				e.Varint(r.At)
			}
			flush()
		}
	}
	if werr == nil {
		_, werr = w.Write(e.B)
	}
	if werr == nil {
		werr = w.Flush()
	}
	if werr != nil {
		sink.Cancel()
		return werr
	}
	return sink.Close()
}

func encodeEvent(e *varint.Encoder, ev *Event) {
	e.Byte(uint8(ev.Kind))
	e.Varint(ev.ID)
	switch ev.Kind {
	case KindMessage:
		e.Varint(ev.From)
		e.Varint(ev.To)
		e.Str(ev.Content)
		e.Str(ev.CreatedAt)
	case KindDelivered, KindExpired:
		e.Varint(ev.By)
		e.DeltaIDs(ev.MessageIDs)
	case KindRead, KindReadSync:
		e.Varint(ev.By)
		e.Varint(ev.UpTo)
	case KindSent:
		e.Varint(ev.From)
		e.Varint(ev.To)
		e.Varint(ev.UpTo)
		e.Str(ev.Content)
		e.Str(ev.CreatedAt)
	}
}

func decodeEvent(d *varint.Decoder) Event {
	ev := Event{Kind: EventKind(d.Byte()), ID: d.Varint()}
	switch ev.Kind {
	case KindMessage:
		ev.From = d.Varint()
		ev.To = d.Varint()
		ev.Content = d.Str()
		ev.CreatedAt = d.Str()
	case KindDelivered, KindExpired:
		ev.By = d.Varint()
		ev.MessageIDs = d.DeltaIDs()
	case KindRead, KindReadSync:
		ev.By = d.Varint()
		ev.UpTo = d.Varint()
	case KindSent:
		ev.From = d.Varint()
		ev.To = d.Varint()
		ev.UpTo = d.Varint()
		ev.Content = d.Str()
		ev.CreatedAt = d.Str()
	default:
		d.Fail()
	}
	return ev
}

// Restore implements raft.FSM.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("relaylog: shard %d restore: %w", f.shard, err)
	}
	d := newDec(data)
	version := d.Byte()
	if version < 1 || version > snapshotVersion {
		return fmt.Errorf("relaylog: shard %d restore: unknown snapshot version %d", f.shard, version)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reset()
	f.lastID = d.Varint()
	for n := d.Count(2); n > 0 && d.Err == nil; n-- {
		u := d.Varint()
		var q queue
		if version >= 3 {
			q.pushed = d.Varint()
		}
		q.events = make([]Event, d.Count(2))
		for i := range q.events {
			q.events[i] = decodeEvent(&d)
			if q.events[i].Kind == KindMessage {
				q.msgs++
			}
		}
		f.queued.Add(int64(q.msgs))
		if len(q.events) > 0 {
			f.queues.set(u, q)
		}
	}
	if version >= 3 {
		for n := d.Count(3); n > 0 && d.Err == nil; n-- {
			from := d.Varint()
			si := senderIdem{floor: d.Varint(), last: d.Varint()}
			si.recs = make([]idemRec, d.Count(5))
			for i := range si.recs {
				si.recs[i] = idemRec{to: d.Varint(), reqID: d.Varint(), id: d.Varint(), fp: d.Uvarint(), created: d.Varint()}
			}
			f.idemRecs += len(si.recs)
			f.senders.set(from, si)
		}
	} else {
		// Records of (sender, requestId) in id order, without recipient
		// or createdAt: each sender keeps its newest ones.
		for n := d.Count(4); n > 0 && d.Err == nil; n-- {
			from, reqID, id, fp := d.Varint(), d.Varint(), d.Varint(), d.Uvarint()
			si, _ := f.senders.get(from)
			if len(si.recs) >= IdempotencyPerSender {
				si.recs = si.recs[1:]
				f.idemRecs--
			}
			f.idemRecs++
			si.recs = append(si.recs, idemRec{reqID: reqID, id: id, fp: fp})
			si.last = id
			f.senders.set(from, si)
		}
	}
	for n := d.Count(2); n > 0 && d.Err == nil; n-- {
		u := d.Varint()
		list := make([]Device, d.Count(5))
		for i := range list {
			list[i] = Device{Platform: d.Str(), Token: d.Str(), Topic: d.Str(), Sandbox: d.Byte() == 1, RegisteredAt: d.Varint()}
			f.tokens[list[i].Token] = u
		}
		if len(list) > 0 {
			f.devices.set(u, list)
		}
	}
	for n := d.Count(2); n > 0 && d.Err == nil; n-- {
		u := d.Varint()
		f.lastConn.set(u, d.Varint())
	}
	for n := d.Count(3); n > 0 && d.Err == nil; n-- {
		sender, reader := d.Varint(), d.Varint()
		f.lastRead.add(sender, reader, d.Varint())
	}
	f.lastRead.sortAll()
	if version >= 4 {
		for n := d.Count(3); n > 0 && d.Err == nil; n-- {
			sender, reader := d.Varint(), d.Varint()
			f.contacts.add(reader, sender, d.Varint())
		}
		f.contacts.sortAll()
	}
	if version >= 5 {
		for n := d.Count(2); n > 0 && d.Err == nil; n-- {
			u, at := d.Varint(), d.Varint()
			if q, ok := f.queues.get(u); ok {
				q.delivered = at
				for i := range q.events {
					if q.events[i].ID > at {
						break
					}
					if q.events[i].Kind == KindMessage {
						q.held++
					}
				}
				f.queues.set(u, q)
			}
		}
		for n := d.Count(2); n > 0 && d.Err == nil; n-- {
			u := d.Varint()
			list := make([]Linked, d.Count(3))
			for i := range list {
				list[i] = Linked{ID: d.Str(), Cursor: d.Varint(), Seen: d.Varint()}
			}
			if len(list) > 0 {
				f.links.set(u, list)
			}
		}
	}
	if version >= 6 {
		for n := d.Count(3); n > 0 && d.Err == nil; n-- {
			u, token, dev := d.Varint(), d.Str(), d.Str()
			list, _ := f.devices.get(u)
			for i := range list {
				if list[i].Token == token {
					list[i].DeviceID = dev
				}
			}
		}
		for n := d.Count(2); n > 0 && d.Err == nil; n-- {
			u := d.Varint()
			list := make([]Revoked, d.Count(2))
			for i := range list {
				list[i] = Revoked{ID: d.Str(), At: d.Varint()}
			}
			if len(list) > 0 {
				f.revoked.set(u, list)
			}
		}
	}
	if version == 2 {
		for n := d.Count(2); n > 0 && d.Err == nil; n-- {
			u, p := d.Varint(), d.Varint()
			if q, ok := f.queues.get(u); ok {
				q.pushed = p
				f.queues.set(u, q)
			}
		}
	}
	if d.Err != nil {
		return fmt.Errorf("relaylog: shard %d restore: %w", f.shard, d.Err)
	}
	return nil
}

// Package presence knows who is connected to this node, who watches whom,
// and who is typing to whom. It is soft state: nothing here is written to
// the raft log except, through its caller, the time a user was last
// connected. It owns no sockets; the front registers a Session per socket
// and receives events through it.
//
// Typing indicators expire: a "typing: true" not renewed within
// Options.TypingTimeout (6 s by default, the renewal interval mobile apps use
// is 3-5 s) is followed by a "typing: false" update, so a client that died
// mid-sentence does not leave its contact watching dots forever. A user is
// only ever typing while online: an indicator from a user with no socket is
// not relayed, and a status says typing only together with online.
//
// lastConnectedAt is the last time one of the user's sockets opened or
// closed. The store learns it in the background; the hub remembers the
// latest open or close on this node while the user has sockets here, so the
// "online" update a socket's opening causes already carries its open time.
package presence

import (
	"context"
	"sync"
	"time"

	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

// Session is one connected socket as presence sees it. Its methods must not
// block: they hand work to the socket's own goroutines.
type Session interface {
	UserID() int64
	// Notify says that the user's queue has new events: the session
	// pulls them.
	Notify()
	// Offer hands the session events its user's home pushed: every event
	// of the queue with an id above after (a session that has not written
	// up to after pulls instead).
	Offer(after int64, evs []relaylog.Event)
	// Status delivers a contact_status_update.
	Status(wire.ContactStatus)
}

// DeviceSession is a Session that knows which of its user's devices it is
// (the app installation's id, "" for the default device): presence then
// follows each device, for push.
type DeviceSession interface {
	Session
	DeviceID() string
}

// DeviceRemote is a Remote that follows devices: their first socket
// opening and last closing on this node (after Connected, before
// Disconnected).
type DeviceRemote interface {
	DeviceConnected(user int64, dev string)
	DeviceDisconnected(user int64, dev string)
}

// deviceOf is s's device, and whether s names one.
func deviceOf(s Session) (string, bool) {
	if ds, ok := s.(DeviceSession); ok {
		return ds.DeviceID(), true
	}
	return "", false
}

// hasDevice reports whether a session in list is device dev's.
func hasDevice(list []Session, dev string) bool {
	for _, x := range list {
		if d, ok := deviceOf(x); ok && d == dev {
			return true
		}
	}
	return false
}

// Options configure a Hub; the zero value works.
type Options struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// LastConnected looks up when an offline user was last connected.
	LastConnected func(user int64) (time.Time, bool)
	// TypingTimeout ends a typing indicator that was not renewed; 0 means 6s.
	TypingTimeout time.Duration
	// Remote, when set, makes presence cluster-wide (see Remote).
	Remote Remote
}

// Remote connects a hub to the rest of the cluster. Each user has a home:
// the node that leads the user's shard. The home decides whether the user
// is online anywhere and tells the nodes that watch the user; typing
// indicators travel through the recipient's home to the nodes holding the
// recipient's sockets. All methods must return quickly.
type Remote interface {
	// IsHome reports whether this node is user's home.
	IsHome(user int64) bool
	// Online reports whether user has a socket on any node (asking the
	// home when it is elsewhere).
	Online(user int64) bool
	// Presence is Online with the home's lastConnectedAt (Unix ms, 0 =
	// unknown), which includes an open the store may not have yet.
	Presence(user int64) (online bool, lastSeen int64)
	// Watch registers (on) or drops this node's interest in user's status
	// at user's home, which then pushes changes here (PushStatus).
	Watch(user int64, on bool)
	// Typing relays an indicator to the nodes holding to's sockets other
	// than this one (which delivers locally itself). fromOnline is this
	// node's finding that from has a socket somewhere: the receiving nodes
	// use it instead of asking from's home again.
	Typing(from, to int64, typing, fromOnline bool)
	// Connected and Disconnected follow a user's first socket opening and
	// last socket closing on this node (the cluster registers the user's
	// sockets at its home).
	Connected(user int64)
	Disconnected(user int64)
}

// Hub is the presence registry of one node.
type Hub struct {
	opts Options

	mu       sync.RWMutex
	sessions map[int64]userSessions
	watchers map[int64]map[Session]struct{} // watched user → sessions watching
	watching map[Session][]int64
	typing   map[typingKey]time.Time // (from, to) → expiry
}

type typingKey struct{ from, to int64 }

// userSessions are a user's sessions on this node and the last time (Unix
// ms) one of them opened or closed here.
type userSessions struct {
	list []Session
	seen int64
}

// New returns an empty hub.
func New(opts Options) *Hub {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.TypingTimeout <= 0 {
		opts.TypingTimeout = 6 * time.Second
	}
	return &Hub{
		opts:     opts,
		sessions: make(map[int64]userSessions),
		watchers: make(map[int64]map[Session]struct{}),
		watching: make(map[Session][]int64),
		typing:   make(map[typingKey]time.Time),
	}
}

// Count is how many sessions user has on this node.
func (h *Hub) Count(user int64) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.sessions[user].list)
}

// Online reports whether user has a session on this node.
func (h *Hub) Online(user int64) bool { return h.Count(user) > 0 }

// DeviceOnline reports whether device dev of user has a session on this
// node.
func (h *Hub) DeviceOnline(user int64, dev string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return hasDevice(h.sessions[user].list, dev)
}

// Connect registers s, opened now. When it is the user's first session,
// the user's watchers learn that the user is online.
func (h *Hub) Connect(s Session) { h.ConnectAt(s, h.opts.Now()) }

// ConnectAt registers s, which opened at at (the time its caller records as
// the user's lastConnectedAt). When it is the user's first session, the
// user's watchers learn that the user is online, with lastConnectedAt = at.
func (h *Hub) ConnectAt(s Session, at time.Time) {
	u := s.UserID()
	dev, named := deviceOf(s)
	h.mu.Lock()
	us := h.sessions[u]
	firstOfDevice := named && !hasDevice(us.list, dev)
	us.list = append(us.list, s)
	us.seen = max(us.seen, at.UnixMilli())
	h.sessions[u] = us
	first := len(us.list) == 1
	var notify []Session
	if first {
		notify = h.watchersOf(u)
	}
	h.mu.Unlock()
	if first && h.opts.Remote != nil {
		h.opts.Remote.Connected(u)
	}
	if dr, ok := h.opts.Remote.(DeviceRemote); ok && firstOfDevice {
		dr.DeviceConnected(u, dev)
	}
	// Elsewhere than at the user's home, the home tells watchers.
	if first && h.decidesFor(u) {
		st := h.status(0, u)
		for _, w := range notify {
			w.Status(st)
		}
	}
}

// decidesFor reports whether this hub announces u's presence changes: always
// on a lone node, only at u's home on a cluster.
func (h *Hub) decidesFor(u int64) bool {
	return h.opts.Remote == nil || h.opts.Remote.IsHome(u)
}

// Disconnect removes s and its watch list. When it was the user's last
// session, the user's watchers learn that the user went offline at at, and
// any typing indicator the user had open ends.
func (h *Hub) Disconnect(s Session, at time.Time) {
	u := s.UserID()
	h.mu.Lock()
	us := h.sessions[u]
	list := us.list
	for i, x := range list {
		if x == s {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(h.sessions, u)
	} else {
		h.sessions[u] = userSessions{list: list, seen: max(us.seen, at.UnixMilli())}
	}
	dropped := h.unwatchLocked(s)
	var gone []int64
	for _, w := range dropped {
		if len(h.watchers[w]) == 0 {
			gone = append(gone, w)
		}
	}
	last := len(list) == 0
	dev, named := deviceOf(s)
	lastOfDevice := named && !hasDevice(list, dev)
	var notify []Session
	var typingTo []int64
	if last {
		notify = h.watchersOf(u)
		for k := range h.typing {
			if k.from == u {
				delete(h.typing, k)
				typingTo = append(typingTo, k.to)
			}
		}
	}
	h.mu.Unlock()
	if r := h.opts.Remote; r != nil {
		for _, w := range gone {
			r.Watch(w, false)
		}
	}
	if dr, ok := h.opts.Remote.(DeviceRemote); ok && lastOfDevice {
		dr.DeviceDisconnected(u, dev)
	}
	if !last {
		return
	}
	if h.opts.Remote != nil {
		h.opts.Remote.Disconnected(u)
	}
	ts := wire.FormatTime(at)
	st := wire.ContactStatus{UserID: u, Online: false, LastConnectedAt: &ts}
	// Offline only if no other node holds a socket of u (the home knows).
	if h.decidesFor(u) && (h.opts.Remote == nil || !h.opts.Remote.Online(u)) {
		for _, w := range notify {
			w.Status(st)
		}
	}
	for _, to := range typingTo {
		for _, w := range h.sessionsOf(to) {
			w.Status(st)
		}
	}
}

// Committed tells user's sessions that their queue has new events.
func (h *Hub) Committed(user int64) {
	h.mu.RLock()
	for _, s := range h.sessions[user].list {
		s.Notify()
	}
	h.mu.RUnlock()
}

// Offer hands user's sessions the events the user's home pushed: every
// event of the queue with an id above after.
func (h *Hub) Offer(user, after int64, evs []relaylog.Event) {
	h.mu.RLock()
	for _, s := range h.sessions[user].list {
		s.Offer(after, evs)
	}
	h.mu.RUnlock()
}

// Watch replaces the set of users s follows and returns their current
// statuses, so a client can draw its screen without waiting for changes.
func (h *Hub) Watch(s Session, users []int64) []wire.ContactStatus {
	seen := make(map[int64]struct{}, len(users))
	uniq := make([]int64, 0, len(users))
	for _, u := range users {
		if _, dup := seen[u]; !dup {
			seen[u] = struct{}{}
			uniq = append(uniq, u)
		}
	}
	h.mu.Lock()
	dropped := h.unwatchLocked(s)
	var added []int64
	for _, u := range uniq {
		set := h.watchers[u]
		if set == nil {
			set = make(map[Session]struct{})
			h.watchers[u] = set
			added = append(added, u)
		}
		set[s] = struct{}{}
	}
	if len(uniq) > 0 {
		h.watching[s] = uniq
	}
	var gone []int64
	for _, u := range dropped {
		if len(h.watchers[u]) == 0 {
			gone = append(gone, u)
		}
	}
	h.mu.Unlock()
	out := make([]wire.ContactStatus, 0, len(uniq))
	if r := h.opts.Remote; r != nil {
		for _, u := range gone {
			r.Watch(u, false)
		}
		for _, u := range added {
			if !r.IsHome(u) {
				// The home answers the registration with the current
				// status, pushed here like any change.
				r.Watch(u, true)
			}
		}
	}
	for _, u := range uniq {
		if h.opts.Remote != nil && !h.opts.Remote.IsHome(u) && !h.Online(u) {
			continue // its status arrives from its home
		}
		out = append(out, h.status(s.UserID(), u))
	}
	return out
}

// unwatchLocked drops s's watch list and returns the users it watched.
func (h *Hub) unwatchLocked(s Session) []int64 {
	list := h.watching[s]
	for _, u := range list {
		if set := h.watchers[u]; set != nil {
			delete(set, s)
			if len(set) == 0 {
				delete(h.watchers, u)
			}
		}
	}
	delete(h.watching, s)
	return list
}

// PushStatus delivers a status decided by the user's home to this node's
// watchers of that user. An offline status while the user has a socket
// here is stale (decided before the socket opened, and delivered after
// the hub told the watchers itself): it is dropped.
func (h *Hub) PushStatus(st wire.ContactStatus) {
	h.mu.RLock()
	us := h.sessions[st.UserID]
	if !st.Online && len(us.list) > 0 {
		h.mu.RUnlock()
		return
	}
	ws := h.watchersOf(st.UserID)
	seen := us.seen
	h.mu.RUnlock()
	// The home may not have stored the open of a socket here yet.
	if st.Online && seen != 0 {
		if ts := wire.FormatUnixMilli(seen); st.LastConnectedAt == nil || ts > *st.LastConnectedAt {
			st.LastConnectedAt = &ts
		}
	}
	for _, w := range ws {
		w.Status(st)
	}
}

// Watched lists the users this node's sockets watch (the cluster
// re-registers them after a home changes).
func (h *Hub) Watched() []int64 {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]int64, 0, len(h.watchers))
	for u := range h.watchers {
		out = append(out, u)
	}
	return out
}

func (h *Hub) watchersOf(u int64) []Session {
	set := h.watchers[u]
	out := make([]Session, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	return out
}

// Sessions returns user's sessions on this node.
func (h *Hub) Sessions(user int64) []Session { return h.sessionsOf(user) }

func (h *Hub) sessionsOf(u int64) []Session {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return append([]Session(nil), h.sessions[u].list...)
}

// SetTyping relays that from is (or stopped) typing to to. Only to's
// sessions hear it, here and, on a cluster, on the nodes holding to's
// sockets; nothing is stored beyond the expiry timer. A user who is not
// online (no socket anywhere) cannot be typing: "typing: true" from one is
// dropped. This node decides it once (a socket here, which is the case of
// every typing frame, or else asking from's home) and the indicator
// carries the answer, so that the nodes delivering it never ask again on
// their shared subscription streams.
func (h *Hub) SetTyping(from, to int64, typing bool) {
	online := h.Count(from) > 0
	if !online && h.opts.Remote != nil {
		online = h.opts.Remote.Online(from)
	}
	if typing && !online {
		return
	}
	if h.opts.Remote != nil {
		h.opts.Remote.Typing(from, to, typing, online)
	}
	h.DeliverTyping(from, to, typing, online)
}

// DeliverTyping delivers an indicator to to's sessions on this node only.
// fromOnline is what the node that took the indicator found (SetTyping);
// a socket of from here counts too.
func (h *Hub) DeliverTyping(from, to int64, typing, fromOnline bool) {
	k := typingKey{from, to}
	h.mu.Lock()
	_, was := h.typing[k]
	if typing {
		h.typing[k] = h.opts.Now().Add(h.opts.TypingTimeout)
	} else {
		delete(h.typing, k)
	}
	h.mu.Unlock()
	if !typing && !was {
		return
	}
	st := h.statusKnown(to, from, fromOnline)
	if typing && !st.Online {
		// Gone meanwhile: its last socket's close ended the indicator.
		h.mu.Lock()
		delete(h.typing, k)
		h.mu.Unlock()
		if !was {
			return
		}
	}
	for _, s := range h.sessionsOf(to) {
		s.Status(st)
	}
}

// Status is user's ContactStatus as viewer sees it (typing means typing to
// viewer).
func (h *Hub) Status(viewer, user int64) wire.ContactStatus { return h.status(viewer, user) }

func (h *Hub) status(viewer, user int64) wire.ContactStatus {
	return h.statusOf(viewer, user, false, true)
}

// statusKnown is status with user's online state found elsewhere
// (onlineElsewhere), without asking user's home.
func (h *Hub) statusKnown(viewer, user int64, onlineElsewhere bool) wire.ContactStatus {
	return h.statusOf(viewer, user, onlineElsewhere, false)
}

func (h *Hub) statusOf(viewer, user int64, onlineElsewhere, ask bool) wire.ContactStatus {
	h.mu.RLock()
	us := h.sessions[user]
	online := len(us.list) > 0 || onlineElsewhere
	_, typing := h.typing[typingKey{user, viewer}]
	h.mu.RUnlock()
	var remoteSeen int64
	if !online && ask && h.opts.Remote != nil {
		online, remoteSeen = h.opts.Remote.Presence(user)
	}
	// Typing only while online.
	st := wire.ContactStatus{UserID: user, Online: online, Typing: typing && online}
	// The later of the store's time and this node's last open or close
	// (which the store may not have yet).
	last := max(us.seen, remoteSeen)
	if h.opts.LastConnected != nil {
		if t, ok := h.opts.LastConnected(user); ok {
			last = max(last, t.UnixMilli())
		}
	}
	if last != 0 {
		ts := wire.FormatUnixMilli(last)
		st.LastConnectedAt = &ts
	}
	return st
}

// ExpireTyping ends every typing indicator past its expiry and tells the
// recipients. Run calls it periodically; tests call it with a moved clock.
func (h *Hub) ExpireTyping() {
	now := h.opts.Now()
	var ended []typingKey
	h.mu.Lock()
	for k, exp := range h.typing {
		if !now.Before(exp) {
			delete(h.typing, k)
			ended = append(ended, k)
		}
	}
	h.mu.Unlock()
	for _, k := range ended {
		st := h.status(k.to, k.from)
		for _, s := range h.sessionsOf(k.to) {
			s.Status(st)
		}
	}
}

// Run expires typing indicators until ctx ends.
func (h *Hub) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.ExpireTyping()
		}
	}
}

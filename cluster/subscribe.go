package cluster

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
	"github.com/edgenode/edgenode/wire/nodewire"
)

// subscriptions carries soft state between edges and homes (the node that
// leads a user's shard), in both roles:
//
//   - as an edge, for every user with a local socket or a local watcher
//     whose home is elsewhere, it keeps a registration at the home, over
//     one stream per home node (out), and re-registers after a home change;
//   - as a home, it remembers which streams hold which users' sockets and
//     which watch them (in, watch), decides whether a user is online
//     anywhere, and writes events, status and typing frames to them.
//
// It knows the relay log as a homeLog, routing's hints as a function and
// the other nodes through open (a subscribe stream to a node). What it has
// for this node's sockets, watchers and push it publishes in the inbox,
// which the node reads; whether the user has a socket here it knows from
// the registrations themselves (want.socket, set by Cluster.UserOnline).
type subscriptions struct {
	subsDeps

	mu     sync.Mutex
	wanted map[int64]*want
	out    map[string]*outSub // home node → stream
	in     map[int64]map[*inSub]struct{}
	watch  map[int64]map[*inSub]struct{}

	// onlineAt holds, for users online here or on a registered edge, when
	// they came online (Unix ms): the store's lastConnectedAt may not have
	// it yet when a watch is answered. Guarded by atMu, which is taken
	// with or without mu.
	atMu     sync.Mutex
	onlineAt map[int64]int64

	stop chan struct{}
}

// want is what this edge needs registered at a user's home.
type want struct {
	node    string              // where it is registered ("" = nowhere yet, or the home is here)
	socket  bool                // a local socket of the user: deliver wake-ups here
	watch   bool                // local watchers of the user: push status here
	devices map[string]struct{} // the user's devices with a local socket (push asks the home)
}

type outSub struct {
	node  string
	conn  net.Conn
	sendQ chan nodewire.SubscribeFrame
	dead  chan struct{}
	once  sync.Once
}

type inSub struct {
	s    *subscriptions
	peer string
	// devices holds, per user registered through this stream, the devices
	// the edge reported a socket of (SubDevice); guarded by s.mu. A user
	// without an entry is on an edge that reports none (an older build):
	// any of its devices may be there.
	devices map[int64]map[string]struct{}
	conn    net.Conn
	mu      sync.Mutex
	pending map[int64]struct{}
	reset   map[int64]struct{} // users (re)subscribed or gone: forget their cursors
	frames  []nodewire.SubscribeFrame
	wake    chan struct{}
}

// subsDeps is what subscriptions take from the other parts.
type subsDeps struct {
	self   string
	log    homeLog
	hint   func(shard int) string // routing's last known leader
	open   func(ctx context.Context, node string) (net.Conn, error)
	inbox  *Inbox // where deliveries for this node go
	logger *slog.Logger
	// features tells another node's relaylog.Features (0: unknown); nil:
	// every node has this build's.
	features func(node string) uint64
}

// homeLog is what subscriptions need of the relay log: where a user's
// home is, and the user's queue, which wakes carry.
type homeLog interface {
	ShardFor(user int64) int
	Serving(shard int) bool
	Leader(shard int) string
	LastConnected(user int64) (time.Time, bool)
	LastEventID(user int64) int64
	Pending(ctx context.Context, user, after int64, limit int) ([]relaylog.Event, bool, error)
}

func newSubscriptions(d subsDeps) *subscriptions {
	return &subscriptions{
		subsDeps: d,
		wanted:   make(map[int64]*want),
		out:      make(map[string]*outSub),
		in:       make(map[int64]map[*inSub]struct{}),
		watch:    make(map[int64]map[*inSub]struct{}),
		stop:     make(chan struct{}),

		onlineAt: make(map[int64]int64),
	}
}

// set records that this edge needs (or no longer needs) a socket or watch
// registration for user, and registers at once.
func (s *subscriptions) set(user int64, socket bool, on bool) {
	s.mu.Lock()
	w := s.wanted[user]
	if w == nil {
		if !on {
			s.mu.Unlock()
			return
		}
		w = &want{}
		s.wanted[user] = w
	}
	if socket {
		w.socket = on
		if !on {
			w.devices = nil
		}
	} else {
		w.watch = on
	}
	if !on && w.node != "" {
		if o := s.out[w.node]; o != nil {
			op := nodewire.UnsubUser
			if !socket {
				op = nodewire.SubUnwatch
			}
			o.send(nodewire.SubscribeFrame{Op: op, User: user})
		}
	}
	if !w.socket && !w.watch {
		delete(s.wanted, user)
		s.mu.Unlock()
		return
	}
	if on && w.node != "" {
		// Already registered at the home for the other purpose.
		if o := s.out[w.node]; o != nil {
			op := nodewire.SubUser
			if !socket {
				op = nodewire.SubWatch
			}
			o.send(nodewire.SubscribeFrame{Op: op, User: user})
		}
	}
	s.mu.Unlock()
	go s.reconcileUser(user)
}

// setDevice records that device dev of user has (on) or no longer has a
// socket here, and tells the user's home. Call it after set(user, true,
// true) for the device's first socket and before set(user, true, false)
// for the user's last.
func (s *subscriptions) setDevice(user int64, dev string, on bool) {
	s.mu.Lock()
	w := s.wanted[user]
	if w == nil || !w.socket {
		s.mu.Unlock()
		return
	}
	if on {
		if w.devices == nil {
			w.devices = make(map[string]struct{})
		}
		w.devices[dev] = struct{}{}
	} else {
		delete(w.devices, dev)
	}
	if w.node != "" && s.devicePresence(w.node) {
		if o := s.out[w.node]; o != nil {
			op := nodewire.SubDevice
			if !on {
				op = nodewire.UnsubDevice
			}
			o.send(nodewire.SubscribeFrame{Op: op, User: user, Device: dev})
		}
	}
	s.mu.Unlock()
}

// homePushes reports whether user's sockets here are registered at a home
// elsewhere that is not this node's shard: the home wakes them (with the
// events) after each commit, so this node's own apply of the same entry
// (as a follower) need not wake them to pull.
// While raft here names another leader than the registered home (a
// failover the reconcile has not followed yet), the local wake stays:
// the socket's pull finds the new leader.
// Asked for every committed user on every replica: most have no socket
// here, and their answer needs neither raft's leader nor its lock.
func (s *subscriptions) homePushes(user int64) bool {
	s.mu.Lock()
	w := s.wanted[user]
	var home string
	if w != nil && w.socket && w.node != "" && s.out[w.node] != nil {
		home = w.node
	}
	s.mu.Unlock()
	if home == "" {
		return false
	}
	shard := s.log.ShardFor(user)
	return !s.log.Serving(shard) && s.log.Leader(shard) == home
}

// devicePresence reports whether node reads SubDevice frames.
func (s *subscriptions) devicePresence(node string) bool {
	return s.features == nil || s.features(node)&relaylog.FeatureDevicePush != 0
}

// maintain re-checks every second that every registration sits at the
// current home of its user.
func (s *subscriptions) maintain() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		users := make([]int64, 0, len(s.wanted))
		for u := range s.wanted {
			users = append(users, u)
		}
		s.mu.Unlock()
		for _, u := range users {
			s.reconcileUser(u)
		}
	}
}

// homeOf is the node that leads user's shard as far as this node knows;
// "" if it is this node or unknown.
func (s *subscriptions) homeOf(user int64) string {
	shard := s.log.ShardFor(user)
	if s.log.Serving(shard) {
		return ""
	}
	if l := s.log.Leader(shard); l != "" && l != s.self {
		return l
	}
	return s.hint(shard)
}

func (s *subscriptions) reconcileUser(user int64) {
	home := s.homeOf(user)
	s.mu.Lock()
	w := s.wanted[user]
	if w == nil || (w.node == home && (home == "" || s.out[home] != nil)) {
		s.mu.Unlock()
		return
	}
	if w.node != "" {
		if o := s.out[w.node]; o != nil {
			if w.socket {
				o.send(nodewire.SubscribeFrame{Op: nodewire.UnsubUser, User: user})
			}
			if w.watch {
				o.send(nodewire.SubscribeFrame{Op: nodewire.SubUnwatch, User: user})
			}
		}
	}
	w.node = home
	socket, watch := w.socket, w.watch
	var devices []string
	for d := range w.devices {
		devices = append(devices, d)
	}
	s.mu.Unlock()
	if home == "" {
		if socket {
			s.inbox.wakeUser(user) // served here now: the local commit stream wakes it
		}
		return
	}
	o := s.stream(home)
	if o == nil {
		s.mu.Lock()
		if w := s.wanted[user]; w != nil && w.node == home {
			w.node = "" // retry on the next tick
		}
		s.mu.Unlock()
		return
	}
	if socket {
		// The home answers with a wake-up once the registration holds,
		// which covers events committed before it took effect.
		o.send(nodewire.SubscribeFrame{Op: nodewire.SubUser, User: user})
		if s.devicePresence(home) {
			for _, d := range devices {
				o.send(nodewire.SubscribeFrame{Op: nodewire.SubDevice, User: user, Device: d})
			}
		}
	}
	if watch {
		o.send(nodewire.SubscribeFrame{Op: nodewire.SubWatch, User: user})
	}
}

// stream returns the stream to node, opening it if needed.
func (s *subscriptions) stream(node string) *outSub {
	s.mu.Lock()
	if o := s.out[node]; o != nil {
		s.mu.Unlock()
		return o
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	conn, err := s.open(ctx, node)
	cancel()
	if err != nil {
		s.logger.Debug("subscribe stream failed", "node", node, "err", err)
		return nil
	}
	o := &outSub{node: node, conn: conn, sendQ: make(chan nodewire.SubscribeFrame, 4096), dead: make(chan struct{})}
	s.mu.Lock()
	if prev := s.out[node]; prev != nil {
		s.mu.Unlock()
		conn.Close()
		return prev
	}
	s.out[node] = o
	s.mu.Unlock()
	go o.writeLoop()
	go s.readLoop(o)
	return o
}

func (o *outSub) send(f nodewire.SubscribeFrame) {
	select {
	case o.sendQ <- f:
	case <-o.dead:
	default:
		o.kill() // a stream this far behind is rebuilt from scratch
	}
}

func (o *outSub) kill() {
	o.once.Do(func() {
		close(o.dead)
		o.conn.Close()
	})
}

func (o *outSub) writeLoop() {
	bw := bufio.NewWriter(o.conn)
	for {
		select {
		case <-o.dead:
			return
		case f := <-o.sendQ:
			o.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			err := nodewire.WriteNodeFrame(bw, f)
			for more := true; more && err == nil; {
				select {
				case f = <-o.sendQ:
					err = nodewire.WriteNodeFrame(bw, f)
				default:
					more = false
				}
			}
			if err == nil {
				err = bw.Flush()
			}
			if err != nil {
				o.kill()
				return
			}
		}
	}
}

func (s *subscriptions) readLoop(o *outSub) {
	br := bufio.NewReader(o.conn)
	for {
		var f nodewire.SubscribeFrame
		if err := nodewire.ReadNodeFrame(br, &f); err != nil {
			break
		}
		switch f.Op {
		case nodewire.SubEvents:
			if len(f.Events) > 0 {
				evs := make([]relaylog.Event, len(f.Events))
				for i := range f.Events {
					evs[i] = fromNode(&f.Events[i])
				}
				s.inbox.offer(f.User, f.After, evs)
			} else {
				s.inbox.wakeUser(f.User)
			}
		case nodewire.SubStatus:
			s.inbox.status(statusOf(f))
		case nodewire.SubTyping:
			s.inbox.typingTo(f.From, f.User, f.Typing, f.Online)
		}
	}
	o.kill()
	// Everything registered through this stream re-registers on the next
	// tick, at whichever node is home then.
	s.mu.Lock()
	if s.out[o.node] == o {
		delete(s.out, o.node)
	}
	var lost []int64
	for u, w := range s.wanted {
		if w.node == o.node {
			w.node = ""
			if w.socket {
				lost = append(lost, u)
			}
		}
	}
	s.mu.Unlock()
	for _, u := range lost {
		s.inbox.wakeUser(u) // the socket's pull finds the new leader itself
	}
}

func statusOf(f nodewire.SubscribeFrame) wire.ContactStatus {
	st := wire.ContactStatus{UserID: f.User, Online: f.Online}
	if f.LastSeen > 0 {
		ts := wire.FormatUnixMilli(f.LastSeen)
		st.LastConnectedAt = &ts
	}
	return st
}

// Home role.

// online: user has a socket here or on a registered edge.
func (s *subscriptions) online(user int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.onlineLocked(user)
}

// remoteOnline: user has a socket on a registered edge.
func (s *subscriptions) remoteOnline(user int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.in[user]) > 0
}

// deviceOnline: device dev of user has a socket here or on a registered
// edge (or may have: on an edge that reports no devices).
func (s *subscriptions) deviceOnline(user int64, dev string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deviceOnlineLocked(user, dev)
}

func (s *subscriptions) deviceOnlineLocked(user int64, dev string) bool {
	if w := s.wanted[user]; w != nil && w.socket {
		if _, ok := w.devices[dev]; ok {
			return true
		}
	}
	return s.remoteDeviceLocked(user, dev)
}

// remoteDevice: device dev of user has a socket on a registered edge (or
// may have: on an edge that reports no devices).
func (s *subscriptions) remoteDevice(user int64, dev string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remoteDeviceLocked(user, dev)
}

func (s *subscriptions) remoteDeviceLocked(user int64, dev string) bool {
	for in := range s.in[user] {
		devs, reported := in.devices[user]
		if !reported {
			return true
		}
		if _, ok := devs[dev]; ok {
			return true
		}
	}
	return false
}

// onlineLocked: user has a socket here or on a registered edge.
func (s *subscriptions) onlineLocked(user int64) bool {
	if len(s.in[user]) > 0 {
		return true
	}
	w := s.wanted[user]
	return w != nil && w.socket
}

func (s *subscriptions) serve(conn net.Conn, from string, _ int) {
	in := &inSub{s: s, peer: from, conn: conn, pending: make(map[int64]struct{}), reset: make(map[int64]struct{}), wake: make(chan struct{}, 1), devices: make(map[int64]map[string]struct{})}
	done := make(chan struct{})
	go in.writeLoop(done)
	br := bufio.NewReader(conn)
	var subs, watches []int64
	for {
		var f nodewire.SubscribeFrame
		if err := nodewire.ReadNodeFrame(br, &f); err != nil {
			break
		}
		switch f.Op {
		case nodewire.SubUser:
			s.mu.Lock()
			was := s.onlineLocked(f.User)
			addTo(s.in, f.User, in)
			s.mu.Unlock()
			subs = append(subs, f.User)
			// Events committed before this registration woke nobody
			// there: wake the subscriber once now that it is registered
			// (a wake without events: it pulls, and later wakes carry
			// what follows).
			in.resetCursor(f.User)
			in.mu.Lock()
			in.pending[f.User] = struct{}{}
			in.mu.Unlock()
			in.signal()
			if !was {
				s.announce(f.User, true)
			}
		case nodewire.UnsubUser:
			s.dropSub(f.User, in)
			in.resetCursor(f.User)
		case nodewire.SubDevice:
			s.mu.Lock()
			if _, ok := s.in[f.User][in]; ok {
				devs := in.devices[f.User]
				if devs == nil {
					devs = make(map[string]struct{})
					in.devices[f.User] = devs
				}
				devs[f.Device] = struct{}{}
			}
			s.mu.Unlock()
		case nodewire.UnsubDevice:
			s.mu.Lock()
			delete(in.devices[f.User], f.Device)
			gone := !s.deviceOnlineLocked(f.User, f.Device)
			s.mu.Unlock()
			if gone {
				s.inbox.offline(f.User) // push checks the devices again
			}
		case nodewire.SubWatch:
			// The answer is queued under mu, like announce's changes:
			// queued after it, a status read before a concurrent
			// announce would overwrite that newer change at the edge.
			s.mu.Lock()
			addTo(s.watch, f.User, in)
			in.queue(s.statusFrame(f.User, s.onlineLocked(f.User)))
			s.mu.Unlock()
			watches = append(watches, f.User)
		case nodewire.SubUnwatch:
			s.mu.Lock()
			removeFrom(s.watch, f.User, in)
			s.mu.Unlock()
		case nodewire.SubTyping:
			s.fanTyping(f.From, f.User, f.Typing, f.Online, from)
		}
	}
	close(done)
	conn.Close()
	for _, u := range subs {
		s.dropSub(u, in)
	}
	s.mu.Lock()
	for _, u := range watches {
		removeFrom(s.watch, u, in)
	}
	s.mu.Unlock()
}

func (s *subscriptions) dropSub(user int64, in *inSub) {
	s.mu.Lock()
	_, had := s.in[user][in]
	removeFrom(s.in, user, in)
	delete(in.devices, user)
	gone := had && !s.onlineLocked(user)
	s.mu.Unlock()
	if gone {
		s.announce(user, false)
		s.inbox.offline(user)
	}
}

func addTo(m map[int64]map[*inSub]struct{}, user int64, in *inSub) {
	set := m[user]
	if set == nil {
		set = make(map[*inSub]struct{})
		m[user] = set
	}
	set[in] = struct{}{}
}

func removeFrom(m map[int64]map[*inSub]struct{}, user int64, in *inSub) {
	if set := m[user]; set != nil {
		delete(set, in)
		if len(set) == 0 {
			delete(m, user)
		}
	}
}

func (s *subscriptions) statusFrame(user int64, online bool) nodewire.SubscribeFrame {
	f := nodewire.SubscribeFrame{Op: nodewire.SubStatus, User: user, Online: online}
	if t, ok := s.log.LastConnected(user); ok {
		f.LastSeen = t.UnixMilli()
	}
	if online {
		s.atMu.Lock()
		if at := s.onlineAt[user]; at > f.LastSeen {
			f.LastSeen = at
		}
		s.atMu.Unlock()
	}
	return f
}

// transitionAt records that user came online (now) or went offline.
func (s *subscriptions) transitionAt(user int64, online bool) {
	s.atMu.Lock()
	if online {
		s.onlineAt[user] = time.Now().UnixMilli()
	} else {
		delete(s.onlineAt, user)
	}
	s.atMu.Unlock()
}

// announce tells every watcher of user, here and on other edges, that the
// user came online or went offline anywhere in the cluster.
func (s *subscriptions) announce(user int64, online bool) {
	s.transitionAt(user, online)
	f := s.statusFrame(user, online)
	// The transition is happening now: a socket opened or closed, which is
	// what lastConnectedAt means; the store may not have it yet.
	if f.LastSeen < time.Now().UnixMilli()-1000 {
		f.LastSeen = time.Now().UnixMilli()
	}
	s.mu.Lock()
	for in := range s.watch[user] {
		in.queue(f)
	}
	s.mu.Unlock()
	s.inbox.status(statusOf(f))
}

// localTransition is the home's view of its own hub: user's first or last
// socket on this node. Remote watchers hear about a cluster-wide change;
// local watchers were told by the hub itself.
func (s *subscriptions) localTransition(user int64, online bool) {
	s.mu.Lock()
	remoteOnline := len(s.in[user]) > 0
	if online || !remoteOnline {
		s.transitionAt(user, online)
	}
	var f nodewire.SubscribeFrame
	notify := !remoteOnline && len(s.watch[user]) > 0
	if notify {
		f = s.statusFrame(user, online)
		f.LastSeen = time.Now().UnixMilli() // a socket opened or closed just now
		for in := range s.watch[user] {
			in.queue(f)
		}
	}
	s.mu.Unlock()
	if !online && !remoteOnline {
		s.inbox.offline(user)
	}
}

// fanTyping sends a typing indicator to every edge holding to's sockets,
// except origin, which delivered it itself; and to this node's own sockets.
func (s *subscriptions) fanTyping(from, to int64, typing, fromOnline bool, origin string) {
	f := nodewire.SubscribeFrame{Op: nodewire.SubTyping, User: to, From: from, Typing: typing, Online: fromOnline}
	s.mu.Lock()
	for in := range s.in[to] {
		if in.peer != origin {
			in.queue(f)
		}
	}
	s.mu.Unlock()
	if origin != s.self {
		s.inbox.typingTo(from, to, typing, fromOnline)
	}
}

// committed wakes the remote edges subscribed to user.
func (s *subscriptions) committed(user int64) {
	s.mu.Lock()
	for in := range s.in[user] {
		in.mu.Lock()
		in.pending[user] = struct{}{}
		in.mu.Unlock()
		in.signal()
	}
	s.mu.Unlock()
}

func (in *inSub) queue(f nodewire.SubscribeFrame) {
	in.mu.Lock()
	if len(in.frames) > 10000 {
		in.mu.Unlock()
		in.conn.Close() // an edge this far behind re-registers from scratch
		return
	}
	in.frames = append(in.frames, f)
	in.mu.Unlock()
	in.signal()
}

func (in *inSub) signal() {
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

func (in *inSub) resetCursor(user int64) {
	in.mu.Lock()
	in.reset[user] = struct{}{}
	in.mu.Unlock()
}

// pushPage bounds the events one wake carries; beyond it the edge pulls.
const pushPage = 64

// writeLoop writes the stream's frames and its wakes. A wake carries the
// user's new events when it can: cursors (owned by this goroutine) hold,
// per user, the id up to which this edge was sent the queue; a wake then
// carries every event past it (nodewire.SubscribeFrame.Events), which spares
// the edge a pull from this leader per event. The first wake after a
// subscription, a page too long, or a shard no longer led here sends a
// plain wake, and the edge pulls.
func (in *inSub) writeLoop(done chan struct{}) {
	bw := bufio.NewWriter(in.conn)
	log := in.s.log
	cursors := make(map[int64]int64)
	var nodeEvs []nodewire.NodeEvent
	for {
		select {
		case <-done:
			return
		case <-in.wake:
		}
		in.mu.Lock()
		users := make([]int64, 0, len(in.pending))
		for u := range in.pending {
			users = append(users, u)
		}
		clear(in.pending)
		for u := range in.reset {
			delete(cursors, u)
		}
		clear(in.reset)
		frames := in.frames
		in.frames = nil
		in.mu.Unlock()
		in.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		var err error
		for _, f := range frames {
			if err == nil {
				err = nodewire.WriteNodeFrame(bw, f)
			}
		}
		for _, u := range users {
			if err != nil {
				break
			}
			wake := nodewire.SubscribeFrame{Op: nodewire.SubEvents, User: u}
			after, known := cursors[u]
			if !known {
				cursors[u] = log.LastEventID(u)
				err = nodewire.WriteNodeFrame(bw, wake)
				continue
			}
			evs, more, perr := log.Pending(context.Background(), u, after, pushPage)
			switch {
			case perr != nil:
				delete(cursors, u)
			case more:
				cursors[u] = evs[len(evs)-1].ID
			case len(evs) == 0:
				continue // acknowledged meanwhile: nothing to tell
			default:
				nodeEvs = nodeEvs[:0]
				for i := range evs {
					nodeEvs = append(nodeEvs, toNode(&evs[i]))
				}
				wake.After, wake.Events = after, nodeEvs
				cursors[u] = evs[len(evs)-1].ID
			}
			err = nodewire.WriteNodeFrame(bw, wake)
		}
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			in.conn.Close()
			return
		}
	}
}

func (s *subscriptions) close() {
	close(s.stop)
	s.mu.Lock()
	for _, o := range s.out {
		o.kill()
	}
	s.mu.Unlock()
}

package cluster

import (
	"bufio"
	"context"
	"net"
	"sync"
	"time"

	"github.com/edgenode/edgenode/cluster/mesh"
	"github.com/edgenode/edgenode/wire"
)

// subscriptions carries delivery wake-ups across nodes, in both roles:
//
//   - as an edge, it keeps, for every user with a local socket whose shard
//     is led elsewhere, a subscription at that leader, over one stream per
//     leader node (out);
//   - as a leader, it remembers which streams subscribed to which users and
//     writes "events" to them after each commit (in).
type subscriptions struct {
	c *Cluster

	mu     sync.Mutex
	wanted map[int64]string   // local online user → node its subscription is at ("" = none yet)
	out    map[string]*outSub // leader node → stream
	in     map[int64]map[*inSub]struct{}

	stop chan struct{}
}

type outSub struct {
	node  string
	conn  net.Conn
	sendQ chan wire.SubscribeFrame
	dead  chan struct{}
	once  sync.Once
}

type inSub struct {
	conn    net.Conn
	mu      sync.Mutex
	pending map[int64]struct{}
	wake    chan struct{}
}

func newSubscriptions(c *Cluster) *subscriptions {
	return &subscriptions{
		c:      c,
		wanted: make(map[int64]string),
		out:    make(map[string]*outSub),
		in:     make(map[int64]map[*inSub]struct{}),
		stop:   make(chan struct{}),
	}
}

// want records that user has (or no longer has) a local socket.
func (s *subscriptions) want(user int64, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !on {
		node, ok := s.wanted[user]
		delete(s.wanted, user)
		if ok && node != "" {
			if o := s.out[node]; o != nil {
				o.send(wire.SubscribeFrame{Op: wire.UnsubUser, User: user})
			}
		}
		return
	}
	if _, ok := s.wanted[user]; !ok {
		s.wanted[user] = ""
	}
	// The maintain loop subscribes within a second; do the common case now.
	go s.reconcileUser(user)
}

// maintain re-checks every second that each wanted subscription sits at the
// current leader of its user's shard.
func (s *subscriptions) maintain() {
	defer s.c.wg.Done()
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

// leaderFor is the node that leads user's shard as far as this node knows;
// "" if it is this node or unknown.
func (s *subscriptions) leaderFor(user int64) string {
	c := s.c
	shard := c.log.ShardFor(user)
	if c.log.Serving(shard) {
		return ""
	}
	if l := c.log.Leader(shard); l != "" && l != c.self {
		return l
	}
	c.hintMu.Lock()
	defer c.hintMu.Unlock()
	return c.hints[shard]
}

func (s *subscriptions) reconcileUser(user int64) {
	leader := s.leaderFor(user)
	s.mu.Lock()
	cur, ok := s.wanted[user]
	if !ok || (cur == leader && (leader == "" || s.out[leader] != nil)) {
		s.mu.Unlock()
		return
	}
	if cur != "" {
		if o := s.out[cur]; o != nil {
			o.send(wire.SubscribeFrame{Op: wire.UnsubUser, User: user})
		}
	}
	s.wanted[user] = leader
	s.mu.Unlock()
	if leader == "" {
		s.c.opts.Notify(user) // served here now: the local commit hook wakes it
		return
	}
	o := s.stream(leader)
	if o == nil {
		s.mu.Lock()
		if s.wanted[user] == leader {
			s.wanted[user] = "" // retry on the next tick
		}
		s.mu.Unlock()
		return
	}
	o.send(wire.SubscribeFrame{Op: wire.SubUser, User: user})
	// Events may have been committed before the subscription took effect.
	s.c.opts.Notify(user)
}

// stream returns the subscribe stream to node, opening it if needed.
func (s *subscriptions) stream(node string) *outSub {
	s.mu.Lock()
	if o := s.out[node]; o != nil {
		s.mu.Unlock()
		return o
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	conn, err := s.c.opts.Mesh.Open(ctx, node, mesh.KindSubscribe, 0)
	cancel()
	if err != nil {
		s.c.opts.Logger.Debug("subscribe stream failed", "node", node, "err", err)
		return nil
	}
	o := &outSub{node: node, conn: conn, sendQ: make(chan wire.SubscribeFrame, 1024), dead: make(chan struct{})}
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

func (o *outSub) send(f wire.SubscribeFrame) {
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
	for {
		select {
		case <-o.dead:
			return
		case f := <-o.sendQ:
			o.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if wire.WriteNodeFrame(o.conn, f) != nil {
				o.kill()
				return
			}
		}
	}
}

func (s *subscriptions) readLoop(o *outSub) {
	br := bufio.NewReader(o.conn)
	for {
		var f wire.SubscribeFrame
		if err := wire.ReadNodeFrame(br, &f); err != nil {
			break
		}
		if f.Op == wire.SubEvents {
			s.c.opts.Notify(f.User)
		}
	}
	o.kill()
	// Everything subscribed through this stream resubscribes on the next
	// tick, at whichever node leads then.
	s.mu.Lock()
	if s.out[o.node] == o {
		delete(s.out, o.node)
	}
	var lost []int64
	for u, node := range s.wanted {
		if node == o.node {
			s.wanted[u] = ""
			lost = append(lost, u)
		}
	}
	s.mu.Unlock()
	for _, u := range lost {
		s.c.opts.Notify(u) // the socket's pull finds the new leader itself
	}
}

// Leader role.

func (s *subscriptions) serve(conn net.Conn, from string, _ int) {
	in := &inSub{conn: conn, pending: make(map[int64]struct{}), wake: make(chan struct{}, 1)}
	done := make(chan struct{})
	go in.writeLoop(done)
	br := bufio.NewReader(conn)
	var mine []int64
	for {
		var f wire.SubscribeFrame
		if err := wire.ReadNodeFrame(br, &f); err != nil {
			break
		}
		s.mu.Lock()
		switch f.Op {
		case wire.SubUser:
			set := s.in[f.User]
			if set == nil {
				set = make(map[*inSub]struct{})
				s.in[f.User] = set
			}
			set[in] = struct{}{}
			mine = append(mine, f.User)
		case wire.UnsubUser:
			if set := s.in[f.User]; set != nil {
				delete(set, in)
				if len(set) == 0 {
					delete(s.in, f.User)
				}
			}
		}
		s.mu.Unlock()
	}
	close(done)
	conn.Close()
	s.mu.Lock()
	for _, u := range mine {
		if set := s.in[u]; set != nil {
			delete(set, in)
			if len(set) == 0 {
				delete(s.in, u)
			}
		}
	}
	s.mu.Unlock()
}

// committed wakes the remote edges subscribed to user.
func (s *subscriptions) committed(user int64) {
	s.mu.Lock()
	set := s.in[user]
	for in := range set {
		in.mu.Lock()
		in.pending[user] = struct{}{}
		in.mu.Unlock()
		select {
		case in.wake <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
}

func (in *inSub) writeLoop(done chan struct{}) {
	bw := bufio.NewWriter(in.conn)
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
		in.mu.Unlock()
		in.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		for _, u := range users {
			if wire.WriteNodeFrame(bw, wire.SubscribeFrame{Op: wire.SubEvents, User: u}) != nil {
				in.conn.Close()
				return
			}
		}
		if bw.Flush() != nil {
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

package cluster

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/edgenode/edgenode/cluster/member"
	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire/nodewire"
)

// The routing part: where a call about a shard runs (here, or at the
// shard's leader over a Transport), with the per-shard leader hints and
// the forwarded calls in progress. It knows the relay log only as a
// shardLeaders and membership only as a memberView.

// shardLeaders is what routing needs of the relay log: who leads which
// shard, and which shard holds a user.
type shardLeaders interface {
	Shards() int
	ShardFor(user int64) int
	// Serving: this node leads shard and may run its calls.
	Serving(shard int) bool
	// Leader is raft's leader of shard as this node knows it ("" none).
	Leader(shard int) string
}

// memberView is what the cluster's parts need of the membership.
type memberView interface {
	Members() []member.Member
	Get(nodeID string) (member.Member, bool)
}

// Transport carries a call to another node (the mesh's call streams). An
// error is a failure to get an answer (errRemote), not an answer's error.
type Transport interface {
	Call(ctx context.Context, node string, shard int, req *nodewire.CallRequest) (*nodewire.CallResponse, error)
}

// routing runs calls where their shard is led.
type routing struct {
	self      string
	log       shardLeaders
	members   memberView
	transport Transport
	// noLeaderWait: see the constant; a field for tests.
	noLeaderWait time.Duration

	hintMu sync.Mutex
	hints  map[int]string // shard → last known leader

	callsMu   sync.Mutex
	calls     map[*inflightCall]struct{} // forwarded calls in progress
	callsWake chan struct{}              // the first call came in (watchCalls)
}

func newRouting(self string, log shardLeaders, members memberView, t Transport) *routing {
	return &routing{
		self: self, log: log, members: members, transport: t,
		noLeaderWait: noLeaderWait,
		hints:        make(map[int]string),
		calls:        make(map[*inflightCall]struct{}),
		callsWake:    make(chan struct{}, 1),
	}
}

// hint is the last known leader of shard ("" none).
func (c *routing) hint(shard int) string {
	c.hintMu.Lock()
	defer c.hintMu.Unlock()
	return c.hints[shard]
}

// maxHops bounds how many nodes one call tries before answering 503.
const maxHops = 4

// candidates lists, best first, the nodes that may lead shard.
func (c *routing) candidates(shard int) []string {
	var out []string
	seen := map[string]bool{c.self: true}
	add := func(id string) {
		if id == "" || seen[id] {
			return
		}
		seen[id] = true
		// A node gossip calls dead or gone would only make the call wait
		// for its timeout: leave it out; its shards elect elsewhere.
		if m, ok := c.members.Get(id); ok && (m.Status == member.StatusDead || m.Status == member.StatusLeft) {
			return
		}
		out = append(out, id)
	}
	c.hintMu.Lock()
	add(c.hints[shard])
	c.hintMu.Unlock()
	add(c.log.Leader(shard))
	var alive []member.Member
	for _, m := range c.members.Members() {
		if m.Status == member.StatusAlive || m.Status == member.StatusSuspect {
			alive = append(alive, m)
		}
	}
	for _, id := range Target(shard, alive) {
		add(id)
	}
	for _, m := range alive {
		add(m.NodeID)
	}
	return out
}

// likelyLeaders is the start of candidates: the hint and raft's leader.
func (c *routing) likelyLeaders(shard int) []string {
	c.hintMu.Lock()
	h := c.hints[shard]
	c.hintMu.Unlock()
	l := c.log.Leader(shard)
	out := make([]string, 0, 2)
	for _, id := range [2]string{h, l} {
		if id == "" || id == c.self || (len(out) > 0 && out[0] == id) {
			continue
		}
		if m, ok := c.members.Get(id); ok && (m.Status == member.StatusDead || m.Status == member.StatusLeft) {
			continue
		}
		out = append(out, id)
	}
	return out
}

func (c *routing) setHint(shard int, node string) {
	c.hintMu.Lock()
	if node == "" {
		delete(c.hints, shard)
	} else {
		c.hints[shard] = node
	}
	c.hintMu.Unlock()
}

// noLeaderWait bounds how long a call waits for a shard between leaders
// (an election or a leadership hand-over takes a heartbeat or two) before
// it is answered 503.
const noLeaderWait = 3 * time.Second

// attempt is one forwarded call to node. A leader that dies mid-call leaves
// the stream silent until QUIC gives up, so the attempt is abandoned as soon
// as raft names another leader for the shard or gossip declares the node
// dead; every call is safe to repeat (sends are idempotent by requestId, the
// rest by nature), so the caller moves on to the next leader. A slow but
// healthy leader is waited for, up to CallTimeout: retrying it would only add
// load where there is too much.
func (c *routing) attempt(ctx context.Context, node string, shard int, req *nodewire.CallRequest) (*nodewire.CallResponse, error) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	call := &inflightCall{node: node, shard: shard, cancel: cancel}
	c.callsMu.Lock()
	c.calls[call] = struct{}{}
	if len(c.calls) == 1 {
		select {
		case c.callsWake <- struct{}{}:
		default:
		}
	}
	c.callsMu.Unlock()
	defer func() {
		c.callsMu.Lock()
		delete(c.calls, call)
		c.callsMu.Unlock()
	}()
	return c.transport.Call(actx, node, shard, req)
}

// inflightCall is a forwarded call in progress, for watchCalls.
type inflightCall struct {
	node   string
	shard  int
	cancel context.CancelFunc
}

// watchCalls abandons, every 100 ms, the forwarded calls whose node no
// longer leads their shard or is dead (see attempt): one goroutine for all
// calls rather than a timer per call, asleep while there is none.
func (c *routing) watchCalls(stop <-chan struct{}) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var calls []*inflightCall
	for {
		c.callsMu.Lock()
		idle := len(c.calls) == 0
		c.callsMu.Unlock()
		if idle {
			select {
			case <-stop:
				return
			case <-c.callsWake:
			}
		}
		t.Reset(100 * time.Millisecond)
		select {
		case <-stop:
			return
		case <-t.C:
		}
		calls = calls[:0]
		c.callsMu.Lock()
		for call := range c.calls {
			calls = append(calls, call)
		}
		c.callsMu.Unlock()
		for _, call := range calls {
			if l := c.log.Leader(call.shard); l != "" && l != call.node {
				call.cancel()
			} else if m, ok := c.members.Get(call.node); ok && (m.Status == member.StatusDead || m.Status == member.StatusLeft) {
				call.cancel()
			}
		}
		clear(calls)
	}
}

// forward sends req to shard's leader, following not-leader hints, and
// retries with a short backoff while the shard has no leader.
func (c *routing) forward(ctx context.Context, shard int, req *nodewire.CallRequest) (*nodewire.CallResponse, error) {
	deadline := time.Now().Add(c.noLeaderWait)
	pause := 50 * time.Millisecond
	for {
		resp, err := c.forwardOnce(ctx, shard, req)
		if err == nil || !errors.Is(err, relaylog.ErrNoLeader) || time.Now().Add(pause).After(deadline) {
			return resp, err
		}
		if c.log.Serving(shard) {
			return nil, errServeLocally
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(pause):
		}
		pause *= 2
	}
}

// errServeLocally: leadership arrived here while a call was being routed.
var errServeLocally = errors.New("cluster: shard is now served here")

func (c *routing) forwardOnce(ctx context.Context, shard int, req *nodewire.CallRequest) (*nodewire.CallResponse, error) {
	// The known leader first; the full candidate list (which ranks every
	// member) only if it fails.
	cands := c.likelyLeaders(shard)
	full := false
	tried := map[string]bool{}
	var last error = &relaylog.NotLeaderError{Shard: shard}
	for hop := 0; hop < maxHops; {
		if len(cands) == 0 {
			if full {
				break
			}
			cands, full = c.candidates(shard), true
			continue
		}
		node := cands[0]
		cands = cands[1:]
		if tried[node] || node == c.self {
			continue
		}
		hop++
		tried[node] = true
		resp, err := c.attempt(ctx, node, shard, req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			last = err
			c.setHint(shard, "")
			continue
		}
		if resp.Err == nodewire.NodeErrNotLeader {
			last = responseError(shard, resp)
			if resp.Leader != "" && resp.Leader != c.self && !tried[resp.Leader] {
				cands = append([]string{resp.Leader}, cands...)
			}
			continue
		}
		c.setHint(shard, node)
		return resp, nil
	}
	if errors.Is(last, errRemote) {
		// Every candidate failed to answer: the shard is unreachable,
		// which the client sees as 503.
		return nil, &relaylog.NotLeaderError{Shard: shard}
	}
	return nil, last
}

// route runs a call locally when this node serves the user's shard and
// forwards it otherwise; a nil response with a nil error means it ran here.
func (r *routing) route(ctx context.Context, user int64, local func() error, req *nodewire.CallRequest) (*nodewire.CallResponse, error) {
	return r.routeShard(ctx, r.log.ShardFor(user), local, req)
}

// routeShard is route for a call about a shard rather than a user.
func (r *routing) routeShard(ctx context.Context, shard int, local func() error, req *nodewire.CallRequest) (*nodewire.CallResponse, error) {
	for i := 0; i < 3; i++ {
		if r.log.Serving(shard) {
			if err := local(); !errors.Is(err, relaylog.ErrNoLeader) {
				return nil, err
			}
		}
		resp, err := r.forward(ctx, shard, req)
		if errors.Is(err, errServeLocally) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return resp, responseError(shard, resp)
	}
	return nil, &relaylog.NotLeaderError{Shard: shard}
}

// routeNewShard is routeShard for a call that nodes of earlier versions do
// not know: a leader of such a version answers bad_request, which comes
// back as old with no error and no response, for the caller to do what
// that version did.
func (r *routing) routeNewShard(ctx context.Context, shard int, local func() error, req *nodewire.CallRequest) (resp *nodewire.CallResponse, old bool, err error) {
	resp, err = r.routeShard(ctx, shard, local, req)
	if resp != nil && resp.Err == nodewire.NodeErrBadRequest {
		return nil, true, nil
	}
	return resp, false, err
}

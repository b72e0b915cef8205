package cluster

import (
	"context"
	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/edgenode/edgenode/cluster/member"
	"github.com/edgenode/edgenode/cluster/mesh"
	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
	"github.com/edgenode/edgenode/wire/nodewire"
)

// Options configure a Cluster. Log, Members and Mesh are required.
type Options struct {
	Log     *relaylog.Log
	Members *member.Membership
	Mesh    *mesh.Mesh
	Logger  *slog.Logger
	// DeadGrace orders the removal of surplus voters: one that left, or
	// has been dead at least DeadGrace, goes before a live one that merely
	// scores lower. It does not delay a replacement: a dead node leaves the
	// placement target at once (see the package doc). 0 means 30s.
	DeadGrace time.Duration
	// ReconcileEvery is the placement period; 0 means 2s.
	ReconcileEvery time.Duration
	// CallTimeout bounds one forwarded call; 0 means 5s.
	CallTimeout time.Duration
	// Limits are users' allowances, summed at their homes across the
	// cluster (Router.ReportUsage); zero values: not summed.
	Limits Limits
	// Registerer, if set, gets the cluster's metrics
	// (edgenode_node_calls_total).
	Registerer prometheus.Registerer
}

// Cluster is this node's part of the cluster: the composition of its
// parts (see the package doc, "Parts"), which node uses.
type Cluster struct {
	opts      Options
	log       *relaylog.Log
	self      string
	shards    raftShards // the log's shards, as the parts see them
	transport *meshTransport
	routing   *routing
	placer    *placer
	drain     *drainer
	router    *Router
	subs      *subscriptions
	usage     *homeUsage // nil without Options.Limits
	inbox     *Inbox
	calls     *prometheus.CounterVec // calls answered for other nodes, by op
	acks      *ackBatcher
	applying  ackApplier // acks of ack_devices calls being applied here

	stop   chan struct{}
	wg     sync.WaitGroup
	closed sync.Once
}

// New starts the cluster's loops and registers its mesh handlers.
func New(opts Options) *Cluster {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.DeadGrace <= 0 {
		opts.DeadGrace = 30 * time.Second
	}
	if opts.ReconcileEvery <= 0 {
		opts.ReconcileEvery = 2 * time.Second
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 5 * time.Second
	}
	self := opts.Log.NodeID()
	shards := raftShards{shardLeaders: opts.Log, raft: opts.Log.Raft, transfer: opts.Log.TransferLeadership}
	transport := newMeshTransport(opts.Mesh, opts.CallTimeout)
	routing := newRouting(self, opts.Log, opts.Members, transport)
	drain := &drainer{self: self, log: shards, members: opts.Members, transport: transport, logger: opts.Logger}
	c := &Cluster{
		opts:      opts,
		log:       opts.Log,
		self:      self,
		shards:    shards,
		transport: transport,
		routing:   routing,
		drain:     drain,
		placer: &placer{
			self: self, log: shards, members: opts.Members, transport: transport,
			hints: routing, draining: drain.isDraining, logger: opts.Logger,
			deadGrace: opts.DeadGrace, every: opts.ReconcileEvery,
			kick: make(chan struct{}, 1),
		},
		stop:  make(chan struct{}),
		usage: newHomeUsage(opts.Limits),
		inbox: newInbox(),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgenode_node_calls_total",
			Help: "Calls this node answered for other nodes (forwarded sends, acknowledgements, receipts, ...), by operation.",
		}, []string{"op"}),
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(c.calls)
	}
	c.acks = newAckBatcher(routing)
	c.router = &Router{c: c}
	c.subs = newSubscriptions(subsDeps{
		self: self, log: opts.Log, hint: routing.hint,
		open: func(ctx context.Context, node string) (net.Conn, error) {
			return opts.Mesh.Open(ctx, node, mesh.KindSubscribe, 0)
		},
		inbox: c.inbox, logger: opts.Logger,
		features: c.features,
	})
	opts.Mesh.Handle(mesh.KindCallMux, c.serveCallMux)
	opts.Mesh.Handle(mesh.KindSubscribe, c.subs.serve)
	c.wg.Add(3)
	go func() { defer c.wg.Done(); c.placer.run(c.stop) }()
	go func() { defer c.wg.Done(); c.routing.watchCalls(c.stop) }()
	go func() { defer c.wg.Done(); c.subs.maintain() }()
	return c
}

// features is another node's relaylog.Features as gossip tells (0:
// unknown).
func (c *Cluster) features(node string) uint64 {
	m, ok := c.opts.Members.Get(node)
	if !ok {
		return 0
	}
	return m.Features
}

// Router is the Store the front uses.
func (c *Cluster) Router() *Router { return c.router }

// MembershipChanged makes placement run now (node calls it after each
// member.Membership.WaitChange).
func (c *Cluster) MembershipChanged() {
	select {
	case c.placer.kick <- struct{}{}:
	default:
	}
}

// Committed tells remote subscribers of user that its queue changed
// (the log's commit stream, relaylog.Commits, besides the local hub).
func (c *Cluster) Committed(user int64) { c.subs.committed(user) }

// HomePushes reports whether user's sockets here get their events from
// the home of user's shard elsewhere (a wake that carries them, after the
// home's commit): then this node's apply of the entry as a follower need
// not wake them, which would make each of them pull the same events from
// the home again (a node call per event).
func (c *Cluster) HomePushes(user int64) bool { return c.subs.homePushes(user) }

// Inbox is what the cluster has for this node's sockets, watchers and
// push (see Inbox); the node's fan-out reads it.
func (c *Cluster) Inbox() *Inbox { return c.inbox }

// Receipts routes the log's receipts for senders whose shards other nodes
// lead (relaylog.Log.AckVia, ExpireVia, RunExpiry).
func (c *Cluster) Receipts() relaylog.Receipts { return receipts{c} }

type receipts struct{ c *Cluster }

func (r receipts) Delivered(ctx context.Context, sender, by int64, ids []int64) error {
	return r.c.RemoteReceipt(ctx, sender, by, ids)
}

func (r receipts) Expired(ctx context.Context, sender, by int64, ids []int64) error {
	return r.c.RemoteExpired(ctx, sender, by, ids)
}

// RemoteReceipt commits a DELIVERED receipt at the leader of sender's shard.
func (c *Cluster) RemoteReceipt(ctx context.Context, sender, by int64, ids []int64) error {
	_, err := c.router.route(ctx, sender, func() error { return c.log.Delivered(ctx, sender, by, ids) },
		&nodewire.CallRequest{Op: nodewire.OpDelivered, User: sender, From: by, IDs: ids})
	return err
}

// RemoteExpired commits an EXPIRED receipt at the leader of sender's shard.
// A leader of a version without it
// answers bad_request: relaylog.ErrReceiptUnsupported.
func (c *Cluster) RemoteExpired(ctx context.Context, sender, by int64, ids []int64) error {
	_, old, err := c.router.routeNewShard(ctx, c.log.ShardFor(sender), func() error { return c.log.Expired(ctx, sender, by, ids) },
		&nodewire.CallRequest{Op: nodewire.OpExpired, User: sender, From: by, IDs: ids})
	if old {
		return relaylog.ErrReceiptUnsupported
	}
	return err
}

// UserOnline and UserOffline follow the first and last local socket of a
// user, so that the edge subscribes at the user's shard leader.
func (c *Cluster) UserOnline(user int64) {
	c.subs.set(user, true, true)
	if c.IsHome(user) {
		c.subs.localTransition(user, true)
	}
}

func (c *Cluster) UserOffline(user int64) {
	c.subs.set(user, true, false)
	if c.IsHome(user) {
		c.subs.localTransition(user, false)
	}
}

// DeviceOnline and DeviceOffline follow the first and last local socket of
// one device of a user, so that push at the user's home alerts only the
// devices without a socket.
func (c *Cluster) DeviceOnline(user int64, dev string) {
	c.subs.setDevice(user, dev, true)
}

func (c *Cluster) DeviceOffline(user int64, dev string) {
	c.subs.setDevice(user, dev, false)
	if c.IsHome(user) && !c.subs.deviceOnline(user, dev) {
		c.subs.inbox.offline(user) // push checks the devices again
	}
}

// Presence is the cluster's side of this node's presence hub (it
// implements presence.Remote): the hub, made after the cluster, takes it.
func (c *Cluster) Presence() *Presence { return (*Presence)(c) }

// IsHome reports whether this node leads user's shard.
func (c *Cluster) IsHome(user int64) bool { return c.log.Serving(c.log.ShardFor(user)) }

// Presence makes presence cluster-wide (presence.Remote): every user's
// home, the leader of its shard, decides whether the user is online.
type Presence Cluster

// IsHome reports whether this node is user's home.
func (p *Presence) IsHome(user int64) bool { return (*Cluster)(p).IsHome(user) }

// Connected and Disconnected follow user's first and last socket on this
// node (Cluster.UserOnline, UserOffline).
func (p *Presence) Connected(user int64)    { (*Cluster)(p).UserOnline(user) }
func (p *Presence) Disconnected(user int64) { (*Cluster)(p).UserOffline(user) }

// DeviceConnected and DeviceDisconnected follow the first socket opening
// and the last closing of one device of user on this node
// (presence.DeviceRemote).
func (p *Presence) DeviceConnected(user int64, dev string) { (*Cluster)(p).DeviceOnline(user, dev) }
func (p *Presence) DeviceDisconnected(user int64, dev string) {
	(*Cluster)(p).DeviceOffline(user, dev)
}

// DeviceSocket reports, at user's home, whether device dev of user has a
// socket on another node (or may have: on a node that reports no
// devices); false elsewhere.
func (p *Presence) DeviceSocket(user int64, dev string) bool {
	c := (*Cluster)(p)
	return c.IsHome(user) && c.subs.remoteDevice(user, dev)
}

// Online reports whether user has a socket on any node.
func (p *Presence) Online(user int64) bool {
	online, _ := p.Presence(user)
	return online
}

// Presence asks user's home (or answers, being it). The wait is bounded:
// callers are a REST call, a watch answer and typing taken over REST, never
// a shared stream; 2 s leaves room for a loaded node.
func (p *Presence) Presence(user int64) (bool, int64) {
	c := (*Cluster)(p)
	if c.IsHome(user) {
		online := c.subs.remoteOnline(user)
		return online, c.subs.statusFrame(user, online).LastSeen
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := c.routing.forward(ctx, c.log.ShardFor(user), &nodewire.CallRequest{Op: nodewire.OpStatus, User: user})
	if err != nil || resp.Err != "" {
		return false, 0
	}
	return resp.Found, resp.At
}

func (p *Presence) Watch(user int64, on bool) { (*Cluster)(p).subs.set(user, false, on) }

func (p *Presence) Typing(from, to int64, typing, fromOnline bool) {
	c := (*Cluster)(p)
	if c.IsHome(to) {
		c.subs.fanTyping(from, to, typing, fromOnline, c.self)
		return
	}
	home := c.subs.homeOf(to)
	if home == "" {
		return
	}
	go func() {
		if o := c.subs.stream(home); o != nil {
			o.send(nodewire.SubscribeFrame{Op: nodewire.SubTyping, User: to, From: from, Typing: typing, Online: fromOnline, Origin: c.self})
		}
	}()
}

// Drain hands the leadership of every shard this node leads to another
// voter (see drainer.drain).
func (c *Cluster) Drain(ctx context.Context) { c.drain.drain(ctx) }

// Close stops the cluster's loops.
func (c *Cluster) Close() {
	c.closed.Do(func() {
		close(c.stop)
		c.subs.close()
		c.transport.close()
		c.wg.Wait()
	})
}

// Remote calls.

// errRemote wraps a transport failure of a forwarded call.
var errRemote = errors.New("cluster: forwarded call failed")

// handleCall runs a call forwarded by node from.
func (c *Cluster) handleCall(from string, req *nodewire.CallRequest) *nodewire.CallResponse {
	op := req.Op
	if !knownOps[op] {
		op = "unknown" // the label's values stay bounded
	}
	c.calls.WithLabelValues(op).Inc()
	if req.Op == nodewire.OpDraining {
		c.drain.mark(from)
		return &nodewire.CallResponse{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.CallTimeout)
	defer cancel()
	return c.execute(ctx, req)
}

var knownOps = map[string]bool{
	nodewire.OpSend: true, nodewire.OpPending: true, nodewire.OpAck: true, nodewire.OpRead: true,
	nodewire.OpDeviceAdd: true, nodewire.OpDeviceRemove: true, nodewire.OpTokenOwner: true,
	nodewire.OpContact: true, nodewire.OpContacts: true, nodewire.OpUsage: true,
	nodewire.OpSetLastSeen: true, nodewire.OpGetLastSeen: true, nodewire.OpShardProgress: true,
	nodewire.OpDelivered: true, nodewire.OpExpired: true, nodewire.OpStatus: true, nodewire.OpDraining: true,
	nodewire.OpAttach: true, nodewire.OpAckDevice: true, nodewire.OpUnlink: true, nodewire.OpLinked: true,
	nodewire.OpSentCopy: true, nodewire.OpReadSync: true, nodewire.OpAckDevices: true,
}

// execute runs a forwarded call against the local log.
func (c *Cluster) execute(ctx context.Context, req *nodewire.CallRequest) *nodewire.CallResponse {
	l := c.log
	resp := &nodewire.CallResponse{}
	var err error
	switch req.Op {
	case nodewire.OpSend:
		if req.Send == nil {
			return &nodewire.CallResponse{Err: nodewire.NodeErrBadRequest}
		}
		var ev relaylog.Event
		ev, resp.Created, err = l.Send(ctx, req.From, *req.Send)
		if err == nil {
			resp.Events = []nodewire.NodeEvent{toNode(&ev)}
		}
	case nodewire.OpPending:
		var evs []relaylog.Event
		evs, resp.More, err = l.Pending(ctx, req.User, req.After, req.Limit)
		for i := range evs {
			resp.Events = append(resp.Events, toNode(&evs[i]))
		}
	case nodewire.OpAck:
		resp.N, err = l.AckVia(ctx, req.User, req.UpTo, c.Receipts())
	case nodewire.OpAckDevice:
		resp.N, err = l.AckDeviceVia(ctx, req.User, req.Token, req.UpTo, c.Receipts())
	case nodewire.OpAckDevices:
		return c.ackDevices(req)
	case nodewire.OpAttach:
		var ok bool
		if resp.At, ok, err = l.Attach(ctx, req.User, req.Token); err == nil && !ok {
			err = relaylog.ErrDevicesUnavailable // answered as an older node would: the caller falls back
		}
	case nodewire.OpUnlink:
		resp.Found, err = l.Unlink(ctx, req.User, req.Token)
	case nodewire.OpSentCopy:
		if req.Send == nil {
			return &nodewire.CallResponse{Err: nodewire.NodeErrBadRequest}
		}
		resp.Found, err = l.SentCopy(ctx, req.User, relaylog.Event{ID: req.UpTo, Kind: relaylog.KindMessage, From: req.User, To: req.Send.ToUserID, Content: req.Send.Content, CreatedAt: req.Send.CreatedAt})
	case nodewire.OpReadSync:
		err = l.ReadSync(ctx, req.User, req.From, req.UpTo)
	case nodewire.OpLinked:
		var list []relaylog.Linked
		list, err = l.LinkedDevices(ctx, req.User)
		for _, d := range list {
			ev := nodewire.NodeEvent{ID: d.Seen, Content: d.ID, UpTo: d.Cursor}
			if d.Push {
				ev.By = 1
			}
			resp.Events = append(resp.Events, ev)
		}
	case nodewire.OpRead:
		// User is the sender (whose shard takes the receipt), From the
		// reader, as Router.MarkRead sends them.
		err = l.MarkRead(ctx, req.From, req.User, req.UpTo)
	case nodewire.OpStatus:
		if err = l.CheckServing(req.User); err == nil {
			resp.Found = c.subs.online(req.User)
			// The store's time, or the open it does not have yet.
			resp.At = c.subs.statusFrame(req.User, resp.Found).LastSeen
		}
	case nodewire.OpDelivered:
		err = l.Delivered(ctx, req.User, req.From, req.IDs)
	case nodewire.OpExpired:
		err = l.Expired(ctx, req.User, req.From, req.IDs)
	case nodewire.OpDeviceAdd:
		if req.Device == nil {
			return &nodewire.CallResponse{Err: nodewire.NodeErrBadRequest}
		}
		d := req.Device
		// Token names the device the push token is bound to (a node of
		// a version before bindings sends none).
		err = l.RegisterDevice(ctx, req.User, relaylog.Device{Platform: d.Platform, Token: d.Token, Topic: d.Topic, Sandbox: d.Sandbox, DeviceID: req.Token})
	case nodewire.OpDeviceRemove:
		err = l.UnregisterDevice(ctx, req.User, req.Token)
	case nodewire.OpSetLastSeen:
		err = l.SetLastConnected(ctx, req.User, time.UnixMilli(req.At))
	case nodewire.OpGetLastSeen:
		if err = l.CheckServing(req.User); err == nil {
			var t time.Time
			t, resp.Found = l.LastConnected(req.User)
			resp.At = t.UnixMilli()
		}
	case nodewire.OpContact:
		resp.At, resp.Found, err = l.Contact(req.User, req.From)
	case nodewire.OpUsage:
		return c.usageCall(req)
	case nodewire.OpContacts:
		if req.Shard < 0 || req.Shard >= l.Shards() || len(req.IDs)%2 != 0 || len(req.IDs) > 2*2*wire.MaxWatch {
			return &nodewire.CallResponse{Err: nodewire.NodeErrBadRequest}
		}
		resp.Flags, err = l.Contacts(req.Shard, req.IDs)
	case nodewire.OpTokenOwner:
		if req.Shard < 0 || req.Shard >= l.Shards() {
			return &nodewire.CallResponse{Err: nodewire.NodeErrBadRequest}
		}
		resp.At, err = l.TokenOwner(req.Shard, req.Token)
	case nodewire.OpShardProgress:
		if req.Shard < 0 || req.Shard >= l.Shards() {
			return &nodewire.CallResponse{Err: nodewire.NodeErrBadRequest}
		}
		r := l.Raft(req.Shard)
		resp.Index = r.AppliedIndex()
		resp.Voters = voters(c.shards.Config(req.Shard))
		var term uint64
		resp.Leader, term = l.LeaderTerm(req.Shard)
		resp.At = int64(term)
	default:
		return &nodewire.CallResponse{Err: nodewire.NodeErrBadRequest, Message: "unknown op " + req.Op}
	}
	if err != nil {
		return errorResponse(err)
	}
	return resp
}

// nodeErrors maps the log's errors to the node protocol's error codes and
// back: one table for both directions (errorResponse, responseError). An
// entry with a message is told apart from others of its code by it, and
// comes first.
var nodeErrors = []struct {
	err  error
	code string
	msg  string
}{
	{relaylog.ErrSenderShareFull, nodewire.NodeErrQueueFull, queueFullSender},
	{relaylog.ErrQueueFull, nodewire.NodeErrQueueFull, ""},
	{relaylog.ErrRequestIDReused, nodewire.NodeErrReused, ""},
	{relaylog.ErrRequestExpired, nodewire.NodeErrExpired, ""},
	{relaylog.ErrClosed, nodewire.NodeErrClosed, ""},
	{relaylog.ErrOverloaded, nodewire.NodeErrOverloaded, ""},
	{relaylog.ErrDeviceRevoked, nodewire.NodeErrRevoked, ""},
}

// queueFullSender, as the Message of a queue_full answer, says it is the
// sender's share that is full (relaylog.ErrSenderShareFull). Nodes that do
// not know it take the answer as a full queue: 429 either way.
const queueFullSender = "sender"

func errorResponse(err error) *nodewire.CallResponse {
	var nl *relaylog.NotLeaderError
	switch {
	case errors.As(err, &nl):
		return &nodewire.CallResponse{Err: nodewire.NodeErrNotLeader, Leader: nl.Leader}
	case errors.Is(err, relaylog.ErrNoLeader):
		return &nodewire.CallResponse{Err: nodewire.NodeErrNotLeader}
	case errors.Is(err, context.DeadlineExceeded):
		return &nodewire.CallResponse{Err: nodewire.NodeErrOverloaded}
	case errors.Is(err, relaylog.ErrDevicesUnavailable):
		// As an older node answers the call: the caller falls back.
		return &nodewire.CallResponse{Err: nodewire.NodeErrBadRequest, Message: err.Error()}
	}
	for _, e := range nodeErrors {
		if errors.Is(err, e.err) {
			return &nodewire.CallResponse{Err: e.code, Message: e.msg}
		}
	}
	return &nodewire.CallResponse{Err: nodewire.NodeErrInternal, Message: err.Error()}
}

// responseError turns a failed response back into the relaylog error the
// front maps to the API.
func responseError(shard int, r *nodewire.CallResponse) error {
	switch r.Err {
	case "":
		return nil
	case nodewire.NodeErrNotLeader:
		return &relaylog.NotLeaderError{Shard: shard, Leader: r.Leader}
	}
	for _, e := range nodeErrors {
		if r.Err == e.code && (e.msg == "" || r.Message == e.msg) {
			return e.err
		}
	}
	return fmt.Errorf("cluster: remote %s: %s", r.Err, r.Message)
}

func toNode(e *relaylog.Event) nodewire.NodeEvent {
	return nodewire.NodeEvent{ID: e.ID, Kind: uint8(e.Kind), From: e.From, To: e.To, Content: e.Content, CreatedAt: e.CreatedAt, By: e.By, MessageIDs: e.MessageIDs, UpTo: e.UpTo}
}

func fromNode(e *nodewire.NodeEvent) relaylog.Event {
	return relaylog.Event{ID: e.ID, Kind: relaylog.EventKind(e.Kind), From: e.From, To: e.To, Content: e.Content, CreatedAt: e.CreatedAt, By: e.By, MessageIDs: e.MessageIDs, UpTo: e.UpTo}
}

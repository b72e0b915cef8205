package member

import (
	"cmp"
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Meta is what a node gossips about itself. memberlist limits it to
// memberlist.MetaMaxSize (512) bytes of JSON, boot id included.
type Meta struct {
	NodeID      string `json:"id"`
	Region      string `json:"r"`
	HTTPURL     string `json:"u"`           // public client URL (GET /v1/edges)
	ClusterAddr string `json:"c"`           // host:port of the node's QUIC mesh
	Version     string `json:"v,omitempty"` // software version, informational
	// Cluster is the id of the cluster the node belongs to, created when
	// the first node bootstraps the shards and kept in every node's data
	// dir; "" for a node that has not joined one yet. Nodes with different
	// non-empty ids refuse each other's gossip.
	Cluster string `json:"k,omitempty"`
	// Incarnation names the node's raft data (relaylog): new whenever its
	// data dir is. Placement compares it with the raft address a shard's
	// configuration holds for the node.
	Incarnation string `json:"i,omitempty"`
	// Features is the bit set of what the node's build can read in a
	// shard's replicated state (relaylog.Features): a leader uses a
	// feature once every replica of its shard has it.
	Features uint64 `json:"f,omitempty"`
}

// Status is a member's state as seen by this node.
type Status string

// Member statuses.
const (
	StatusAlive   Status = "alive"
	StatusSuspect Status = "suspect" // this node's probes of it go unanswered
	StatusDead    Status = "dead"    // declared failed by the cluster
	StatusLeft    Status = "left"    // left gracefully (Leave)
)

// Member is one node as seen by this node.
type Member struct {
	Meta
	Status     Status
	GossipAddr string    // host:port it gossips on, as it advertises it
	Since      time.Time // when Status last changed (Options.Now)
}

// Defaults and limits.
const (
	DefaultBindAddr = ":7946"
	// ForgetAfter is how long dead and left members stay listed.
	ForgetAfter = 24 * time.Hour
	// DefaultLeaveTimeout bounds Leave when it is given no timeout.
	DefaultLeaveTimeout = 5 * time.Second

	gossipKeyInfo   = "edgenode gossip v1"
	joinBackoffMin  = time.Second
	joinBackoffMax  = 30 * time.Second
	profileLAN      = "lan"
	profileWAN      = "wan"
	suspectRounds   = 2
	bootIDBytes     = 8
	gossipKeyLength = 32

	leaveSendParallelism = 16
)

// Errors.
var (
	ErrNoNodeID   = errors.New("member: Meta.NodeID is required")
	ErrNoSecret   = errors.New("member: Secret is required (gossip is always encrypted)")
	ErrShutdown   = errors.New("member: membership shut down")
	ErrMetaTooBig = fmt.Errorf("member: meta exceeds %d bytes", memberlist.MetaMaxSize)
)

// Options configure Start. The zero value of every field except Meta.NodeID
// and Secret works.
type Options struct {
	// Meta describes this node. NodeID is required and is the memberlist
	// node name.
	Meta Meta
	// BindAddr is the TCP and UDP address to gossip on (--gossip-addr), for
	// example ":7946" or "127.0.0.1:0". "" means DefaultBindAddr; port 0
	// picks a free port (see GossipAddr).
	BindAddr string
	// AdvertiseAddr is the host, or host:port, that other nodes dial. A host
	// name is resolved once at Start. "" lets memberlist choose: the bind IP,
	// or the first private address when bound to all interfaces.
	AdvertiseAddr string
	// Secret is the cluster secret. The gossip key is
	// HKDF-SHA256(Secret, info "edgenode gossip v1"), 32 bytes (AES-256-GCM).
	Secret string
	// Profile is "lan" ("" means lan) or "wan": memberlist's
	// DefaultLANConfig or DefaultWANConfig timings.
	Profile string
	// Join lists gossip addresses of existing nodes. Start returns at once
	// and a background loop tries them until one answers, waiting 1s, 2s, 4s
	// ... up to 30s (plus up to 20% jitter) between attempts and logging
	// each failure. None means this node starts a new cluster.
	Join []string
	// SecretMismatchFor (0 means 30s): when every join attempt for that
	// long failed because the nodes at Join could not decrypt this node's
	// gossip or it theirs (the cluster secret differs), the join loop ends
	// and Refused delivers the error: the node exits instead of retrying
	// forever.
	SecretMismatchFor time.Duration
	// Addresses, if set, is told every member's mesh address as gossip
	// learns it (Meta.ClusterAddr), and "" when a member is forgotten: the
	// mesh dials nodes by id through it (mesh.Mesh.SetAddr).
	Addresses AddressBook
	// Logger receives this package's log lines; memberlist's own lines go
	// through it at debug level. nil discards.
	Logger *slog.Logger
	// Now is the clock for Member.Since and for forgetting old members
	// (ForgetAfter). nil means time.Now. Failure detection always uses the
	// real clock, as memberlist does.
	Now func() time.Time
	// Tuning, if set, is called with the memberlist configuration after the
	// profile, addresses, key and delegates are filled in and before it is
	// used. It is for timings (ProbeInterval, ProbeTimeout, SuspicionMult,
	// GossipInterval, PushPullInterval, TCPTimeout, DeadNodeReclaimTime ...),
	// chiefly so tests detect failures in milliseconds. It must not replace
	// Name, the delegates (Delegate, Events, Ping), SecretKey or Keyring.
	Tuning func(*memberlist.Config)
}

// Membership is this node's view of the cluster. Its methods are safe for
// concurrent use.
// AddressBook is where membership writes the nodes' mesh addresses.
// SetAddr is called with membership's lock held: it must be quick and
// must not call back into the membership.
type AddressBook interface {
	SetAddr(nodeID, addr string)
}

type Membership struct {
	self      string
	boot      string
	meta      atomic.Pointer[[]byte] // gossiped: wireMeta JSON (SetCluster replaces it)
	cluster   atomic.Pointer[string] // Meta.Cluster of this node
	list      *memberlist.Memberlist
	queue     *memberlist.TransmitLimitedQueue
	logger    *slog.Logger
	now       func() time.Time
	bound     string
	probe     time.Duration // memberlist ProbeInterval
	probeWait time.Duration // memberlist ProbeTimeout

	joined  atomic.Bool
	changed chan struct{}
	refused chan error  // the join loop's end on a secret mismatch (Refused)
	book    AddressBook // nil: nobody is told addresses

	mu      sync.Mutex
	members map[string]*entry
	intents map[string]intent // NodeID -> the last known leave intent
	leaving bool

	ctx        context.Context
	cancel     context.CancelFunc // stops every goroutine
	joinCancel context.CancelFunc // stops the join loop only
	wg         sync.WaitGroup

	lifeMu sync.Mutex // serializes Leave and Shutdown (memberlist panics on Leave after Shutdown)
	closed bool
}

type entry struct {
	Member
	boot     string
	evidence time.Time // real clock: last sign of life seen by this node

	// The member's clock minus this node's (Options.Now), from the last
	// direct ping ack, and when (real clock) it was measured.
	clockOffset time.Duration
	clockAt     time.Time
}

// clockFresh is how old a clock measurement may be to count.
const clockFresh = 2 * time.Minute

// ClockSkew is how far this node's clock is from the clocks of (at least)
// half of the other alive members: over the members measured in the last
// two minutes, the offsets (their clock - this node's) are sorted by size
// and the ceil(k/2)-th smallest is returned. So one node with a wrong
// clock among three sees a large skew (both others disagree with it), and
// the two others see almost none (they agree with each other). Offsets come
// from the ping acks of gossip's failure detector: each ack carries the
// sender's clock, and the ack is taken to have travelled half the round
// trip. ok is false when no other member was measured.
func (m *Membership) ClockSkew() (time.Duration, bool) {
	m.mu.Lock()
	var offs []time.Duration
	for id, e := range m.members {
		if id == m.self || e.Status != StatusAlive || e.clockAt.IsZero() || time.Since(e.clockAt) > clockFresh {
			continue
		}
		offs = append(offs, e.clockOffset)
	}
	m.mu.Unlock()
	if len(offs) == 0 {
		return 0, false
	}
	slices.SortFunc(offs, func(a, b time.Duration) int { return cmp.Compare(a.Abs(), b.Abs()) })
	return offs[(len(offs)+1)/2-1], true
}

type intent struct {
	boot string
	at   time.Time // Options.Now
}

// wireMeta is the gossiped form of Meta: Meta plus the id of the process,
// which tells a restarted node from its previous incarnation.
type wireMeta struct {
	Meta
	Boot string `json:"b"`
}

// Start binds the gossip address (TCP and UDP), registers this node and
// returns. When Options.Join is set, joining continues in the background;
// Joined says when it has succeeded.
func Start(opts Options) (*Membership, error) {
	if opts.Meta.NodeID == "" {
		return nil, ErrNoNodeID
	}
	if opts.Secret == "" {
		return nil, ErrNoSecret
	}
	var cfg *memberlist.Config
	switch opts.Profile {
	case "", profileLAN:
		cfg = memberlist.DefaultLANConfig()
	case profileWAN:
		cfg = memberlist.DefaultWANConfig()
	default:
		return nil, fmt.Errorf("member: profile %q is not lan or wan", opts.Profile)
	}

	boot, err := newBootID()
	if err != nil {
		return nil, err
	}
	meta, err := json.Marshal(wireMeta{Meta: opts.Meta, Boot: boot})
	if err != nil {
		return nil, fmt.Errorf("member: encode meta: %w", err)
	}
	if len(meta) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("%w: %d", ErrMetaTooBig, len(meta))
	}
	key, err := gossipKey(opts.Secret)
	if err != nil {
		return nil, err
	}

	bindAddr := opts.BindAddr
	if bindAddr == "" {
		bindAddr = DefaultBindAddr
	}
	bindHost, bindPort, err := splitHostPort(bindAddr)
	if err != nil {
		return nil, fmt.Errorf("member: bind address %q: %w", bindAddr, err)
	}
	if bindHost == "" {
		bindHost = "0.0.0.0"
	}
	cfg.Name = opts.Meta.NodeID
	cfg.BindAddr = bindHost
	cfg.BindPort = bindPort
	if opts.AdvertiseAddr != "" {
		host, port, err := resolveAdvertise(opts.AdvertiseAddr)
		if err != nil {
			return nil, err
		}
		if port == 0 {
			port = bindPort // memberlist replaces it with the chosen port when bindPort is 0
		}
		cfg.AdvertiseAddr, cfg.AdvertisePort = host, port
	}
	cfg.SecretKey = key
	// A node declared dead may come back at once under a new address (a
	// restarted container): suspicion has already waited long enough.
	cfg.DeadNodeReclaimTime = cfg.ProbeInterval

	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg.Logger = log.New(levelWriter{logger.With("component", "memberlist")}, "", 0)

	now := opts.Now
	if now == nil {
		now = time.Now
	}
	m := &Membership{
		self:    opts.Meta.NodeID,
		boot:    boot,
		logger:  logger,
		now:     now,
		changed: make(chan struct{}, 1),
		refused: make(chan error, 1),
		book:    opts.Addresses,
		members: make(map[string]*entry),
		intents: make(map[string]intent),
	}
	m.meta.Store(&meta)
	m.cluster.Store(&opts.Meta.Cluster)
	d := &delegate{m: m, refusedLogged: map[string]bool{}}
	cfg.Delegate, cfg.Events, cfg.Ping, cfg.Merge, cfg.Alive = d, d, d, d, d
	if opts.Tuning != nil {
		opts.Tuning(cfg)
	}
	m.probe, m.probeWait = cfg.ProbeInterval, cfg.ProbeTimeout
	if m.probe <= 0 {
		return nil, fmt.Errorf("member: ProbeInterval %v must be positive", m.probe)
	}
	m.queue = &memberlist.TransmitLimitedQueue{
		NumNodes:       m.numLive,
		RetransmitMult: cfg.RetransmitMult,
	}

	list, err := memberlist.Create(cfg)
	if err != nil {
		return nil, fmt.Errorf("member: start gossip on %s: %w", bindAddr, err)
	}
	m.list = list
	m.bound = net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.BindPort))

	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.wg.Go(m.watchLoop)
	if len(opts.Join) == 0 {
		m.joined.Store(true)
		m.joinCancel = func() {}
	} else {
		var joinCtx context.Context
		joinCtx, m.joinCancel = context.WithCancel(m.ctx)
		addrs := slices.Clone(opts.Join)
		limit := cmp.Or(opts.SecretMismatchFor, 30*time.Second)
		m.wg.Go(func() { m.joinLoop(joinCtx, addrs, limit) })
	}
	logger.Info("member: gossip started", "node", m.self, "addr", m.bound,
		"advertise", list.LocalNode().Address(), "profile", cmp.Or(opts.Profile, profileLAN), "join", opts.Join)
	return m, nil
}

// LocalNode returns this node.
func (m *Membership) LocalNode() Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.members[m.self]; e != nil {
		return e.Member
	}
	// memberlist registers the local node before Create returns, so this is
	// not reached; keep a sensible answer anyway.
	return Member{Meta: m.localMeta(), Status: StatusAlive}
}

// Members returns every node seen in this process's lifetime, dead and left
// ones included until ForgetAfter has passed since their last change, sorted
// by NodeID.
func (m *Membership) Members() []Member {
	return m.snapshot(func(Member) bool { return true })
}

// Alive returns the members whose status is alive, sorted by NodeID.
func (m *Membership) Alive() []Member {
	return m.snapshot(func(mb Member) bool { return mb.Status == StatusAlive })
}

func (m *Membership) snapshot(keep func(Member) bool) []Member {
	m.mu.Lock()
	m.forgetLocked()
	out := make([]Member, 0, len(m.members))
	for _, e := range m.members {
		if keep(e.Member) {
			out = append(out, e.Member)
		}
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.NodeID, b.NodeID) })
	return out
}

// Get returns the member with the given NodeID.
func (m *Membership) Get(nodeID string) (Member, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.forgetLocked()
	if e := m.members[nodeID]; e != nil {
		return e.Member, true
	}
	return Member{}, false
}

// Boot returns the boot id nodeID gossips. It changes at every start of the
// node, so a different one means the node restarted.
func (m *Membership) Boot(nodeID string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.members[nodeID]; e != nil {
		return e.boot, true
	}
	return "", false
}

// GossipAddr is the address the gossip listeners are bound to, with the
// actual port when BindAddr asked for port 0. The address other nodes dial is
// LocalNode().GossipAddr.
func (m *Membership) GossipAddr() string { return m.bound }

// Joined reports whether this node has been in contact with another node
// (its join succeeded, or another node joined it), or was started without
// Join. It stays true once true.
func (m *Membership) Joined() bool { return m.joined.Load() }

// Leave announces a graceful departure: the other nodes record this node as
// left, not dead. It stops the join loop, gossips the leave and waits until
// it has gone out or timeout (<= 0 means DefaultLeaveTimeout) has passed. It
// does not stop gossiping; call Shutdown next.
func (m *Membership) Leave(timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultLeaveTimeout
	}
	deadline := time.Now().Add(timeout)
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.closed {
		return ErrShutdown
	}
	m.joinCancel()

	m.mu.Lock()
	m.leaving = true
	m.intents[m.self] = intent{boot: m.boot, at: m.now()}
	var peers []*memberlist.Node
	for id, e := range m.members {
		if id != m.self && (e.Status == StatusAlive || e.Status == StatusSuspect) {
			if n := nodeAt(id, e.GossipAddr); n != nil {
				peers = append(peers, n)
			}
		}
	}
	m.mu.Unlock()

	if len(peers) > 0 {
		// The intent goes first, over TCP to every live peer, so that they
		// know it before memberlist's own leave message makes them drop
		// this node. It is also gossiped, and peers that miss both turn
		// "dead" into "left" when it reaches them by push/pull.
		broadcast := newLeaveBroadcast(m.self, m.boot)
		m.queue.QueueBroadcast(broadcast)
		sent := make(chan struct{})
		m.wg.Go(func() {
			defer close(sent)
			m.sendToAll(peers, broadcast.msg)
		})
		t := time.NewTimer(timeout / 2)
		select {
		case <-sent:
		case <-t.C:
		}
		t.Stop()
	}
	if err := m.list.Leave(max(time.Until(deadline), time.Millisecond)); err != nil {
		return fmt.Errorf("member: leave: %w", err)
	}
	m.logger.Info("member: left the cluster", "node", m.self)
	return nil
}

// Shutdown stops gossip and every goroutine of the Membership, without
// telling the others (they will declare this node dead; call Leave first for
// a graceful exit). It is safe to call more than once.
func (m *Membership) Shutdown() error {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	m.cancel()
	err := m.list.Shutdown()
	m.wg.Wait()
	if err != nil {
		return fmt.Errorf("member: shutdown: %w", err)
	}
	return nil
}

// sendToAll sends msg to every peer over TCP, a few at a time.
func (m *Membership) sendToAll(peers []*memberlist.Node, msg []byte) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, leaveSendParallelism)
	for _, n := range peers {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := m.list.SendReliable(n, msg); err != nil {
				m.logger.Debug("member: send leave intent", "to", n.Name, "err", err)
			}
		})
	}
	wg.Wait()
}

// nodeAt is a memberlist.Node for sending to id at addr (host:port).
func nodeAt(id, addr string) *memberlist.Node {
	host, port, err := splitHostPort(addr)
	ip := net.ParseIP(host)
	if err != nil || ip == nil {
		return nil
	}
	return &memberlist.Node{Name: id, Addr: ip, Port: uint16(port)}
}

// notify records that something changed, for WaitChange.
func (m *Membership) notify() {
	select {
	case m.changed <- struct{}{}:
	default: // a change is already pending; its reader will see this one too
	}
}

// WaitChange blocks until any member's status, meta or address changed
// since the last call returned (or since Start), and reports true; false
// when ctx ends or the membership stops. Changes coalesce: a burst gives
// one return, after all of them, and changes made before anyone waits are
// not lost. One reader (the node's) is expected; read Members or Alive
// after it returns.
func (m *Membership) WaitChange(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-m.ctx.Done():
		return false
	case <-m.changed:
		return true
	}
}

// watchLoop derives suspicion from missing probe acks and forgets old dead
// and left members.
func (m *Membership) watchLoop() {
	t := time.NewTicker(m.probe)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		if m.checkSuspects() {
			m.notify()
		}
	}
}

func (m *Membership) checkSuspects() (changed bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	changed = m.forgetLocked()
	if m.leaving {
		return changed // no longer probing: silence means nothing
	}
	// memberlist probes each other live member once per round of that many
	// ticks, in an order reshuffled every round, so two probes of one member
	// can be up to two rounds apart.
	others := m.numLiveLocked() - 1
	limit := time.Duration(suspectRounds*others+1)*m.probe + m.probeWait
	now := time.Now()
	for id, e := range m.members {
		if id == m.self || (e.Status != StatusAlive && e.Status != StatusSuspect) {
			continue
		}
		st := StatusAlive
		if now.Sub(e.evidence) > limit {
			st = StatusSuspect
		}
		if m.setStatusLocked(e, st) {
			changed = true
			m.logger.Debug("member: status", "node", id, "status", st)
		}
	}
	return changed
}

// forgetLocked drops dead and left members, and leave intents, older than
// ForgetAfter.
func (m *Membership) forgetLocked() (changed bool) {
	cutoff := m.now().Add(-ForgetAfter)
	for id, e := range m.members {
		if id != m.self && (e.Status == StatusDead || e.Status == StatusLeft) && e.Since.Before(cutoff) {
			delete(m.members, id)
			if m.book != nil {
				m.book.SetAddr(id, "")
			}
			changed = true
		}
	}
	for id, in := range m.intents {
		if in.at.Before(cutoff) {
			delete(m.intents, id)
		}
	}
	return changed
}

func (m *Membership) setStatusLocked(e *entry, st Status) bool {
	if e.Status == st {
		return false
	}
	e.Status = st
	e.Since = m.now()
	return true
}

// numLive counts members not known to be dead or left, this node included;
// the broadcast queue scales retransmissions with it.
func (m *Membership) numLive() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.numLiveLocked()
}

func (m *Membership) numLiveLocked() int {
	n := 0
	for _, e := range m.members {
		if e.Status == StatusAlive || e.Status == StatusSuspect {
			n++
		}
	}
	return max(n, 1)
}

func (m *Membership) localMeta() Meta {
	var w wireMeta
	_ = json.Unmarshal(*m.meta.Load(), &w)
	return w.Meta
}

// Cluster is this node's cluster id ("" until it has one).
func (m *Membership) Cluster() string { return *m.cluster.Load() }

// SetCluster gives this node the cluster id (after it bootstrapped the
// cluster, or adopted the id of the cluster it joined) and gossips it.
func (m *Membership) SetCluster(id string) error {
	w := wireMeta{Meta: m.localMeta(), Boot: m.boot}
	w.Cluster = id
	b, err := json.Marshal(w)
	if err != nil {
		return err
	}
	if len(b) > memberlist.MetaMaxSize {
		return fmt.Errorf("%w: %d", ErrMetaTooBig, len(b))
	}
	m.meta.Store(&b)
	m.cluster.Store(&id)
	m.mu.Lock()
	if e := m.members[m.self]; e != nil {
		e.Cluster = id
	}
	m.mu.Unlock()
	return m.list.UpdateNode(5 * time.Second)
}

// secretMismatch reports whether a memberlist join error says that the
// other side's gossip could not be decrypted with this node's key, or this
// node's with theirs (memberlist answers an undecryptable push/pull with an
// error message encrypted with its own key, which this node then cannot
// decrypt either), or that only one side encrypts.
func secretMismatch(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	return strings.Contains(s, "no installed keys could decrypt") ||
		strings.Contains(s, "remote state is encrypted and encryption is not configured") ||
		strings.Contains(s, "encryption is configured but remote state is not encrypted")
}

// Refused delivers, once, why this node cannot join: the nodes at
// Options.Join refused its cluster secret for Options.SecretMismatchFor.
// The node should exit with it.
func (m *Membership) Refused() <-chan error { return m.refused }

func (m *Membership) joinLoop(ctx context.Context, addrs []string, mismatchLimit time.Duration) {
	delay := joinBackoffMin
	var mismatchSince time.Time
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil {
			return
		}
		// Being contacted by another node (which sets joined) is no reason
		// to stop: that node may not know the join addresses' cluster
		// (it joined this node while the seed was unreachable), and giving
		// up would leave two gossip clusters for good. Only a join of one
		// of addrs ends the loop.
		n, err := m.list.Join(addrs)
		if n > 0 {
			m.joined.Store(true)
			m.logger.Info("member: joined the cluster", "node", m.self, "contacted", n, "attempt", attempt)
			return
		}
		if err == nil {
			err = errors.New("no node answered")
		}
		if secretMismatch(err) && !m.joined.Load() {
			if mismatchSince.IsZero() {
				mismatchSince = time.Now()
			}
			if time.Since(mismatchSince) >= mismatchLimit {
				e := fmt.Errorf("cluster secret does not match the cluster at %s: every join attempt for %v was refused (%v); "+
					"start this node with the cluster's secret (`edgenode join-token` on a member prints it)",
					strings.Join(addrs, ", "), time.Since(mismatchSince).Round(time.Second), err)
				m.logger.Error("member: "+e.Error(), "node", m.self)
				m.refused <- e
				return
			}
		} else {
			mismatchSince = time.Time{}
		}
		wait := jitter(delay)
		level := slog.LevelWarn
		if m.joined.Load() {
			level = slog.LevelInfo // in a cluster already, through another node
		}
		m.logger.Log(ctx, level, "member: join failed", "node", m.self, "addrs", addrs, "attempt", attempt, "retry_in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(2*delay, joinBackoffMax)
	}
}

// Rejoin contacts addrs (gossip addresses) and merges their view of the
// cluster with this one. Memberlist never probes a node it declared dead, so
// after a partition heals, or after this node restarts with no --join, the
// two sides stay apart until one of them contacts the other: the node calls
// this periodically with the addresses of dead and remembered members.
func (m *Membership) Rejoin(addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, nil
	}
	n, err := m.list.Join(addrs)
	if n > 0 {
		m.joined.Store(true)
	}
	return n, err
}

// gossipKey derives the memberlist encryption key from the cluster secret.
func gossipKey(secret string) ([]byte, error) {
	key, err := hkdf.Key(sha256.New, []byte(secret), nil, gossipKeyInfo, gossipKeyLength)
	if err != nil {
		return nil, fmt.Errorf("member: derive gossip key: %w", err)
	}
	return key, nil
}

func newBootID() (string, error) {
	b := make([]byte, bootIDBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("member: boot id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// jitter adds up to 20% to d, so that nodes started together do not retry in
// step.
func jitter(d time.Duration) time.Duration {
	return d + mrand.N(d/5+1)
}

func splitHostPort(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", portStr)
	}
	return host, port, nil
}

// resolveAdvertise accepts "host" or "host:port" and returns an IP, since
// memberlist advertises IPs only.
func resolveAdvertise(addr string) (string, int, error) {
	host, port := addr, 0
	if h, p, err := splitHostPort(addr); err == nil {
		host, port = h, p
	} else if strings.Count(addr, ":") == 1 {
		return "", 0, fmt.Errorf("member: advertise address %q: %w", addr, err)
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if ip := net.ParseIP(host); ip != nil {
		return ip.String(), port, nil
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return "", 0, fmt.Errorf("member: advertise address %q: cannot resolve: %v", addr, err)
	}
	for _, ip := range ips {
		if ip.To4() != nil {
			return ip.String(), port, nil
		}
	}
	return ips[0].String(), port, nil
}

// levelWriter carries memberlist's log lines ("[WARN] memberlist: ...")
// into slog at their level: warnings and errors show at the default level,
// its routine info and debug lines only with debug logs.
type levelWriter struct{ l *slog.Logger }

func (w levelWriter) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\r\n")
	level := slog.LevelDebug
	for _, lv := range []struct {
		tag   string
		level slog.Level
	}{{"[ERR]", slog.LevelError}, {"[ERROR]", slog.LevelError}, {"[WARN]", slog.LevelWarn}, {"[INFO]", slog.LevelDebug}, {"[DEBUG]", slog.LevelDebug}} {
		if i := strings.Index(line, lv.tag); i >= 0 && i < 32 {
			level = lv.level
			line = strings.TrimSpace(line[i+len(lv.tag):])
			break
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	w.l.Log(context.Background(), level, line)
	return len(p), nil
}

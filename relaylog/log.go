package relaylog

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgenode/edgenode/datadir"
	"github.com/edgenode/edgenode/relaylog/sharedlog"
	"github.com/edgenode/edgenode/relaylog/walstore"
	"github.com/edgenode/edgenode/wire"
	"github.com/edgenode/edgenode/wire/nodewire"
)

// Errors of the Log. They wrap or stand beside the state machine's errors
// (ErrQueueFull, ErrRequestIDReused).
var (
	// ErrNoLeader: the user's shard has no leader right now; retry later.
	ErrNoLeader = errors.New("relaylog: shard has no leader")
	// ErrDevicesUnavailable: a server of the user's shard runs a build
	// without linked devices (a rolling upgrade is under way): the user's
	// devices share one queue until it is done.
	ErrDevicesUnavailable = errors.New("relaylog: linked devices need every replica of the shard upgraded")
	// ErrDeviceRevoked: the device was removed from the user's account
	// (Unlink): it links no more, and what it acknowledges counts no
	// more.
	ErrDeviceRevoked = errors.New("relaylog: the device was revoked")
	// ErrClosed: the log is shutting down.
	ErrClosed = errors.New("relaylog: closed")
	// ErrOverloaded: the shard's proposal queue stayed full until the
	// caller's deadline.
	ErrOverloaded = errors.New("relaylog: shard overloaded")
	// ErrClockSkew: Expire did not run because this node's clock is too far
	// from the other nodes' (Skew).
	ErrClockSkew = errors.New("relaylog: clock skew")
	// ErrReceiptUnsupported: the node that leads the shard a receipt goes
	// to runs a version without that kind of receipt (Receipts.Expired
	// answers it). Expire drops the messages anyway.
	ErrReceiptUnsupported = errors.New("relaylog: the leader of the sender's shard does not know this receipt")
)

// Store kinds.
const (
	// StoreWAL keeps the raft logs of every shard in one append-only log
	// whose concurrent writes share one write and one fdatasync (walstore):
	// the default.
	StoreWAL = "wal"
	// StoreShared keeps the raft logs of every shard in one bbolt file whose
	// concurrent writes share one transaction and one fsync (sharedlog).
	StoreShared = "shared"
	// StoreBoltPerShard is one raft-boltdb file per shard: the reference.
	StoreBoltPerShard = "boltdb"
)

// DefaultShards is the shard count of a new cluster when none is given; see
// docs/PERFORMANCE.md, "Shard count", for the measurements behind it.
const DefaultShards = 16

// Options configure a Log. The zero value of every field but Dir and NodeID
// works.
type Options struct {
	// Dir holds raft logs, snapshots and the shard count. Required.
	Dir string
	// NodeID is this node's raft server id. Required.
	NodeID string
	// Shards is the shard count of a new log; 0 means the count already in
	// Dir, or DefaultShards for a new one. A different count than the one
	// in Dir is an error: the count is fixed when the cluster is created.
	Shards int
	// Store is StoreWAL, StoreShared or StoreBoltPerShard; "" means the
	// store the data dir was created with, or StoreWAL for a new one.
	Store string
	// NoSync skips fsync (tests of logic only; never in production).
	NoSync bool
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxClockSkew bounds the skew of this node's clock to the other
	// nodes' (see Skew); 0 means DefaultMaxClockSkew.
	MaxClockSkew time.Duration
	// MaxQueueDepth bounds the messages waiting for one user; 0 means 10000.
	MaxQueueDepth int
	// Retention is how long an undelivered event is kept; 0 means 30 days.
	Retention time.Duration
	// IdempotencyWindow is how long a (sender, requestId) is remembered; 0
	// means 24 hours.
	IdempotencyWindow time.Duration
	// Registerer receives the log's metrics; nil means none.
	Registerer prometheus.Registerer
	// Transport makes the raft transport of a shard, whose local address
	// must be local (nodewire.RaftAddress of the node id and the data dir's
	// incarnation); nil means an in-memory transport (a node alone).
	Transport func(shard int, local raft.ServerAddress) (raft.Transport, error)
	// Heartbeats, with Transport, opens the streams that carry the
	// heartbeats of all shards to a node in batches (hbbatch.go; the
	// mesh's KindHeartbeat, answered by ServeHeartbeats); nil: every
	// heartbeat is raft's own RPC.
	Heartbeats HeartbeatDial
	// Beat, with Heartbeats, sends a node beat as one authenticated
	// datagram (the mesh's Beat) to nodes whose PeerFeatures include
	// FeatureBeatDatagrams, instead of an empty frame on the heartbeat
	// stream; the beats other nodes send this one go to HeardBeat. nil:
	// node beats go on the streams.
	Beat func(node string) error
	// HeartbeatTimeout is raft's heartbeat, election and leader lease
	// timeout; 0 means 4 s. With Heartbeats, a leader's node going silent
	// makes its followers stand within about a second (stand.go), and
	// this timeout is the fallback (a leader's raft stuck while its node
	// lives, a node of an older version) and how long a leader cut off
	// from its followers keeps leading. Without Heartbeats it is how long
	// followers wait for a dead leader (the e2e failover with 500 ms took
	// up to 1.3 s, with 2 s 3-6 s). A leader's raft heartbeats each
	// follower every tenth to fifth of it, or with Heartbeats of three
	// times it (shard.paceHeartbeats), answered locally.
	HeartbeatTimeout time.Duration
	// Join says this node joins an existing cluster: its shards start empty
	// and wait for their leaders to add them, instead of bootstrapping a
	// one-voter group each.
	Join bool
	// AckBatch is how long an acknowledgement that raises no DELIVERED
	// receipt (a receipt, a sent copy, or a message another device of the
	// user already took) may wait before it is proposed, so that those of
	// a shard share one log entry and a device's repeated ones fold into
	// one command (ackbatch.go). 0: each commits before the call returns.
	AckBatch time.Duration
	// PeerFeatures tells the Features of another node of the cluster (from
	// its gossip), 0 when unknown; nil: every node has this build's. A
	// shard's leader proposes the commands of a feature only once every
	// server of the shard's configuration has it: a replica of an older
	// build would skip the whole entry holding one.
	PeerFeatures func(node string) uint64
}

// Features of this build that change what a shard's entries or snapshots
// hold, so that a leader must know its followers read them (gossiped in
// member.Meta.Features).
const (
	// FeatureLinkedDevices: cmdLink, cmdUnlink, cmdAckDevice, cmdSentCopy,
	// cmdReadSync, the KindSent and KindReadSync events and version 5
	// snapshots (linked.go).
	FeatureLinkedDevices uint64 = 1 << 0
	// FeatureDevicePush: cmdDeviceOf (a push token bound to a linked
	// device), cmdRevoke, version 6 snapshots, and the device presence
	// frames of the cluster's subscribe streams (nodewire.SubDevice).
	FeatureDevicePush uint64 = 1 << 1
	// FeatureAckBatch: the node answers the cluster's ack_devices calls
	// (nodewire.OpAckDevices: several devices' acknowledgements in one
	// call). Nothing replicated changes; other nodes read it in the same
	// gossip.
	FeatureAckBatch uint64 = 1 << 2
	// FeatureBeatDatagrams: the node sends its node beats as datagrams
	// (Options.Beat) and reads those of others (Log.HeardBeat), so a node
	// beats it with datagrams instead of empty heartbeat frames. Nothing
	// replicated changes.
	FeatureBeatDatagrams uint64 = 1 << 3
	// Features is every feature of this build.
	Features = FeatureLinkedDevices | FeatureDevicePush | FeatureAckBatch | FeatureBeatDatagrams
)

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxQueueDepth <= 0 {
		o.MaxQueueDepth = 10000
	}
	if o.Retention <= 0 {
		o.Retention = 30 * 24 * time.Hour
	}
	if o.IdempotencyWindow <= 0 {
		o.IdempotencyWindow = 24 * time.Hour
	}
	if o.HeartbeatTimeout <= 0 {
		// Long: raft's heartbeats wake each shard's leader once per
		// follower every tenth to fifth of it, an idle cluster's largest
		// cost per shard; failover does not wait for it (stand.go).
		o.HeartbeatTimeout = 4 * time.Second
	}
}

// Log is this node's part of the replicated relay log: one raft group per
// shard, each with its state machine and proposer.
type Log struct {
	opts   Options
	gen    *idGen
	shards []*shard
	group  groupStore
	closer []io.Closer

	bootstrapped bool   // Open bootstrapped the shards (Bootstrapped)
	incarnation  string // of the raft data in opts.Dir (Incarnation)
	ackMu        [256]sync.Mutex
	m            *metrics
	commits      *Commits     // what changed, for the layers above (Commits)
	beats        *hbSender    // heartbeat batches (Options.Heartbeats); nil: none
	heard        heardFrom    // when nodes last beat this one (stand.go)
	stood        atomic.Int64 // elections tickLoop started (stand.go)

	stop     chan struct{}
	wg       sync.WaitGroup
	closeMu  sync.Mutex
	isClosed bool

	testHookTransfer func(*shard) // TransferLeadership, just before raft's transfer
}

type meta struct {
	Shards int    `json:"shards"`
	Store  string `json:"store"`
	// Incarnation is created with the raft data and names it: a node whose
	// data dir was lost restarts under its node id with a new incarnation,
	// which the cluster sees in its raft address and treats as a new
	// replica (see cluster placement). Empty in data dirs of versions
	// before incarnations until Open adds one.
	Incarnation string `json:"incarnation,omitempty"`
}

// newIncarnation is 8 random bytes in hex.
func newIncarnation() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("relaylog: incarnation: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Open opens (or creates) the log in opts.Dir and starts its raft groups.
// It returns once every group has started; Ready says when they lead.
func Open(opts Options) (*Log, error) {
	opts.setDefaults()
	if opts.Dir == "" || opts.NodeID == "" {
		return nil, errors.New("relaylog: Dir and NodeID are required")
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("relaylog: %w", err)
	}
	m, err := readOrCreateMeta(opts.Dir, opts.Shards, opts.Store)
	if err != nil {
		return nil, err
	}
	opts.Shards, opts.Store = m.Shards, m.Store
	l := &Log{opts: opts, gen: newIDGen(opts.Shards, opts.Now), stop: make(chan struct{}), m: newMetrics(opts.Registerer), incarnation: m.Incarnation, commits: newCommits()}
	if l.group, err = openGroup(opts); err != nil {
		return nil, err
	}
	if opts.Transport != nil && opts.Heartbeats != nil {
		b := newHBSender(opts.Heartbeats, opts.NodeID, &l.heard, opts.HeartbeatTimeout)
		if opts.Beat != nil {
			b.sendBeat = opts.Beat
			b.datagram = func(node string) bool {
				return opts.PeerFeatures == nil || opts.PeerFeatures(node)&FeatureBeatDatagrams != 0
			}
		}
		b.leads = func(shard int, term uint64) bool {
			// Read only from the tick loop, which starts once every
			// shard is open.
			if shard < 0 || shard >= len(l.shards) {
				return false
			}
			r := l.shards[shard].raft
			return r.State() == raft.Leader && r.CurrentTerm() == term
		}
		l.beats = b
		if opts.Registerer != nil {
			opts.Registerer.MustRegister(
				prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "edgenode_raft_heartbeat_batches_total", Help: "Frames that carried this node's raft heartbeats to another node, each holding the heartbeats of all its shards waiting for that node."}, func() float64 { return float64(b.batches.Load()) }),
				prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "edgenode_raft_heartbeats_batched_total", Help: "Raft heartbeats this node sent in batches."}, func() float64 { return float64(b.beats.Load()) }),
				prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "edgenode_raft_heartbeats_unbatched_total", Help: "Raft heartbeats this node sent as raft's own RPCs because the batch path to their node had failed (a node of an older version, a broken stream)."}, func() float64 { return float64(b.direct.Load()) }),
				prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "edgenode_raft_heartbeats_local_total", Help: "Raft heartbeats of this node's leaders answered locally: the follower's node answered a node beat within 300 ms and the follower a real heartbeat of the same term within 1 s."}, func() float64 { return float64(b.local.Load()) }),
				prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "edgenode_raft_node_beats_total", Help: "Node beats sent as empty heartbeat batches (every 300 ms on each heartbeat stream that carried nothing else, to nodes that take no datagram beats)."}, func() float64 { return float64(b.nodeBeats.Load()) }),
				prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "edgenode_raft_node_beat_datagrams_total", Help: "Node beats sent as datagrams (every 300 ms to each node this one shares a shard with, when that node takes them)."}, func() float64 { return float64(b.datagramBeats.Load()) }),
				prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "edgenode_raft_stood_total", Help: "Elections this node's replicas stood for without waiting for raft's heartbeat timeout: the leader's node went silent, or the replica is its shard's only voter."}, func() float64 { return float64(l.stood.Load()) }),
			)
		}
	}
	if l.group != nil && opts.Registerer != nil {
		g := l.group
		stat := func(i int) func() float64 {
			return func() float64 { v := g.stats(); return float64(v[i]) }
		}
		opts.Registerer.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "edgenode_raftlog_commits_total", Help: "Group commits (one fsync each for the WAL, two for bbolt) of the node's raft log."}, stat(0)),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "edgenode_raftlog_entries_total", Help: "Raft log entries written to the node's raft log."}, stat(1)),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "edgenode_raftlog_commit_seconds_total", Help: "Time spent committing (writing and fsyncing) the node's raft log."}, func() float64 { return float64(g.stats()[2]) / 1e9 }),
		)
	}
	for i := 0; i < opts.Shards; i++ {
		s, err := l.openShard(i)
		if err != nil {
			l.Close()
			return nil, err
		}
		l.shards = append(l.shards, s)
	}
	for _, s := range l.shards {
		l.gen.observe(s.fsm.maxID())
	}
	if l.beats != nil {
		l.wg.Add(1)
		go l.tickLoop()
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edgenode_shards_led", Help: "Shards this node leads and serves."}, func() float64 {
				n := 0
				for _, s := range l.shards {
					if s.serving.Load() {
						n++
					}
				}
				return float64(n)
			}),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edgenode_shards_without_leader", Help: "Shards this node is a member of that know no leader (elections under way, or no quorum)."}, func() float64 {
				n := 0
				for _, s := range l.shards {
					if s.raft.State() != raft.Shutdown && len(s.raft.GetConfiguration().Configuration().Servers) > 0 && l.Leader(s.id) == "" {
						n++
					}
				}
				return float64(n)
			}),
			stateCollector{l},
			appliedCollector{l},
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edgenode_queued_messages", Help: "Messages waiting for their recipients in the queues of the shards this node leads."}, func() float64 {
				var n int64
				for _, s := range l.shards {
					if s.serving.Load() {
						n += s.fsm.queued.Load()
					}
				}
				return float64(n)
			}),
		)
	}
	return l, nil
}

// RepairWAL cuts the write-ahead log of the relay log in dir at its first
// corrupt record (walstore.Options.Repair): that record and everything
// after it are dropped, and what was dropped is returned (nil when the log
// was intact) and logged. The node must not run (the log's lock). Raft
// entries and votes in the dropped part are gone from this node's copy;
// docs/OPERATIONS.md says when that is safe.
func RepairWAL(dir string, logger *slog.Logger) (*walstore.Repaired, error) {
	m, err := readMeta(dir)
	if err != nil {
		return nil, err
	}
	if m.Store != StoreWAL {
		return nil, fmt.Errorf("relaylog: this data dir uses the %q raft store, not the write-ahead log", m.Store)
	}
	db, err := walstore.Open(walstore.Options{Path: filepath.Join(dir, "wal"), Logger: logger, Repair: true})
	if err != nil {
		return nil, fmt.Errorf("relaylog: repair: %w", err)
	}
	r := db.Repaired
	return r, db.Close()
}

// readMeta reads dir/relaylog.json; the error wraps fs.ErrNotExist when
// there is none.
func readMeta(dir string) (meta, error) {
	path := filepath.Join(dir, "relaylog.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return meta{}, fmt.Errorf("relaylog: %w", err)
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil || m.Shards < 1 || m.Shards > MaxShards {
		return meta{}, fmt.Errorf("relaylog: %s is corrupt", path)
	}
	return m, nil
}

func readOrCreateMeta(dir string, shards int, store string) (meta, error) {
	path := filepath.Join(dir, "relaylog.json")
	m, err := readMeta(dir)
	if err == nil {
		if shards != 0 && shards != m.Shards {
			return meta{}, fmt.Errorf("relaylog: this data dir was created with %d shards; --shards %d cannot change it", m.Shards, shards)
		}
		if store != "" && m.Store != store {
			return meta{}, fmt.Errorf("relaylog: this data dir uses the %q raft store, not %q", m.Store, store)
		}
		if m.Incarnation == "" {
			// A data dir of a version before incarnations: its raft data
			// gets one now. Configurations still name this node by its
			// bare id; placement updates the address.
			if m.Incarnation, err = newIncarnation(); err != nil {
				return meta{}, err
			}
			b, _ := json.Marshal(m)
			if err := datadir.WriteFile(path, b); err != nil {
				return meta{}, fmt.Errorf("relaylog: %w", err)
			}
		}
		return m, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return meta{}, err
	}
	if shards == 0 {
		shards = DefaultShards
	}
	if shards < 1 || shards > MaxShards {
		return meta{}, fmt.Errorf("relaylog: shards must be between 1 and %d", MaxShards)
	}
	if store == "" {
		store = StoreWAL
	}
	if store != StoreWAL && store != StoreShared && store != StoreBoltPerShard {
		return meta{}, fmt.Errorf("relaylog: unknown raft store %q", store)
	}
	m = meta{Shards: shards, Store: store}
	if m.Incarnation, err = newIncarnation(); err != nil {
		return meta{}, err
	}
	b, _ := json.Marshal(m)
	// Durable before any shard state exists: a relaylog.json lost to a
	// power cut would let a restart pick other shard counts.
	if err := datadir.WriteFile(path, b); err != nil {
		return meta{}, fmt.Errorf("relaylog: %w", err)
	}
	return m, nil
}

// Shards is the shard count.
func (l *Log) Shards() int { return len(l.shards) }

// ShardOf is the shard that holds user's queue: FNV-1a of the decimal id,
// stable across versions and languages.
func ShardOf(user int64, shards int) int {
	h := fnv.New32a()
	var b [20]byte
	h.Write(strconv.AppendInt(b[:0], user, 10))
	return int(h.Sum32() % uint32(shards))
}

func (l *Log) shardOf(user int64) *shard { return l.shards[ShardOf(user, len(l.shards))] }

// Ready reports whether every shard is led by this node with its state
// machine caught up (on a lone node: every shard can take calls).
func (l *Log) Ready() bool {
	for _, s := range l.shards {
		if !s.serving.Load() {
			return false
		}
	}
	return true
}

// WaitReady blocks until Ready or ctx ends.
func (l *Log) WaitReady(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !l.Ready() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("relaylog: waiting for shard leaders: %w", ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Send commits a message from sender to req.ToUserID and returns it. When
// (sender, req.RequestID) was committed before within the idempotency
// window, it returns that message with created false and commits nothing.
func (l *Log) Send(ctx context.Context, from int64, req wire.NewMessageRequest) (Event, bool, error) {
	s := l.shardOf(req.ToUserID)
	c := command{
		kind: cmdSend, user: req.ToUserID, from: from, reqID: req.RequestID,
		limit: int64(l.opts.MaxQueueDepth), content: req.Content, createdAt: req.CreatedAt,
	}
	if s.serving.Load() && s.fsm.overShare(&c) {
		return Event{}, false, ErrSenderShareFull
	}
	r, err := s.do(ctx, c)
	if err != nil {
		return Event{}, false, err
	}
	return r.ev, r.created, nil
}

// Pending returns up to limit events of user's queue after the cursor, oldest
// first, and whether more follow. Only the shard's serving leader answers:
// a follower's copy may lag.
func (l *Log) Pending(ctx context.Context, user, after int64, limit int) ([]Event, bool, error) {
	s := l.shardOf(user)
	if err := s.check(); err != nil {
		return nil, false, err
	}
	evs, more := s.fsm.pending(user, after, limit)
	return evs, more, nil
}

// LastEventID is the id of the newest event in user's queue on this node's
// copy of the shard, 0 if the queue is empty.
func (l *Log) LastEventID(user int64) int64 { return l.shardOf(user).fsm.lastEvent(user) }

// Depth is how many messages wait for user.
func (l *Log) Depth(user int64) int { return l.shardOf(user).fsm.depth(user) }

// Receipts commits receipts to the queues of senders whose shards another
// node leads: the cluster routes them to those leaders. The log is handed
// one per call (AckVia, ExpireVia, RunExpiry) and keeps none.
type Receipts interface {
	// Delivered commits a DELIVERED receipt to sender: by received ids.
	Delivered(ctx context.Context, sender, by int64, ids []int64) error
	// Expired commits an EXPIRED receipt to sender: ids, sent to by, were
	// dropped undelivered at the end of the retention period;
	// ErrReceiptUnsupported when that leader's version has no EXPIRED
	// receipts.
	Expired(ctx context.Context, sender, by int64, ids []int64) error
}

// Ack is AckVia with every sender's shard led here (a lone node).
func (l *Log) Ack(ctx context.Context, user, upTo int64) (int, error) {
	return l.AckVia(ctx, user, upTo, nil)
}

// AckVia removes every event of user's queue up to and including upTo,
// after committing a DELIVERED receipt to the sender of each message among
// them: here for senders whose shards this node leads, through remote for
// the others (nil: all here). The receipts are committed first, so a crash
// between the two writes can repeat a receipt but never lose one. It
// returns how many events it removed.
func (l *Log) AckVia(ctx context.Context, user, upTo int64, remote Receipts) (int, error) {
	return l.ack(ctx, user, DefaultDevice, false, upTo, remote)
}

// AckDeviceVia is AckVia for device dev of user, linked or not (see
// linked.go): dev's cursor moves to upTo, the events every linked device
// is past leave the queue, and the messages no device had acknowledged
// before raise their DELIVERED receipts (committed first, as AckVia's).
// For a user with no linked device it is AckVia. An acknowledgement by a
// device the user has not linked (or unlinked) changes nothing.
func (l *Log) AckDeviceVia(ctx context.Context, user int64, dev string, upTo int64, remote Receipts) (int, error) {
	return l.ack(ctx, user, dev, true, upTo, remote)
}

func (l *Log) ack(ctx context.Context, user int64, dev string, byDevice bool, upTo int64, remote Receipts) (int, error) {
	mu := &l.ackMu[uint64(user)%uint64(len(l.ackMu))]
	mu.Lock()
	defer mu.Unlock()
	own := l.shardOf(user)
	if err := own.check(); err != nil {
		return 0, err
	}
	if byDevice && own.fsm.isRevoked(user, dev) {
		return 0, ErrDeviceRevoked
	}
	moved, evs, last := own.fsm.toAcknowledge(user, dev, upTo)
	if !moved {
		return 0, nil
	}
	// Only what the queue held is acknowledged: a cursor beyond it must not
	// drop events committed after this read without their receipts.
	upTo = last
	var receipts []command
	for _, e := range evs {
		if e.Kind != KindMessage {
			continue
		}
		i := 0
		for i < len(receipts) && receipts[i].user != e.From {
			i++
		}
		if i == len(receipts) {
			receipts = append(receipts, command{kind: cmdDelivered, user: e.From, from: user})
		}
		receipts[i].ids = append(receipts[i].ids, e.ID)
	}
	// All receipts go into their shards' next batches at once; the ack
	// waits for every one of them to commit.
	// Receipts for senders whose shards another node leads go through
	// remote, concurrently with the local ones.
	props := make([]*proposal, 0, len(receipts))
	var others []command
	var first error
	for _, c := range receipts {
		s := l.shardOf(c.user)
		if !s.serving.Load() && remote != nil {
			others = append(others, c)
			continue
		}
		p, err := s.submit(ctx, c)
		if err != nil {
			first = err
			break
		}
		props = append(props, p)
	}
	errs := make(chan error, len(others))
	if first == nil {
		for _, c := range others {
			go func(c command) { errs <- remote.Delivered(ctx, c.user, c.from, c.ids) }(c)
		}
	}
	for _, p := range props {
		if _, err := p.wait(); err != nil && first == nil {
			first = err
		}
	}
	if first == nil {
		for range others {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
	}
	if first != nil {
		return 0, first
	}
	c := command{kind: cmdAck, user: user, upTo: upTo}
	if byDevice && l.hasFeature(own, FeatureLinkedDevices) {
		c = command{kind: cmdAckDevice, user: user, upTo: upTo, dev: dev, at: l.opts.Now().UnixMilli()}
	}
	if len(receipts) == 0 && l.opts.AckBatch > 0 {
		own.acks.add(c)
		return 0, nil
	}
	r, err := own.do(ctx, c)
	if err != nil {
		return 0, err
	}
	return r.n, nil
}

// Link links device dev to user (linked.go), or marks it seen now if it
// is linked: from then on the user's queue keeps each event until dev
// acknowledged it too (or is gone past the retention period). A device
// linked anew starts after what the user's other devices acknowledged.
// Linking one device more than MaxLinkedPerUser forgets the one seen
// longest ago. It reports whether dev was linked anew.
func (l *Log) Link(ctx context.Context, user int64, dev string) (bool, error) {
	if !ValidDeviceID(dev) && dev != DefaultDevice {
		return false, fmt.Errorf("relaylog: invalid device id %q", dev)
	}
	s := l.shardOf(user)
	if !l.hasFeature(s, FeatureLinkedDevices) {
		return false, ErrDevicesUnavailable
	}
	r, err := s.do(ctx, command{kind: cmdLink, user: user, dev: dev, at: l.opts.Now().UnixMilli()})
	return r.created, err
}

// LinkRefresh is how often Attach marks a linked device seen when the
// device acknowledges nothing: well inside the retention period, after
// which an unseen device is forgotten.
const LinkRefresh = time.Hour

// Attach is what a reader of the queue for device dev of user (a socket,
// a sync) does first: it links dev unless it is linked and was seen
// within LinkRefresh, and returns dev's cursor, after which the reader
// starts. Run on the leader of user's shard.
// ok is false, and the cursor 0, when the shard cannot link devices yet
// (ErrDevicesUnavailable): the user's devices share one queue meanwhile.
func (l *Log) Attach(ctx context.Context, user int64, dev string) (cursor int64, ok bool, err error) {
	s := l.shardOf(user)
	if err := s.check(); err != nil {
		return 0, false, err
	}
	if s.fsm.isRevoked(user, dev) {
		return 0, false, ErrDeviceRevoked
	}
	if d, ok := s.fsm.linked(user, dev); ok && l.opts.Now().UnixMilli()-d.Seen < LinkRefresh.Milliseconds() {
		return max(d.Cursor, s.acks.pending(user, dev)), true, nil
	}
	switch _, err := l.Link(ctx, user, dev); {
	case errors.Is(err, ErrDevicesUnavailable):
		return 0, false, nil
	case err != nil:
		return 0, false, err
	}
	c, _ := s.fsm.cursorOf(user, dev)
	return max(c, s.acks.pending(user, dev)), true, nil
}

// SentCopy queues msg, which sender sent and the recipient's shard
// committed, for sender's devices (KindSent, linked.go): only when sender
// has two or more linked devices, else it writes nothing. It reports
// whether it queued a copy. Run on the leader of sender's shard; a repeat
// (a retried send) queues another copy, which devices drop by message id.
func (l *Log) SentCopy(ctx context.Context, sender int64, msg Event) (bool, error) {
	s := l.shardOf(sender)
	if err := s.check(); err != nil {
		return false, err
	}
	if !s.fsm.otherDevices(sender) || !l.hasFeature(s, FeatureLinkedDevices) {
		return false, nil
	}
	r, err := s.do(ctx, command{kind: cmdSentCopy, user: sender, from: msg.To, upTo: msg.ID, content: msg.Content, createdAt: msg.CreatedAt})
	return err == nil && r.created, err
}

// ReadSync queues reader's read mark of sender's messages up to upTo for
// reader's devices (KindReadSync, linked.go): only when reader has two or
// more linked devices and sender sent reader a message up to upTo within
// the retention period. Run on the leader of reader's shard.
func (l *Log) ReadSync(ctx context.Context, reader, sender, upTo int64) error {
	s := l.shardOf(reader)
	if err := s.check(); err != nil {
		return err
	}
	if !s.fsm.otherDevices(reader) || !l.hasFeature(s, FeatureLinkedDevices) {
		return nil
	}
	_, err := s.do(ctx, command{kind: cmdReadSync, user: reader, from: sender, upTo: upTo})
	return err
}

// AckDevice is AckDeviceVia with every sender's shard led here.
func (l *Log) AckDevice(ctx context.Context, user int64, dev string, upTo int64) (int, error) {
	return l.AckDeviceVia(ctx, user, dev, upTo, nil)
}

// hasFeature reports whether every server of s's configuration has f. A
// yes is kept for featureRecheck (acknowledgements ask on every commit).
func (l *Log) hasFeature(s *shard, f uint64) bool {
	if l.opts.PeerFeatures == nil {
		return true
	}
	now := time.Now().UnixNano()
	if s.featuresUntil.Load() > now && s.features.Load()&f == f {
		return true
	}
	fut := s.raft.GetConfiguration()
	if fut.Error() != nil {
		return false
	}
	all := Features
	for _, srv := range fut.Configuration().Servers {
		if string(srv.ID) != l.opts.NodeID {
			all &= l.opts.PeerFeatures(string(srv.ID))
		}
	}
	s.features.Store(all)
	s.featuresUntil.Store(now + int64(featureRecheck))
	return all&f == f
}

// featureRecheck is how long hasFeature trusts what it found.
const featureRecheck = 5 * time.Second

// Unlink removes device dev from user's devices (revokes it): it holds the
// queue no longer, its push tokens go, and, once every server of the shard
// reads revocations (FeatureDevicePush), it stays out: linking it again,
// acknowledging or registering a token as it answer ErrDeviceRevoked (the
// default device is never kept out). It reports whether dev was linked
// (never while the shard cannot link devices).
func (l *Log) Unlink(ctx context.Context, user int64, dev string) (bool, error) {
	s := l.shardOf(user)
	if !l.hasFeature(s, FeatureLinkedDevices) {
		return false, nil
	}
	// A revoked device gets no more alerts: its push tokens go first, each
	// by a command every replica applies alike.
	for _, d := range s.fsm.devicesOf(user) {
		if d.DeviceID == dev && dev != DefaultDevice {
			if _, err := s.do(ctx, command{kind: cmdDeviceRemove, user: user, device: Device{Token: d.Token}}); err != nil {
				return false, err
			}
		}
	}
	kind := cmdUnlink
	if l.hasFeature(s, FeatureDevicePush) {
		kind = cmdRevoke
	}
	r, err := s.do(ctx, command{kind: kind, user: user, dev: dev, at: l.opts.Now().UnixMilli()})
	return r.n > 0, err
}

// LinkedDevices lists user's linked devices; run on the leader of user's
// shard.
func (l *Log) LinkedDevices(_ context.Context, user int64) ([]Linked, error) {
	s := l.shardOf(user)
	if err := s.check(); err != nil {
		return nil, err
	}
	list := s.fsm.linkedOf(user)
	tokens := s.fsm.devicesOf(user)
	for i := range list {
		for _, t := range tokens {
			if t.DeviceID == list[i].ID {
				list[i].Push = true
			}
		}
	}
	return list, nil
}

// Cursor is device dev's cursor in user's queue on this node's copy of
// the shard, and whether dev is linked: a reader of the queue for dev
// starts after it.
func (l *Log) Cursor(user int64, dev string) (int64, bool) {
	return l.shardOf(user).fsm.cursorOf(user, dev)
}

// Delivered commits a DELIVERED receipt to sender: by received ids. It is
// the remote half of Ack, run on the leader of sender's shard.
func (l *Log) Delivered(ctx context.Context, sender, by int64, ids []int64) error {
	_, err := l.shardOf(sender).do(ctx, command{kind: cmdDelivered, user: sender, from: by, ids: ids})
	return err
}

// Expired commits an EXPIRED receipt to sender: ids, sent to by, were
// dropped undelivered from by's queue at the end of the retention period.
// It is the remote half of Expire, run on the leader of sender's shard.
func (l *Log) Expired(ctx context.Context, sender, by int64, ids []int64) error {
	_, err := l.shardOf(sender).do(ctx, command{kind: cmdExpired, user: sender, from: by, ids: ids})
	return err
}

// MarkRead commits a READ receipt to sender: reader has read every message
// from sender up to upTo. Repeating it, or an older mark, changes nothing.
func (l *Log) MarkRead(ctx context.Context, reader, sender, upTo int64) error {
	// A read mark names a conversation with a message from sender: a mark
	// to anyone else creates nothing. Checked where the reader's shard is
	// served here (a cluster checks it first at the reader's shard leader,
	// Contact).
	if rs := l.shardOf(reader); rs.serving.Load() {
		if last, ok := rs.fsm.hasContact(reader, sender); !ok || upTo > last {
			return nil
		}
	}
	_, err := l.shardOf(sender).do(ctx, command{kind: cmdRead, user: sender, from: reader, upTo: upTo})
	return err
}

// Contact reports, on the leader of reader's shard, the id of the newest
// message sender sent reader within the retention period (false: none).
// A *NotLeaderError when this node does not serve reader's shard.
func (l *Log) Contact(reader, sender int64) (int64, bool, error) {
	s := l.shardOf(reader)
	if !s.serving.Load() {
		return 0, false, &NotLeaderError{Shard: s.id, Leader: l.Leader(s.id)}
	}
	id, ok := s.fsm.hasContact(reader, sender)
	return id, ok, nil
}

// Contacts reports, on the leader of shard, for each (reader, sender) pair
// of pairs (flat: reader, sender, reader, sender, ...; every reader a user
// of shard) whether sender sent reader a message within the retention
// period. A *NotLeaderError when this node does not serve the shard.
func (l *Log) Contacts(shard int, pairs []int64) ([]bool, error) {
	if shard < 0 || shard >= len(l.shards) {
		return nil, fmt.Errorf("relaylog: no shard %d", shard)
	}
	s := l.shards[shard]
	if !s.serving.Load() {
		return nil, &NotLeaderError{Shard: s.id, Leader: l.Leader(s.id)}
	}
	return s.fsm.contactPairs(pairs), nil
}

// ContactQuery is one shard's part of the question "does a viewer share a
// conversation with each of these users": Pairs for Contacts, and for each
// pair the index of the user it answers for.
type ContactQuery struct {
	Shard int
	Pairs []int64
	Index []int
}

// ContactQueries splits "does viewer share a conversation (a message in
// either direction within the retention period) with each of users" into
// one query per shard: a message from u to viewer is a contact in viewer's
// shard, one from viewer to u in u's. A user shares a conversation with
// themself: those are true in self, and asked nowhere.
func (l *Log) ContactQueries(viewer int64, users []int64) (qs []ContactQuery, self []bool) {
	self = make([]bool, len(users))
	at := make(map[int]int) // shard → index in qs
	add := func(shard int, reader, sender int64, i int) {
		k, ok := at[shard]
		if !ok {
			k = len(qs)
			at[shard] = k
			qs = append(qs, ContactQuery{Shard: shard})
		}
		qs[k].Pairs = append(qs[k].Pairs, reader, sender)
		qs[k].Index = append(qs[k].Index, i)
	}
	home := l.ShardFor(viewer)
	for i, u := range users {
		if u == viewer {
			self[i] = true
			continue
		}
		add(home, viewer, u, i)
		add(l.ShardFor(u), u, viewer, i)
	}
	return qs, self
}

// Shared reports, for each of users, whether viewer shares a conversation
// with them (ContactQueries), asking the shards this node serves: a
// *NotLeaderError for any other.
func (l *Log) Shared(_ context.Context, viewer int64, users []int64) ([]bool, error) {
	qs, out := l.ContactQueries(viewer, users)
	for _, q := range qs {
		flags, err := l.Contacts(q.Shard, q.Pairs)
		if err != nil {
			return nil, err
		}
		for j, f := range flags {
			out[q.Index[j]] = out[q.Index[j]] || f
		}
	}
	return out, nil
}

// RegisterDevice stores a push token for user (moving it from any other
// user of the same shard). d.DeviceID binds the token to that linked
// device of the user, whose cursor then decides its alerts (DevicePushState);
// until every server of the shard reads bindings (FeatureDevicePush) the
// token is stored unbound, as the user's.
func (l *Log) RegisterDevice(ctx context.Context, user int64, d Device) error {
	if d.DeviceID != DefaultDevice && !ValidDeviceID(d.DeviceID) {
		return fmt.Errorf("relaylog: invalid device id %q", d.DeviceID)
	}
	s := l.shardOf(user)
	if s.serving.Load() && s.fsm.isRevoked(user, d.DeviceID) {
		return ErrDeviceRevoked
	}
	kind := cmdDevice
	if d.DeviceID != DefaultDevice && l.hasFeature(s, FeatureDevicePush) {
		kind = cmdDeviceOf
	} else {
		d.DeviceID = DefaultDevice
	}
	_, err := s.do(ctx, command{kind: kind, user: user, device: d, at: l.opts.Now().UnixMilli()})
	return err
}

// TokenOwner is the user of shard a push token is registered for (0 for
// none), read on the shard's leader: a *NotLeaderError when this node does
// not serve the shard.
func (l *Log) TokenOwner(shard int, token string) (int64, error) {
	if shard < 0 || shard >= len(l.shards) {
		return 0, fmt.Errorf("relaylog: no shard %d", shard)
	}
	s := l.shards[shard]
	if !s.serving.Load() {
		return 0, &NotLeaderError{Shard: shard, Leader: l.Leader(shard)}
	}
	return s.fsm.tokenOwner(token), nil
}

// UnregisterDevice forgets user's push token; it is not an error if the
// token was not registered.
func (l *Log) UnregisterDevice(ctx context.Context, user int64, token string) error {
	_, err := l.shardOf(user).do(ctx, command{kind: cmdDeviceRemove, user: user, device: Device{Token: token}})
	return err
}

// RemoveDeviceIfUnchanged forgets user's push token unless it was
// registered again after registeredAt (Device.RegisteredAt): push removes a
// token the provider rejected without racing a fresh registration.
func (l *Log) RemoveDeviceIfUnchanged(ctx context.Context, user int64, token string, registeredAt int64) error {
	if registeredAt <= 0 {
		registeredAt = 1
	}
	_, err := l.shardOf(user).do(ctx, command{kind: cmdDeviceRemove, user: user, device: Device{Token: token}, at: registeredAt})
	return err
}

// PushState is what a push alert for a user needs, read on the leader of
// the user's shard.
type PushState struct {
	Unread int   // messages waiting in the queue
	Latest Event // the newest of them (zero if none)
	Pushed int64 // the user's devices were alerted of messages up to this id
}

// PushState returns user's push state from this node's copy of the shard:
// the messages no device of the user acknowledged.
func (l *Log) PushState(user int64) PushState {
	n, ev, p := l.shardOf(user).fsm.pushState(user)
	return PushState{Unread: n, Latest: ev, Pushed: p}
}

// DevicePushState is PushState as linked device dev of user sees it: the
// messages after dev's cursor, which the other devices may have
// acknowledged already. For a device not linked (a token of a user without
// linked devices, or of a device not connected yet) it is PushState.
func (l *Log) DevicePushState(user int64, dev string) PushState {
	n, ev, p := l.shardOf(user).fsm.devicePushState(user, dev)
	return PushState{Unread: n, Latest: ev, Pushed: p}
}

// MarkPushed records that user's devices were alerted of the messages up
// to upTo, so that a new leader of the shard does not alert them again.
func (l *Log) MarkPushed(ctx context.Context, user, upTo int64) error {
	_, err := l.shardOf(user).do(ctx, command{kind: cmdPushed, user: user, upTo: upTo})
	return err
}

// PushDue reports whether user's newest message is newer than the user's
// last push alert while some device of the user may lack it (from this
// node's copy of the shard): cheap, for every commit.
func (l *Log) PushDue(user int64) bool { return l.shardOf(user).fsm.pushDue(user) }

// AwaitingPush lists the users of shard with a message newer than their
// last push alert that some device may lack (from this node's copy of the
// shard).
func (l *Log) AwaitingPush(shard int) []int64 { return l.shards[shard].fsm.awaitingPush() }

// Devices returns user's registered push devices.
func (l *Log) Devices(user int64) []Device { return l.shardOf(user).fsm.devicesOf(user) }

// SetLastConnected records that user was connected at t.
func (l *Log) SetLastConnected(ctx context.Context, user int64, t time.Time) error {
	_, err := l.shardOf(user).do(ctx, command{kind: cmdLastConnected, user: user, at: t.UnixMilli()})
	return err
}

// LastConnected is when user was last seen connected, if ever.
func (l *Log) LastConnected(user int64) (time.Time, bool) {
	ms, ok := l.shardOf(user).fsm.lastConnected(user)
	if !ok {
		return time.Time{}, false
	}
	return time.UnixMilli(ms), true
}

// StateSizes counts the state held by this node's replicas of every shard
// (led or followed): what its memory and snapshots grow with.
func (l *Log) StateSizes() StateSizes {
	var t StateSizes
	for _, s := range l.shards {
		z := s.fsm.sizes()
		t.Queues += z.Queues
		t.Senders += z.Senders
		t.IdempotencyRecords += z.IdempotencyRecords
		t.Devices += z.Devices
		t.LastConnected += z.LastConnected
		t.ReadMarks += z.ReadMarks
		t.Contacts += z.Contacts
		t.Linked += z.Linked
		t.Revoked += z.Revoked
	}
	return t
}

// Snapshot makes every shard take a raft snapshot now (and truncate its log).
func (l *Log) Snapshot() error {
	for _, s := range l.shards {
		if err := s.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
			return fmt.Errorf("relaylog: snapshot shard %d: %w", s.id, err)
		}
	}
	return nil
}

// Expire is ExpireVia with every sender's shard led here and no other
// node's clock to compare with (a lone node).
func (l *Log) Expire(ctx context.Context) error { return l.ExpireVia(ctx, nil, nil) }

// Skew is how far this node's clock (Options.Now) is from the other
// nodes' (cluster/member's Membership.ClockSkew: the offset to at least
// half of them, measured over gossip); ok is false while unmeasured. When
// it exceeds MaxClockSkew expiry runs nothing (ErrClockSkew): a leader
// whose clock runs days ahead must not drop messages, nor idempotency
// records, that are not old.
type Skew interface {
	ClockSkew() (skew time.Duration, ok bool)
}

// ExpireVia drops events older than the retention period and idempotency
// records older than the window, on every shard this node leads.
// RunExpiry runs it every minute. It runs nothing while skew (nil: not
// checked) says this node's clock is off.
//
// The senders of the messages it drops (undelivered by definition) are
// told: on each shard, the messages the cutoff drops are read first, and
// an EXPIRED receipt per sender and recipient (at most MaxExpiredIDs ids
// each) is committed to the sender's shard, here or through remote (nil:
// every shard is here), before cmdExpire drops them, so that a crash
// between the two writes can repeat a receipt but never lose one. A run
// tells of at most MaxExpiringPerRun messages per shard; the cutoff stops
// at the first message left out, and the next run goes on from there. A
// receipt that fails to commit holds its messages back too (the cutoff
// stops at its first id) for the next run, for up to MaxExpiryHold; past
// that, or when the sender's shard leader runs a version without EXPIRED
// receipts, the messages are dropped anyway and the failure is logged.
func (l *Log) ExpireVia(ctx context.Context, remote Receipts, skew Skew) error {
	if err := l.clockOK(skew); err != nil {
		l.m.expirySkipped.Inc()
		return err
	}
	now := l.opts.Now()
	retainID, idemID := minIDAt(now.Add(-l.opts.Retention)), minIDAt(now.Add(-l.opts.IdempotencyWindow))
	var first error
	for _, s := range l.shards {
		if s.raft.State() != raft.Leader {
			continue
		}
		if err := l.expireShard(ctx, s, now, retainID, idemID, remote); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Bounds of one expiry run, per shard.
const (
	// MaxExpiringPerRun is how many dropped messages one run tells their
	// senders of, per shard; more wait for the next run (a minute later).
	MaxExpiringPerRun = 10000
	// MaxExpiredIDs is how many message ids one EXPIRED receipt names.
	MaxExpiredIDs = 1000
	// MaxExpiryHold is how long receipts that fail to commit may hold
	// back the expiry of their messages.
	MaxExpiryHold = time.Hour
	// remoteExpiredCalls bounds the EXPIRED receipts one run has in
	// flight to other nodes.
	remoteExpiredCalls = 16
)

func (l *Log) expireShard(ctx context.Context, s *shard, now time.Time, retainID, idemID int64, remote Receipts) error {
	// What expires is read from the state machine: only a leader that has
	// applied everything committed before it sees every message.
	if err := s.check(); err != nil {
		return err
	}
	msgs, cutoff := s.fsm.expiring(retainID, MaxExpiringPerRun)
	receipts := expiredReceipts(msgs)
	errs := l.commitExpired(ctx, receipts, remote)
	held := cutoff
	var failed, unsupported int
	var firstErr error
	for i, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, ErrReceiptUnsupported):
			unsupported += len(receipts[i].ids)
		default:
			failed += len(receipts[i].ids)
			held = min(held, receipts[i].ids[0])
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	if unsupported > 0 {
		l.opts.Logger.Warn("relaylog: expired messages dropped without EXPIRED receipts: the sender's shard leader runs a version without them",
			"shard", s.id, "messages", unsupported)
	}
	if failed > 0 {
		since := s.expiryHeld.Load()
		if since == 0 {
			since = now.UnixNano()
			s.expiryHeld.Store(since)
		}
		if now.Sub(time.Unix(0, since)) < MaxExpiryHold {
			l.opts.Logger.Warn("relaylog: EXPIRED receipts not committed; their messages stay queued for the next expiry run",
				"shard", s.id, "messages", failed, "err", firstErr)
			cutoff = held
		} else {
			l.opts.Logger.Error("relaylog: EXPIRED receipts not committed for too long; their messages are dropped without them",
				"shard", s.id, "messages", failed, "hold", MaxExpiryHold, "err", firstErr)
		}
	} else {
		s.expiryHeld.Store(0)
	}
	if _, err := s.do(ctx, command{kind: cmdExpire, upTo: cutoff, at: idemID}); err != nil {
		return err
	}
	return nil
}

// expiredReceipts groups dropped messages (oldest first) into cmdExpired
// commands, one per sender and recipient and per MaxExpiredIDs ids, each
// with its ids in increasing order.
func expiredReceipts(msgs []expiringMsg) []command {
	type pair struct{ from, to int64 }
	at := make(map[pair]int)
	var out []command
	for _, m := range msgs {
		k := pair{m.from, m.to}
		i, ok := at[k]
		if !ok || len(out[i].ids) >= MaxExpiredIDs {
			i = len(out)
			at[k] = i
			out = append(out, command{kind: cmdExpired, user: m.from, from: m.to})
		}
		out[i].ids = append(out[i].ids, m.id)
	}
	return out
}

// commitExpired commits receipts, each to its sender's shard: local ones
// as proposals, all at once, the others through remote, a
// few at a time. It returns each receipt's error.
func (l *Log) commitExpired(ctx context.Context, receipts []command, remote Receipts) []error {
	errs := make([]error, len(receipts))
	props := make([]*proposal, len(receipts))
	var others []int
	for i, c := range receipts {
		s := l.shardOf(c.user)
		if !s.serving.Load() && remote != nil {
			others = append(others, i)
			continue
		}
		props[i], errs[i] = s.submit(ctx, c)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, remoteExpiredCalls)
	for _, i := range others {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c := &receipts[i]
			errs[i] = remote.Expired(ctx, c.user, c.from, c.ids)
		})
	}
	for i, p := range props {
		if p != nil {
			_, errs[i] = p.wait()
		}
	}
	wg.Wait()
	return errs
}

// DefaultMaxClockSkew is Options.MaxClockSkew when 0.
const DefaultMaxClockSkew = time.Minute

// clockOK says whether this node's clock agrees with the other nodes' well
// enough to decide what has expired.
func (l *Log) clockOK(s Skew) error {
	if s == nil {
		return nil
	}
	skew, ok := s.ClockSkew()
	limit := cmp.Or(l.opts.MaxClockSkew, DefaultMaxClockSkew)
	if !ok || (skew <= limit && skew >= -limit) {
		return nil
	}
	dir := "ahead of"
	if skew > 0 {
		dir = "behind"
	}
	return fmt.Errorf("%w: this node's clock is %v %s the other nodes' (more than %v): expiry skipped, so that nothing expires early or late; synchronise its clock (NTP)",
		ErrClockSkew, skew.Abs().Round(time.Second), dir, limit)
}

// RunExpiry runs ExpireVia every minute until ctx ends or the log
// closes. The node runs it with the cluster's Receipts and the
// membership's clock skew.
func (l *Log) RunExpiry(ctx context.Context, remote Receipts, skew Skew) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.stop:
			return
		case <-t.C:
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			if err := l.ExpireVia(rctx, remote, skew); err != nil {
				l.opts.Logger.Warn("relaylog: expiry failed", "err", err)
			}
			cancel()
		}
	}
}

// Close stops the proposers and raft groups and closes the stores. Calls in
// flight fail with ErrClosed.
func (l *Log) Close() error {
	l.closeMu.Lock()
	if l.isClosed {
		l.closeMu.Unlock()
		return nil
	}
	l.isClosed = true
	close(l.stop)
	l.closeMu.Unlock()
	l.wg.Wait()
	var first error
	for _, s := range l.shards {
		if err := s.close(); err != nil && first == nil {
			first = err
		}
	}
	if l.beats != nil {
		l.beats.close()
	}
	for _, c := range l.closer {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	if l.group != nil {
		if err := l.group.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// walPace is the WAL's pace (walstore.Options.Pace): under load, a group
// commit begins no sooner than this after the last one, so that batches
// grow and fsyncs fall. One node at 2,000 sends/s: a sixth less CPU, the
// same p50, a lower p99 (docs/PERFORMANCE.md); a quiet log, whose
// commits hold one request each, never waits.
const walPace = time.Millisecond

// openGroup opens the raft log shared by all shards (nil for the store
// with one bolt file per shard).
func openGroup(opts Options) (groupStore, error) {
	switch opts.Store {
	case StoreWAL:
		db, err := walstore.Open(walstore.Options{Path: filepath.Join(opts.Dir, "wal"), Logger: opts.Logger, NoSync: opts.NoSync, Pace: walPace})
		if err != nil {
			return nil, fmt.Errorf("relaylog: open raft log: %w", err)
		}
		return walGroup{db}, nil
	case StoreShared:
		db, err := sharedlog.Open(sharedlog.Options{Path: filepath.Join(opts.Dir, "raft.db"), Logger: opts.Logger, NoSync: opts.NoSync})
		if err != nil {
			return nil, fmt.Errorf("relaylog: open shared log: %w", err)
		}
		return sharedGroup{db}, nil
	}
	return nil, nil
}

// shardStores builds shard i's raft stores: its log (cached) and stable
// store, from the node's shared log or its own bolt file, its snapshot
// store, and its raft logger.
func (l *Log) shardStores(i int) (raft.LogStore, raft.StableStore, raft.SnapshotStore, hclog.Logger, error) {
	o := &l.opts
	var logs raft.LogStore
	var stable raft.StableStore
	if l.group != nil {
		logs, stable = l.group.shard(i)
	} else {
		dir := filepath.Join(o.Dir, fmt.Sprintf("shard-%03d", i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, nil, nil, nil, fmt.Errorf("relaylog: %w", err)
		}
		bs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db"), NoSync: o.NoSync})
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("relaylog: shard %d bolt store: %w", i, err)
		}
		l.closer = append(l.closer, bs)
		logs, stable = bs, bs
	}
	cached, err := raft.NewLogCache(1024, logs)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	snapDir := filepath.Join(o.Dir, "snapshots", fmt.Sprintf("shard-%03d", i))
	level := raftLevel(o.Logger)
	hl := hclog.NewInterceptLogger(&hclog.LoggerOptions{Name: fmt.Sprintf("raft.shard-%d", i), Level: level, Output: io.Discard})
	hl.RegisterSink(slogSink{l: o.Logger, min: level})
	snaps, err := raft.NewFileSnapshotStoreWithLogger(snapDir, 2, hl)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("relaylog: shard %d snapshots: %w", i, err)
	}
	return cached, stable, snaps, hl, nil
}

// RecoverShards makes nodeID the only voter of the given shards (every
// shard with state when shards is empty) in the relay log at dir, with
// raft.RecoverCluster: the shard's snapshot and log are applied to a fresh
// state machine, a snapshot is taken, and a configuration naming only this
// node is written. It is for a shard that lost a majority of its voters for
// good; the node must be stopped (the log's lock). Placement adds other
// voters again once the node runs. The shard's other old voters must never
// come back with their data (wipe them). It returns the shards recovered.
func RecoverShards(dir, nodeID string, shards []int, logger *slog.Logger) ([]int, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := readMeta(dir)
	if err != nil {
		return nil, err
	}
	for _, i := range shards {
		if i < 0 || i >= m.Shards {
			return nil, fmt.Errorf("relaylog: shard %d does not exist (this node has shards 0 to %d)", i, m.Shards-1)
		}
	}
	if len(shards) == 0 {
		for i := range m.Shards {
			shards = append(shards, i)
		}
	}
	l := &Log{opts: Options{Dir: dir, NodeID: nodeID, Shards: m.Shards, Store: m.Store, Logger: logger}}
	if l.group, err = openGroup(l.opts); err != nil {
		return nil, err
	}
	defer func() {
		for _, c := range l.closer {
			c.Close()
		}
		if l.group != nil {
			l.group.Close()
		}
	}()
	var done []int
	for _, i := range shards {
		logs, stable, snaps, hl, err := l.shardStores(i)
		if err != nil {
			return done, err
		}
		exists, err := raft.HasExistingState(logs, stable, snaps)
		if err != nil {
			return done, fmt.Errorf("relaylog: shard %d state: %w", i, err)
		}
		if !exists {
			logger.Warn("recover: shard has no state on this node; skipped", "shard", i)
			continue
		}
		cfg := raft.DefaultConfig()
		cfg.LocalID = raft.ServerID(nodeID)
		cfg.Logger = hl
		addr := raft.ServerAddress(nodewire.RaftAddress(nodeID, m.Incarnation))
		_, trans := raft.NewInmemTransport(addr)
		conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(nodeID), Address: addr}}}
		if err := raft.RecoverCluster(cfg, newFSM(i, m.Shards, nil), logs, stable, snaps, trans, conf); err != nil {
			return done, fmt.Errorf("relaylog: recover shard %d: %w", i, err)
		}
		logger.Warn("recover: this node is now the only voter of the shard", "shard", i, "node", nodeID)
		done = append(done, i)
	}
	return done, nil
}

func (l *Log) openShard(i int) (*shard, error) {
	o := &l.opts
	cached, stable, snaps, hl, err := l.shardStores(i)
	if err != nil {
		return nil, err
	}
	var trans raft.Transport
	var started atomic.Pointer[raft.Raft] // for the vote guard
	var guard *voteGuard                  // where batched heartbeats go in
	if o.Transport != nil {
		if trans, err = o.Transport(i, l.Address()); err != nil {
			return nil, fmt.Errorf("relaylog: shard %d transport: %w", i, err)
		}
		sh := SerialHeartbeats(trans)
		if st, ok := sh.(serialHeartbeats); ok && l.beats != nil {
			st.shard, st.beats = i, l.beats
			sh = st
		}
		trans = guardVotes(sh, func() bool {
			r := started.Load()
			return r == nil || len(r.GetConfiguration().Configuration().Servers) == 0
		})
		guard, _ = trans.(*voteGuard)
	} else {
		_, trans = raft.NewInmemTransport(l.Address())
	}
	cfg := raft.DefaultConfig()
	cfg.LocalID = raft.ServerID(o.NodeID)
	cfg.Logger = hl
	cfg.HeartbeatTimeout = o.HeartbeatTimeout
	cfg.ElectionTimeout = o.HeartbeatTimeout
	// A leader steps down after a full heartbeat timeout without a quorum
	// (raft's default is half of it): a GC pause or an fsync stall on a
	// busy host should not cost an election.
	cfg.LeaderLeaseTimeout = o.HeartbeatTimeout
	// A leader sends each follower an AppendEntries every CommitTimeout
	// (randomized up to twice) even when idle, so that followers learn
	// the commit index when writes stop (raft's default, 50 ms, is as many
	// RPCs as the heartbeats themselves, and these cannot be answered
	// locally as heartbeats are: hbbatch.go). Nothing here waits for a
	// follower to apply: the leader's commit stream wakes sockets and
	// homes, and writes carry the commit index as they flow; an idle
	// follower applies the last entries within 5-10 s.
	cfg.CommitTimeout = min(5*o.HeartbeatTimeout/2, 5*time.Second)
	// raft's default. Entries are already batches of commands (proposeLoop),
	// and raft allocates a slice of this many pointers on every commit it
	// hands to the FSM: at 512 that was 4 KiB per commit, 43% of a one-node
	// soak's allocations (0.91 of 2.1 GB in 30 s at 2,000 sends/s) and the
	// main driver of its GC cycles.
	cfg.MaxAppendEntries = 64
	cfg.BatchApplyCh = true
	cfg.SnapshotThreshold = 16384
	cfg.TrailingLogs = 8192
	cfg.SnapshotInterval = 2 * time.Minute
	notify := make(chan bool, 16)
	cfg.NotifyCh = notify

	f := newFSM(i, o.Shards, l.commits.events)
	exists, err := raft.HasExistingState(cached, stable, snaps)
	if err != nil {
		return nil, fmt.Errorf("relaylog: shard %d state: %w", i, err)
	}
	if !exists && !o.Join {
		conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: cfg.LocalID, Address: trans.LocalAddr()}}}
		if err := raft.BootstrapCluster(cfg, cached, stable, snaps, trans, conf); err != nil {
			return nil, fmt.Errorf("relaylog: shard %d bootstrap: %w", i, err)
		}
		l.bootstrapped = true
	}
	r, err := raft.NewRaft(cfg, f, cached, stable, snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("relaylog: shard %d raft: %w", i, err)
	}
	started.Store(r)
	s := newShard(i, r, f, l, notify)
	s.guard = guard
	return s, nil
}

// raftLevel is the least severe of raft's records l gets. raft's warnings
// are its election decisions (a vote or pre-vote refused, and why; an
// election started or aborted): rare, and what explains a shard left
// without a leader, so they show from info up; its debug lines (each vote
// counted) with debug logs; at warn and error, only its errors.
func raftLevel(l *slog.Logger) hclog.Level {
	switch {
	case l.Enabled(context.Background(), slog.LevelDebug):
		return hclog.Debug
	case l.Enabled(context.Background(), slog.LevelInfo):
		return hclog.Warn
	}
	return hclog.Error
}

// slogSink carries raft's hclog records into slog at their own level,
// with their fields as attributes.
type slogSink struct {
	l   *slog.Logger
	min hclog.Level
}

func (s slogSink) Accept(name string, level hclog.Level, msg string, args ...interface{}) {
	if level < s.min {
		return
	}
	sl := slog.LevelError
	switch {
	case level <= hclog.Debug:
		sl = slog.LevelDebug
	case level == hclog.Info:
		sl = slog.LevelInfo
	case level == hclog.Warn:
		sl = slog.LevelWarn
	}
	attrs := make([]any, 0, 4+len(args))
	attrs = append(attrs, "component", "raft", "logger", name)
	s.l.Log(context.Background(), sl, msg, append(attrs, args...)...)
}

// NotLeaderError says which node leads a shard this node cannot serve.
type NotLeaderError struct {
	Shard  int
	Leader string // node id; "" when no leader is known
}

func (e *NotLeaderError) Error() string {
	if e.Leader == "" {
		return fmt.Sprintf("relaylog: shard %d has no leader", e.Shard)
	}
	return fmt.Sprintf("relaylog: shard %d is led by %s", e.Shard, e.Leader)
}

// Unwrap makes every NotLeaderError an ErrNoLeader for callers that only
// need to know the call could not be served here.
func (e *NotLeaderError) Unwrap() error { return ErrNoLeader }

// ShardFor is the shard of user.
func (l *Log) ShardFor(user int64) int { return ShardOf(user, len(l.shards)) }

// Raft is the raft group of a shard, for the cluster's placement.
func (l *Log) Raft(shard int) *raft.Raft { return l.shards[shard].raft }

// Serving reports whether this node leads shard with its state caught up.
func (l *Log) Serving(shard int) bool { return l.shards[shard].serving.Load() }

// Leader is the node id of shard's leader as this node knows it.
func (l *Log) Leader(shard int) string {
	_, id := l.shards[shard].raft.LeaderWithID()
	return string(id)
}

// LeaderTerm is shard's leader as this node knows it and the raft term it
// knows it in. A node that was paused still names the leader it last heard
// from, in the term it last saw; a leader elected since has a higher term.
// The two are read as a consistent pair: when the term moves between the
// reads (an election here), the leader is reported unknown.
func (l *Log) LeaderTerm(shard int) (string, uint64) {
	r := l.shards[shard].raft
	term := r.CurrentTerm()
	_, id := r.LeaderWithID()
	if r.CurrentTerm() != term {
		return "", r.CurrentTerm()
	}
	return string(id), term
}

// NodeID is this node's id.
func (l *Log) NodeID() string { return l.opts.NodeID }

// Incarnation names this node's raft data: created with it, kept in
// relaylog.json, new when the data dir is new.
func (l *Log) Incarnation() string { return l.incarnation }

// Address is this node's raft server address in every shard: the node id
// and the incarnation (nodewire.RaftAddress).
func (l *Log) Address() raft.ServerAddress {
	return raft.ServerAddress(nodewire.RaftAddress(l.opts.NodeID, l.incarnation))
}

// Bootstrap makes this node the sole voter of every shard that has no
// state yet (a node opened with Join waiting for --bootstrap-expect nodes);
// placement then adds the others. Shards with state are left alone.
// Bootstrapped reports whether Open created the shards here (a new data dir
// with Options.Join false): this node started a new cluster.
func (l *Log) Bootstrapped() bool { return l.bootstrapped }

func (l *Log) Bootstrap() error {
	for _, s := range l.shards {
		conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(l.opts.NodeID), Address: l.Address()}}}
		if err := s.raft.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("relaylog: bootstrap shard %d: %w", s.id, err)
		}
	}
	return nil
}

// CheckServing fails with a *NotLeaderError unless this node serves user's
// shard (for reads of replicated state a follower may hold stale).
func (l *Log) CheckServing(user int64) error { return l.shardOf(user).check() }

// Revoked reports whether device dev of user is revoked (kept out).
func (l *Log) Revoked(user int64, dev string) bool { return l.shardOf(user).fsm.isRevoked(user, dev) }

// groupStore is a raft log shared by every shard of the node.
type groupStore interface {
	shard(i int) (raft.LogStore, raft.StableStore)
	stats() [3]uint64 // commits, entries, commit nanoseconds
	Close() error
}

type walGroup struct{ *walstore.DB }

func (g walGroup) shard(i int) (raft.LogStore, raft.StableStore) { s := g.Shard(i); return s, s }
func (g walGroup) stats() [3]uint64 {
	st := g.Stats()
	return [3]uint64{st.Commits, st.Entries, st.SyncNanos}
}

type sharedGroup struct{ *sharedlog.DB }

func (g sharedGroup) shard(i int) (raft.LogStore, raft.StableStore) { s := g.Shard(i); return s, s }
func (g sharedGroup) stats() [3]uint64 {
	st := g.Stats()
	return [3]uint64{st.Commits, st.Entries, st.SyncNanos}
}

// appliedCollector exports every shard's raft applied index on this node:
// replicas of a shard that show the same index hold the same state.
type appliedCollector struct{ l *Log }

var appliedDesc = prometheus.NewDesc("edgenode_raft_applied_index",
	"Index of the last raft entry this node applied, per shard (equal on every replica once caught up).", []string{"shard"}, nil)

func (c appliedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- appliedDesc }

func (c appliedCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.l.shards {
		ch <- prometheus.MustNewConstMetric(appliedDesc, prometheus.GaugeValue, float64(s.raft.AppliedIndex()), strconv.Itoa(s.id))
	}
}

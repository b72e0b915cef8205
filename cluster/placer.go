package cluster

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/edgenode/edgenode/cluster/member"
	"github.com/edgenode/edgenode/wire/nodewire"
)

// The placement part: each shard's leader moves the shard's raft
// configuration toward its Target, and hands leadership to the preferred
// voter (Leaders). It knows raft only as shardConfigs, membership as a
// memberView, the other nodes through a Transport (how far a node has
// applied a shard), routing's leader hints as leaderHints, and drain as a
// function naming the nodes that announced their shutdown.

// shardConfigs is what placement needs of the relay log's shards.
type shardConfigs interface {
	Shards() int
	Leader(shard int) string
	Config(shard int) shardConfig
}

// shardConfig is one shard's raft instance on this node, as placement and
// drain use it. The changes wait for raft's answer (5 s at most).
type shardConfig interface {
	// Leading: this node's instance is the shard's raft leader.
	Leading() bool
	Configuration() (raft.Configuration, error)
	AppliedIndex() uint64
	AddNonvoter(id raft.ServerID, addr raft.ServerAddress) error
	AddVoter(id raft.ServerID, addr raft.ServerAddress) error
	DemoteVoter(id raft.ServerID) error
	RemoveServer(id raft.ServerID) error
	// TransferLeadership hands leadership to id, or to any voter when id
	// is "".
	TransferLeadership(id raft.ServerID, addr raft.ServerAddress) error
}

// leaderHints are routing's last known leaders, which placement fills for
// shards whose leader this node does not know.
type leaderHints interface {
	hint(shard int) string
	setHint(shard int, node string)
}

// catchUpSlack is how far behind the leader's applied index a non-voter may
// be and still be promoted: it will finish catching up as a voter within a
// few batches.
const catchUpSlack = 1024

// placer reconciles the configurations of the shards led here.
type placer struct {
	self      string
	log       shardConfigs
	members   memberView
	transport Transport
	hints     leaderHints
	// draining reports nodes that announced their shutdown: no leadership
	// is handed to them.
	draining  func(node string) bool
	logger    *slog.Logger
	deadGrace time.Duration
	every     time.Duration
	kick      chan struct{}

	mu sync.Mutex
	// lastTransfer spaces out balancing leadership transfers per shard.
	lastTransfer map[int]time.Time
}

// voters lists the voters of r's configuration (nil when unreadable).
func voters(r shardConfig) []string {
	cfg, err := r.Configuration()
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range cfg.Servers {
		if s.Suffrage == raft.Voter {
			out = append(out, string(s.ID))
		}
	}
	return out
}

// raftShards adapts the relay log's raft instances to shardConfigs.
type raftShards struct {
	shardLeaders
	raft func(shard int) *raft.Raft
	// transfer hands a shard's leadership over (relaylog.Log's
	// TransferLeadership: its batched acknowledgements committed first,
	// raft's timeouts at the log's); nil: raft's own transfer.
	transfer func(shard int, id raft.ServerID, addr raft.ServerAddress) error
}

func (l raftShards) Config(shard int) shardConfig {
	s := raftShard{r: l.raft(shard)}
	if l.transfer != nil {
		s.transfer = func(id raft.ServerID, addr raft.ServerAddress) error { return l.transfer(shard, id, addr) }
	}
	return s
}

type raftShard struct {
	r        *raft.Raft
	transfer func(id raft.ServerID, addr raft.ServerAddress) error // nil: raft's
}

// configTimeout bounds one configuration change.
const configTimeout = 5 * time.Second

func (s raftShard) Leading() bool        { return s.r.State() == raft.Leader }
func (s raftShard) AppliedIndex() uint64 { return s.r.AppliedIndex() }

func (s raftShard) Configuration() (raft.Configuration, error) {
	f := s.r.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Configuration{}, err
	}
	return f.Configuration(), nil
}

func (s raftShard) AddNonvoter(id raft.ServerID, addr raft.ServerAddress) error {
	return s.r.AddNonvoter(id, addr, 0, configTimeout).Error()
}

func (s raftShard) AddVoter(id raft.ServerID, addr raft.ServerAddress) error {
	return s.r.AddVoter(id, addr, 0, configTimeout).Error()
}

func (s raftShard) DemoteVoter(id raft.ServerID) error {
	return s.r.DemoteVoter(id, 0, configTimeout).Error()
}

func (s raftShard) RemoveServer(id raft.ServerID) error {
	return s.r.RemoveServer(id, 0, configTimeout).Error()
}

func (s raftShard) TransferLeadership(id raft.ServerID, addr raft.ServerAddress) error {
	if s.transfer != nil {
		return s.transfer(id, addr)
	}
	if id == "" {
		return s.r.LeadershipTransfer().Error()
	}
	return s.r.LeadershipTransferToServer(id, addr).Error()
}

func (c *placer) run(stop <-chan struct{}) {
	t := time.NewTicker(c.every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		case <-c.kick:
		}
		c.reconcileAll(stop)
	}
}

func (c *placer) reconcileAll(stop <-chan struct{}) {
	all := c.members.Members()
	var alive []member.Member
	status := make(map[string]member.Member, len(all))
	for _, m := range all {
		status[m.NodeID] = m
		// Suspicion is one node's missed probes, common on a busy host; only
		// a node the cluster declared dead or gone leaves the placement.
		if m.Status == member.StatusAlive || m.Status == member.StatusSuspect {
			alive = append(alive, m)
		}
	}
	leaders := Leaders(c.log.Shards(), alive, c.draining)
	for shard := 0; shard < c.log.Shards(); shard++ {
		select {
		case <-stop:
			return
		default:
		}
		r := c.log.Config(shard)
		if r.Leading() {
			c.reconcileShard(shard, r, alive, status, leaders[shard])
		} else if c.log.Leader(shard) == "" {
			c.discoverLeader(shard, alive)
		}
	}
}

// discoverLeader asks the shard's likely voters who leads it, so that a node
// outside the shard's configuration can route to it.
func (c *placer) discoverLeader(shard int, alive []member.Member) {
	if c.hints.hint(shard) != "" {
		return
	}
	for _, node := range Target(shard, alive) {
		if node == c.self {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := c.transport.Call(ctx, node, shard, &nodewire.CallRequest{Op: nodewire.OpShardProgress})
		cancel()
		if err == nil && resp.Err == "" && resp.Leader != "" {
			c.hints.setHint(shard, resp.Leader)
			return
		}
	}
}

// reconcileShard moves shard's configuration one step toward its target.
// Steps are small and idempotent; the loop repeats them every period.
func (c *placer) reconcileShard(shard int, r shardConfig, alive []member.Member, status map[string]member.Member, preferred string) {
	cfg, err := r.Configuration()
	if err != nil {
		return
	}
	voters := map[string]bool{}
	nonvoters := map[string]bool{}
	addrs := map[string]raft.ServerAddress{}
	for _, s := range cfg.Servers {
		addrs[string(s.ID)] = s.Address
		if s.Suffrage == raft.Voter {
			voters[string(s.ID)] = true
		} else {
			nonvoters[string(s.ID)] = true
		}
	}
	target := Target(shard, alive)
	// With fewer nodes than replicas, a lone live voter stays where it is:
	// moving a shard between two nodes buys nothing.
	if len(target) == 1 && voters[c.self] && len(voters) == 1 {
		target = []string{c.self}
	}
	inTarget := map[string]bool{}
	for _, id := range target {
		inTarget[id] = true
	}
	log := c.logger.With("shard", shard)
	if c.replaceIncarnation(log, r, cfg, alive, status) {
		return
	}
	now := time.Now()
	dead := func(id string) bool {
		m, ok := status[id]
		if !ok {
			return false // not seen yet (just started): not evidence of death
		}
		switch m.Status {
		case member.StatusLeft:
			return true
		case member.StatusDead:
			return now.Sub(m.Since) >= c.deadGrace
		}
		return false
	}

	// 1. Add target nodes as non-voters, then promote those caught up.
	for _, id := range target {
		if voters[id] {
			continue
		}
		if !nonvoters[id] {
			log.Info("adding non-voter", "node", id)
			if err := r.AddNonvoter(raft.ServerID(id), raftAddress(status[id], alive)); err != nil {
				log.Warn("add non-voter failed", "node", id, "err", err)
			}
			return
		}
		if c.caughtUp(shard, r, id) {
			log.Info("promoting voter", "node", id)
			if err := r.AddVoter(raft.ServerID(id), addrs[id]); err != nil {
				log.Warn("promote failed", "node", id, "err", err)
			}
			return
		}
	}
	// 2. Remove voters only from a configuration larger than Replicas (a
	// replacement or a better-placed node was promoted first). A failure
	// never shrinks a shard: with 3 voters and one dead the other two keep
	// quorum, and the dead one rejoins as it was when it comes back.
	if len(voters) > Replicas {
		var surplus []string
		for id := range voters {
			if !inTarget[id] {
				surplus = append(surplus, id)
			}
		}
		// Dead and departed voters go first, then the lowest-scoring.
		sort.Slice(surplus, func(i, j int) bool {
			di, dj := dead(surplus[i]), dead(surplus[j])
			if di != dj {
				return di
			}
			return score(shard, surplus[i]) < score(shard, surplus[j])
		})
		// One change per pass: the best candidate only.
		if len(surplus) > 0 {
			id := surplus[0]
			if id == c.self {
				// Hand over first; the next leader removes this node.
				if next := firstVoter(target, voters, c.self); next != "" && !c.draining(next) {
					log.Info("leaving shard: transferring leadership", "to", next)
					_ = r.TransferLeadership(raft.ServerID(next), addrs[next])
				}
				return
			}
			log.Info("removing surplus voter", "node", id, "dead", dead(id))
			if err := r.RemoveServer(raft.ServerID(id)); err != nil {
				log.Warn("remove failed", "node", id, "err", err)
			}
			return
		}
	}
	allTargetsVote := true
	for _, id := range target {
		if !voters[id] {
			allTargetsVote = false
		}
	}
	for id := range nonvoters {
		if !inTarget[id] {
			_ = r.RemoveServer(raft.ServerID(id))
			return
		}
	}
	// 3. Leadership goes to the preferred voter (Leaders), which spreads
	// leaders evenly over the nodes; at most once per shard per
	// transferEvery, so that a flapping view cannot bounce leaders.
	if allTargetsVote && len(target) > 1 && preferred != "" && preferred != c.self && voters[preferred] && c.transferAllowed(shard) && c.caughtUp(shard, r, preferred) {
		log.Info("transferring leadership to the preferred voter", "to", preferred)
		_ = r.TransferLeadership(raft.ServerID(preferred), addrs[preferred])
	}
}

// raftAddress is the raft address to add m under: its node id and the
// incarnation it gossips, or its bare id while any live member gossips no
// incarnation (a version before incarnations, which could not dial it).
func raftAddress(m member.Member, alive []member.Member) raft.ServerAddress {
	if !allIncarnations(alive) {
		return raft.ServerAddress(m.NodeID)
	}
	return raft.ServerAddress(nodewire.RaftAddress(m.NodeID, m.Incarnation))
}

func allIncarnations(alive []member.Member) bool {
	for _, m := range alive {
		if m.Incarnation == "" {
			return false
		}
	}
	return true
}

// replaceIncarnation moves one step toward a configuration whose servers
// carry the incarnations their nodes gossip, and reports whether it took
// one. A server whose live node gossips another incarnation than its
// address names is a replica lost with its data dir: as a voter it is
// demoted (it cannot vote: its node refuses raft streams addressed to the
// old incarnation), then readdressed to the new incarnation as a
// non-voter, which catches up from the leader and is promoted like any new
// replica. A server with a bare node id (a configuration from before
// incarnations) is readdressed in place once every live node gossips one.
func (c *placer) replaceIncarnation(log *slog.Logger, r shardConfig, cfg raft.Configuration, alive []member.Member, status map[string]member.Member) bool {
	for _, s := range cfg.Servers {
		id, inc := nodewire.SplitRaftAddress(string(s.Address))
		m, ok := status[id]
		if !ok || m.Status != member.StatusAlive || m.Incarnation == "" || m.Incarnation == inc {
			continue
		}
		if inc == "" && !allIncarnations(alive) {
			continue
		}
		addr := raft.ServerAddress(nodewire.RaftAddress(id, m.Incarnation))
		var err error
		switch {
		case inc == "" && s.Suffrage == raft.Voter:
			log.Info("recording the incarnation of a voter", "node", id, "incarnation", m.Incarnation)
			err = r.AddVoter(s.ID, addr)
		case inc == "":
			log.Info("recording the incarnation of a non-voter", "node", id, "incarnation", m.Incarnation)
			err = r.AddNonvoter(s.ID, addr)
		case s.Suffrage == raft.Voter:
			log.Warn("node is back with a new data dir: demoting the replica it lost", "node", id, "old_incarnation", inc, "incarnation", m.Incarnation)
			err = r.DemoteVoter(s.ID)
		default:
			log.Info("adding the new incarnation of the node as non-voter", "node", id, "old_incarnation", inc, "incarnation", m.Incarnation)
			err = r.AddNonvoter(s.ID, addr)
		}
		if err != nil {
			log.Warn("incarnation change failed", "node", id, "err", err)
		}
		return true
	}
	return false
}

func firstVoter(target []string, voters map[string]bool, except string) string {
	for _, id := range target {
		if id != except && voters[id] {
			return id
		}
	}
	return ""
}

// caughtUp asks node how far it has applied shard's log.
func (c *placer) caughtUp(shard int, r shardConfig, node string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := c.transport.Call(ctx, node, shard, &nodewire.CallRequest{Op: nodewire.OpShardProgress})
	if err != nil || resp.Err != "" {
		return false
	}
	return resp.Index+catchUpSlack >= r.AppliedIndex()
}

// transferEvery spaces out balancing transfers of one shard.
const transferEvery = 10 * time.Second

func (c *placer) transferAllowed(shard int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastTransfer == nil {
		c.lastTransfer = make(map[int]time.Time)
	}
	if time.Since(c.lastTransfer[shard]) < transferEvery {
		return false
	}
	c.lastTransfer[shard] = time.Now()
	return true
}

package cluster

import (
	"context"
	"log/slog"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/edgenode/edgenode/cluster/member"
	"github.com/edgenode/edgenode/wire/nodewire"
)

// catchUpSlack is how far behind the leader's applied index a non-voter may
// be and still be promoted: it will finish catching up as a voter within a
// few batches.
const catchUpSlack = 1024

func (c *Cluster) placementLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.opts.ReconcileEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		case <-c.kick:
		}
		c.reconcileAll()
	}
}

func (c *Cluster) reconcileAll() {
	all := c.opts.Members.Members()
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
	leaders := Leaders(c.log.Shards(), alive, c.isDraining)
	for shard := 0; shard < c.log.Shards(); shard++ {
		select {
		case <-c.stop:
			return
		default:
		}
		r := c.log.Raft(shard)
		if r.State() == raft.Leader {
			c.reconcileShard(shard, r, alive, status, leaders[shard])
		} else if c.log.Leader(shard) == "" {
			c.discoverLeader(shard, alive)
		}
	}
}

// discoverLeader asks the shard's likely voters who leads it, so that a node
// outside the shard's configuration can route to it.
func (c *Cluster) discoverLeader(shard int, alive []member.Member) {
	c.hintMu.Lock()
	known := c.hints[shard] != ""
	c.hintMu.Unlock()
	if known {
		return
	}
	for _, node := range Target(shard, alive) {
		if node == c.self {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := c.rpc(ctx, node, shard, &nodewire.CallRequest{Op: nodewire.OpShardProgress})
		cancel()
		if err == nil && resp.Err == "" && resp.Leader != "" {
			c.setHint(shard, resp.Leader)
			return
		}
	}
}

// reconcileShard moves shard's configuration one step toward its target.
// Steps are small and idempotent; the loop repeats them every period.
func (c *Cluster) reconcileShard(shard int, r *raft.Raft, alive []member.Member, status map[string]member.Member, preferred string) {
	f := r.GetConfiguration()
	if f.Error() != nil {
		return
	}
	cfg := f.Configuration()
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
	log := c.opts.Logger.With("shard", shard)
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
			return now.Sub(m.Since) >= c.opts.DeadGrace
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
			if err := r.AddNonvoter(raft.ServerID(id), raftAddress(status[id], alive), 0, 5*time.Second).Error(); err != nil {
				log.Warn("add non-voter failed", "node", id, "err", err)
			}
			return
		}
		if c.caughtUp(shard, r, id) {
			log.Info("promoting voter", "node", id)
			if err := r.AddVoter(raft.ServerID(id), addrs[id], 0, 5*time.Second).Error(); err != nil {
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
				if next := firstVoter(target, voters, c.self); next != "" && !c.isDraining(next) {
					log.Info("leaving shard: transferring leadership", "to", next)
					_ = r.LeadershipTransferToServer(raft.ServerID(next), addrs[next]).Error()
				}
				return
			}
			log.Info("removing surplus voter", "node", id, "dead", dead(id))
			if err := r.RemoveServer(raft.ServerID(id), 0, 5*time.Second).Error(); err != nil {
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
			_ = r.RemoveServer(raft.ServerID(id), 0, 5*time.Second).Error()
			return
		}
	}
	// 3. Leadership goes to the preferred voter (Leaders), which spreads
	// leaders evenly over the nodes; at most once per shard per
	// transferEvery, so that a flapping view cannot bounce leaders.
	if allTargetsVote && len(target) > 1 && preferred != "" && preferred != c.self && voters[preferred] && c.transferAllowed(shard) && c.caughtUp(shard, r, preferred) {
		log.Info("transferring leadership to the preferred voter", "to", preferred)
		_ = r.LeadershipTransferToServer(raft.ServerID(preferred), addrs[preferred]).Error()
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
func (c *Cluster) replaceIncarnation(log *slog.Logger, r *raft.Raft, cfg raft.Configuration, alive []member.Member, status map[string]member.Member) bool {
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
		var f raft.IndexFuture
		switch {
		case inc == "" && s.Suffrage == raft.Voter:
			log.Info("recording the incarnation of a voter", "node", id, "incarnation", m.Incarnation)
			f = r.AddVoter(s.ID, addr, 0, 5*time.Second)
		case inc == "":
			log.Info("recording the incarnation of a non-voter", "node", id, "incarnation", m.Incarnation)
			f = r.AddNonvoter(s.ID, addr, 0, 5*time.Second)
		case s.Suffrage == raft.Voter:
			log.Warn("node is back with a new data dir: demoting the replica it lost", "node", id, "old_incarnation", inc, "incarnation", m.Incarnation)
			f = r.DemoteVoter(s.ID, 0, 5*time.Second)
		default:
			log.Info("adding the new incarnation of the node as non-voter", "node", id, "old_incarnation", inc, "incarnation", m.Incarnation)
			f = r.AddNonvoter(s.ID, addr, 0, 5*time.Second)
		}
		if err := f.Error(); err != nil {
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
func (c *Cluster) caughtUp(shard int, r *raft.Raft, node string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := c.rpc(ctx, node, shard, &nodewire.CallRequest{Op: nodewire.OpShardProgress})
	if err != nil || resp.Err != "" {
		return false
	}
	return resp.Index+catchUpSlack >= r.AppliedIndex()
}

// ShardInfo is one row of `edgenode shards`.
type ShardInfo struct {
	Shard  int      `json:"shard"`
	Leader string   `json:"leader"`
	Term   uint64   `json:"term"` // the raft term Leader is known in
	Voters []string `json:"voters"`
}

// Shards reports every shard's leader and voters, asking the leader when
// this node is not in a shard's configuration.
func (c *Cluster) Shards(ctx context.Context) []ShardInfo {
	out := make([]ShardInfo, c.log.Shards())
	for shard := range out {
		info := ShardInfo{Shard: shard, Voters: c.voters(shard)}
		info.Leader, info.Term = c.log.LeaderTerm(shard)
		if len(info.Voters) == 0 || info.Leader == "" {
			// A node removed from the shard keeps its last configuration and
			// knows no leader: take the first answer that names one, else
			// the first that names voters.
			for _, node := range c.candidates(shard) {
				resp, err := c.rpc(ctx, node, shard, &nodewire.CallRequest{Op: nodewire.OpShardProgress})
				if err != nil || resp.Err != "" || len(resp.Voters) == 0 {
					continue
				}
				if resp.Leader != "" {
					info.Voters, info.Leader, info.Term = resp.Voters, resp.Leader, uint64(resp.At)
					break
				}
				if len(info.Voters) == 0 {
					info.Voters = resp.Voters
				}
			}
		}
		sort.Strings(info.Voters)
		if info.Voters == nil {
			info.Voters = []string{}
		}
		out[shard] = info
	}
	return out
}

// transferEvery spaces out balancing transfers of one shard.
const transferEvery = 10 * time.Second

func (c *Cluster) transferAllowed(shard int) bool {
	c.hintMu.Lock()
	defer c.hintMu.Unlock()
	if c.lastTransfer == nil {
		c.lastTransfer = make(map[int]time.Time)
	}
	if time.Since(c.lastTransfer[shard]) < transferEvery {
		return false
	}
	c.lastTransfer[shard] = time.Now()
	return true
}

package join

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"time"

	"github.com/edgenode/edgenode/cluster/member"
	"github.com/edgenode/edgenode/datadir"
)

// ClusterIDFile, in the data dir, keeps the id of the cluster the node
// belongs to (member.Meta.Cluster).
const ClusterIDFile = "cluster-id"

// Intervals of the loops.
const (
	ReconnectEvery = 5 * time.Second
	bootstrapPoll  = 200 * time.Millisecond
)

// Membership is what the policy reads and changes of gossip membership;
// *member.Membership is one.
type Membership interface {
	Members() []member.Member
	Alive() []member.Member
	Cluster() string
	SetCluster(id string) error
	Rejoin(addrs []string) (int, error)
}

// Shards is what the policy needs of the node's shards (relaylog.Log):
// whether every shard has a leader, and bootstrapping those that have no
// state.
type Shards interface {
	Ready() bool
	Bootstrap() error
}

// Options configure a Keeper.
type Options struct {
	NodeID  string
	DataDir string // where PeersFile and ClusterIDFile are kept
	Members Membership
	Logger  *slog.Logger // nil discards
}

// Keeper applies the policy to one node's membership. Its methods may be
// called from different goroutines.
type Keeper struct {
	self    string
	dir     string
	members Membership
	logger  *slog.Logger
}

// New returns the Keeper of opts.Members.
func New(opts Options) *Keeper {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Keeper{self: opts.NodeID, dir: opts.DataDir, members: opts.Members, logger: logger}
}

// ClusterID reads the cluster id kept in dataDir; "" when there is none.
// A node whose shards were just bootstrapped (a new data dir and no
// --join: it starts a new cluster) gets a new id, kept there. Errors are
// the data dir's (the caller names itself).
func ClusterID(dataDir string, bootstrapped bool, logger *slog.Logger) (string, error) {
	id, err := datadir.ReadSecret(filepath.Join(dataDir, ClusterIDFile))
	if err != nil {
		return "", err
	}
	if id == "" && bootstrapped {
		return newClusterID(dataDir, logger)
	}
	return id, nil
}

// newClusterID creates a cluster id and keeps it in dataDir.
func newClusterID(dataDir string, logger *slog.Logger) (string, error) {
	b := make([]byte, 8)
	rand.Read(b)
	id := hex.EncodeToString(b)
	if err := keepClusterID(dataDir, id); err != nil {
		return "", fmt.Errorf("keeping the cluster id: %w", err)
	}
	if logger != nil {
		logger.Info("started a new cluster", "cluster", id)
	}
	return id, nil
}

func keepClusterID(dataDir, id string) error {
	return datadir.WriteFile(filepath.Join(dataDir, ClusterIDFile), []byte(id+"\n"))
}

// RememberPeers saves the other members' gossip addresses in the peers
// file, for Addrs after a restart; a failure is logged. Cheap and rare:
// call it when membership changes (after each member.Membership.WaitChange).
func (k *Keeper) RememberPeers() {
	path := filepath.Join(k.dir, PeersFile)
	if err := savePeers(path, peerAddrs(k.self, k.members.Members())); err != nil {
		k.logger.Warn("could not save the members' gossip addresses", "file", path, "err", err)
	}
}

// Reconnect runs until ctx ends: every ReconnectEvery it adopts the
// cluster's id if this node has none (AdoptCluster), then contacts the
// members declared dead (RejoinDead).
func (k *Keeper) Reconnect(ctx context.Context, shards Shards) {
	every(ctx, ReconnectEvery, func() bool {
		k.AdoptCluster(shards)
		k.RejoinDead()
		return false
	})
}

// every calls step every d until it returns true or ctx ends.
func every(ctx context.Context, d time.Duration, step func() (done bool)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if step() {
			return
		}
	}
}

// RejoinDead contacts the members declared dead: memberlist never probes
// them again, so after a partition heals the two sides would stay apart
// (each listing the other as dead) until one reached out.
func (k *Keeper) RejoinDead() {
	var dead []string
	for _, m := range k.members.Members() {
		if m.Status == member.StatusDead && m.GossipAddr != "" {
			dead = append(dead, m.GossipAddr)
		}
	}
	if len(dead) == 0 {
		return
	}
	if n, err := k.members.Rejoin(dead); n > 0 {
		k.logger.Info("reconnected to members declared dead", "contacted", n)
	} else if err != nil {
		k.logger.Debug("reconnect to dead members failed", "err", err)
	}
}

// BootstrapWhenExpected waits, until ctx ends, for expect nodes to be
// alive; then the one with the smallest node id bootstraps the shards that
// have no state and gives the new cluster an id, and placement spreads the
// shards to the others. Every other node stays a joiner. A node that sees
// a member of an existing cluster joins it instead, whatever its id: a
// node whose data dir was wiped must not start a second cluster beside the
// first.
func (k *Keeper) BootstrapWhenExpected(ctx context.Context, shards Shards, expect int) {
	every(ctx, bootstrapPoll, func() bool { return k.bootstrapStep(shards, expect) })
}

// bootstrapStep is one look of BootstrapWhenExpected; done is true when
// it has decided (and acted) for good.
func (k *Keeper) bootstrapStep(shards Shards, expect int) (done bool) {
	alive := k.members.Alive()
	d := decideBootstrap(k.self, alive, expect)
	switch d.action {
	case wait:
		return false
	case joinExisting:
		k.logger.Info("bootstrap-expect: a member belongs to an existing cluster; joining it instead of bootstrapping", "member", d.member, "cluster", d.cluster)
		k.AdoptCluster(shards)
	case bootstrap:
		k.logger.Info("bootstrap-expect reached: bootstrapping the shards", "nodes", len(alive))
		if err := shards.Bootstrap(); err != nil {
			k.logger.Error("bootstrap failed", "err", err)
			return true
		}
		if k.members.Cluster() == "" {
			id, err := newClusterID(k.dir, k.logger)
			if err == nil {
				err = k.members.SetCluster(id)
			}
			if err != nil {
				k.logger.Error("could not keep the new cluster's id", "err", err)
			}
		}
	}
	return true
}

type bootstrapAction int

const (
	wait         bootstrapAction = iota // fewer than expect alive
	joinExisting                        // a member belongs to a cluster
	bootstrap                           // this node has the smallest id
	stayJoiner                          // another node bootstraps
)

type bootstrapDecision struct {
	action          bootstrapAction
	member, cluster string // joinExisting: the member seen and its cluster
}

// decideBootstrap is the choice of BootstrapWhenExpected given the alive
// members (this node among them).
func decideBootstrap(self string, alive []member.Member, expect int) bootstrapDecision {
	if len(alive) < expect || len(alive) == 0 {
		return bootstrapDecision{action: wait}
	}
	lowest := alive[0].NodeID
	for _, m := range alive {
		lowest = min(lowest, m.NodeID)
		if m.Cluster != "" && m.NodeID != self {
			return bootstrapDecision{action: joinExisting, member: m.NodeID, cluster: m.Cluster}
		}
	}
	if lowest == self {
		return bootstrapDecision{action: bootstrap}
	}
	return bootstrapDecision{action: stayJoiner}
}

// AdoptCluster gives a node without a cluster id the id of the cluster its
// alive members belong to, when they agree on one (gossip refuses members
// of other clusters once this node has an id), and keeps it in the data
// dir. A cluster whose nodes predate cluster ids gets one from its lowest
// node id, once every shard has a leader (shards.Ready) and no member has
// one.
func (k *Keeper) AdoptCluster(shards Shards) {
	if k.members.Cluster() != "" {
		return
	}
	ids := map[string]bool{}
	lowest := k.self
	for _, m := range k.members.Alive() {
		if m.Cluster != "" && m.NodeID != k.self {
			ids[m.Cluster] = true
		}
		lowest = min(lowest, m.NodeID)
	}
	var id string
	switch {
	case len(ids) == 1:
		for c := range ids {
			id = c
		}
		if err := keepClusterID(k.dir, id); err != nil {
			k.logger.Error("could not keep the cluster id", "err", err)
			return
		}
		k.logger.Info("joined cluster", "cluster", id)
	case len(ids) > 1:
		k.logger.Error("members report different cluster ids; joining none of them", "clusters", slices.Sorted(maps.Keys(ids)))
		return
	case lowest == k.self && shards.Ready():
		// Upgraded from a build without cluster ids.
		var err error
		if id, err = newClusterID(k.dir, k.logger); err != nil {
			k.logger.Error("could not keep the cluster id", "err", err)
			return
		}
	default:
		return
	}
	if err := k.members.SetCluster(id); err != nil {
		k.logger.Warn("could not gossip the cluster id", "err", err)
	}
}

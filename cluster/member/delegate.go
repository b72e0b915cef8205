package member

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// User message types carried in memberlist gossip (the first byte).
const (
	msgLeave byte = 1 // JSON leaveIntent: the named process left gracefully
)

// leaveIntent says that the process Boot of node ID left on purpose.
type leaveIntent struct {
	ID   string `json:"id"`
	Boot string `json:"b"`
}

// pushState is what this node sends in memberlist's push/pull exchange: the
// leave intents it knows, so nodes that missed their gossip still learn them.
type pushState struct {
	Left []leaveIntent `json:"left,omitempty"`
}

// delegate implements memberlist's Delegate, EventDelegate and PingDelegate.
// memberlist calls the event methods with its node lock held, so they only
// update the Membership's own state and never call back into memberlist.
type delegate struct {
	m *Membership

	mu            sync.Mutex
	refusedLogged map[string]bool // peers (name and cluster) already logged as refused
}

var (
	_ memberlist.Delegate      = (*delegate)(nil)
	_ memberlist.EventDelegate = (*delegate)(nil)
	_ memberlist.PingDelegate  = (*delegate)(nil)
	_ memberlist.MergeDelegate = (*delegate)(nil)
	_ memberlist.AliveDelegate = (*delegate)(nil)
)

func (d *delegate) NodeMeta(limit int) []byte {
	b := *d.m.meta.Load()
	if len(b) > limit {
		return nil // Start and SetCluster checked memberlist.MetaMaxSize; not reached
	}
	return b
}

// ErrOtherCluster is why gossip with a node of another cluster is refused.
var ErrOtherCluster = errors.New("member: node of another cluster")

// foreign returns an error if n gossips a cluster id other than this
// node's (both non-empty): two clusters must never merge, since each has
// its own shards with their own raft histories.
func (d *delegate) foreign(n *memberlist.Node) error {
	ours := d.m.Cluster()
	if ours == "" || n.Name == d.m.self {
		return nil
	}
	var w wireMeta
	if json.Unmarshal(n.Meta, &w) != nil || w.Cluster == "" || w.Cluster == ours {
		return nil
	}
	err := fmt.Errorf("%w: %s (at %s) belongs to cluster %s, this node to cluster %s; refusing its gossip",
		ErrOtherCluster, n.Name, n.Address(), w.Cluster, ours)
	d.mu.Lock()
	key := n.Name + "/" + w.Cluster
	first := !d.refusedLogged[key]
	if first && len(d.refusedLogged) < 1024 {
		d.refusedLogged[key] = true
	}
	d.mu.Unlock()
	if first {
		d.m.logger.Error(err.Error())
	}
	return err
}

// NotifyMerge refuses a push/pull merge (a join) that would bring in a
// node of another cluster.
func (d *delegate) NotifyMerge(peers []*memberlist.Node) error {
	for _, n := range peers {
		if err := d.foreign(n); err != nil {
			return err
		}
	}
	return nil
}

// NotifyAlive refuses gossip about a node of another cluster.
func (d *delegate) NotifyAlive(n *memberlist.Node) error { return d.foreign(n) }

func (d *delegate) NotifyMsg(b []byte) {
	if len(b) < 1 || b[0] != msgLeave {
		return
	}
	var in leaveIntent
	if err := json.Unmarshal(b[1:], &in); err != nil || in.ID == "" {
		d.m.logger.Debug("member: bad gossip message", "err", err)
		return
	}
	if d.m.recordLeave(in) {
		// Pass it on: the leaving node gossips it only a few times.
		d.m.queue.QueueBroadcast(newLeaveBroadcast(in.ID, in.Boot))
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.m.queue.GetBroadcasts(overhead, limit)
}

func (d *delegate) LocalState(join bool) []byte {
	m := d.m
	m.mu.Lock()
	var st pushState
	for id, in := range m.intents {
		st.Left = append(st.Left, leaveIntent{ID: id, Boot: in.boot})
	}
	m.mu.Unlock()
	b, _ := json.Marshal(st)
	return b
}

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	var st pushState
	if err := json.Unmarshal(buf, &st); err != nil {
		d.m.logger.Debug("member: bad push/pull state", "err", err)
		return
	}
	for _, in := range st.Left {
		if in.ID != "" {
			d.m.recordLeave(in)
		}
	}
}

func (d *delegate) NotifyJoin(n *memberlist.Node) { d.m.upsertAlive(n) }

func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.m.upsertAlive(n) }

func (d *delegate) NotifyLeave(n *memberlist.Node) {
	m := d.m
	meta, boot := m.decodeMeta(n)
	m.mu.Lock()
	e, created := m.entryLocked(n, meta, boot)
	st := StatusDead
	if in, ok := m.intents[n.Name]; n.Name == m.self || ok && in.boot == e.boot {
		st = StatusLeft
	}
	changed := m.setStatusLocked(e, st) || created
	m.mu.Unlock()
	if changed {
		m.logger.Info("member: node "+string(st), "node", n.Name, "addr", n.Address())
		m.notify()
	}
}

// AckPayload carries this node's clock (Options.Now, Unix nanoseconds) in
// every ack, so that the prober can measure the offset between the clocks.
func (d *delegate) AckPayload() []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(d.m.now().UnixNano()))
}

func (d *delegate) NotifyPingComplete(n *memberlist.Node, rtt time.Duration, payload []byte) {
	m := d.m
	now := m.now()
	m.mu.Lock()
	e := m.members[n.Name]
	changed := false
	if e != nil {
		e.evidence = time.Now()
		if len(payload) == 8 {
			// The ack left the other node about rtt/2 ago (NTP's estimate).
			theirs := time.Unix(0, int64(binary.BigEndian.Uint64(payload)))
			e.clockOffset, e.clockAt = theirs.Add(rtt/2).Sub(now), time.Now()
		}
		if e.Status == StatusSuspect {
			changed = m.setStatusLocked(e, StatusAlive)
		}
	}
	m.mu.Unlock()
	if changed {
		m.notify()
	}
}

// upsertAlive records n as alive with the meta it gossips.
func (m *Membership) upsertAlive(n *memberlist.Node) {
	meta, boot := m.decodeMeta(n)
	m.mu.Lock()
	e, changed := m.entryLocked(n, meta, boot)
	changed = changed || e.Meta != meta || e.boot != boot || e.GossipAddr != n.Address()
	e.Meta, e.boot, e.GossipAddr = meta, boot, n.Address()
	e.evidence = time.Now()
	if m.book != nil && meta.ClusterAddr != "" {
		m.book.SetAddr(n.Name, meta.ClusterAddr)
	}
	if m.setStatusLocked(e, StatusAlive) {
		changed = true
		if n.Name != m.self {
			m.logger.Info("member: node alive", "node", n.Name, "addr", e.GossipAddr, "region", meta.Region)
		}
	}
	m.mu.Unlock()
	if n.Name != m.self {
		m.joined.Store(true)
	}
	if changed {
		m.notify()
	}
}

// entryLocked returns n's entry, creating it (alive, as memberlist only
// reports nodes it has seen alive) if it is new.
func (m *Membership) entryLocked(n *memberlist.Node, meta Meta, boot string) (e *entry, created bool) {
	if e = m.members[n.Name]; e != nil {
		return e, false
	}
	e = &entry{
		Member: Member{Meta: meta, Status: StatusAlive, GossipAddr: n.Address(), Since: m.now()},
		boot:   boot,
	}
	m.members[n.Name] = e
	return e, true
}

// decodeMeta reads the gossiped meta of n. The memberlist name is the
// authoritative NodeID.
func (m *Membership) decodeMeta(n *memberlist.Node) (Meta, string) {
	var w wireMeta
	if err := json.Unmarshal(n.Meta, &w); err != nil {
		m.logger.Warn("member: undecodable node meta", "node", n.Name, "err", err)
	}
	w.NodeID = n.Name
	return w.Meta, w.Boot
}

// recordLeave stores a leave intent and reports whether it was new. A member
// already declared dead in the same incarnation becomes left.
func (m *Membership) recordLeave(in leaveIntent) bool {
	m.mu.Lock()
	if cur, ok := m.intents[in.ID]; ok && cur.boot == in.Boot {
		m.mu.Unlock()
		return false
	}
	m.intents[in.ID] = intent{boot: in.Boot, at: m.now()}
	changed := false
	if e := m.members[in.ID]; e != nil && e.boot == in.Boot && e.Status == StatusDead {
		changed = m.setStatusLocked(e, StatusLeft)
	}
	m.mu.Unlock()
	if changed {
		m.logger.Info("member: node left", "node", in.ID)
		m.notify()
	}
	return true
}

// leaveBroadcast gossips a leave intent. Named by node, so a newer intent for
// the same node replaces an older one in the queue.
type leaveBroadcast struct {
	name string
	msg  []byte
}

func newLeaveBroadcast(id, boot string) *leaveBroadcast {
	b, _ := json.Marshal(leaveIntent{ID: id, Boot: boot})
	return &leaveBroadcast{name: "leave/" + id, msg: append([]byte{msgLeave}, b...)}
}

func (b *leaveBroadcast) Name() string    { return b.name }
func (b *leaveBroadcast) Message() []byte { return b.msg }
func (b *leaveBroadcast) Finished()       {}
func (b *leaveBroadcast) Invalidates(other memberlist.Broadcast) bool {
	nb, ok := other.(memberlist.NamedBroadcast)
	return ok && nb.Name() == b.name
}

package cluster

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/edgenode/edgenode/cluster/member"
	"github.com/edgenode/edgenode/wire/nodewire"
)

// fakeConfig is one shard's raft configuration on this node; changes are
// recorded ("add-nonvoter n2@i", "promote n2", "remove n2", "demote n2",
// "transfer n2") and applied to the configuration.
type fakeConfig struct {
	mu      sync.Mutex
	leading bool
	applied uint64
	servers []raft.Server
	ops     []string
	// onTransfer runs when leadership is handed away.
	onTransfer func(to string)
}

func (f *fakeConfig) Leading() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leading
}

func (f *fakeConfig) AppliedIndex() uint64 { return f.applied }

func (f *fakeConfig) Configuration() (raft.Configuration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return raft.Configuration{Servers: slices.Clone(f.servers)}, nil
}

func (f *fakeConfig) record(op string) {
	f.mu.Lock()
	f.ops = append(f.ops, op)
	f.mu.Unlock()
}

func (f *fakeConfig) recorded() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ops)
}

func (f *fakeConfig) set(id raft.ServerID, addr raft.ServerAddress, s raft.ServerSuffrage) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.servers {
		if f.servers[i].ID == id {
			f.servers[i].Suffrage, f.servers[i].Address = s, addr
			return
		}
	}
	f.servers = append(f.servers, raft.Server{ID: id, Address: addr, Suffrage: s})
}

func (f *fakeConfig) AddNonvoter(id raft.ServerID, addr raft.ServerAddress) error {
	f.record("add-nonvoter " + string(addr))
	f.set(id, addr, raft.Nonvoter)
	return nil
}

func (f *fakeConfig) AddVoter(id raft.ServerID, addr raft.ServerAddress) error {
	f.record("promote " + string(addr))
	f.set(id, addr, raft.Voter)
	return nil
}

func (f *fakeConfig) DemoteVoter(id raft.ServerID) error {
	f.record("demote " + string(id))
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.servers {
		if f.servers[i].ID == id {
			f.servers[i].Suffrage = raft.Nonvoter
		}
	}
	return nil
}

func (f *fakeConfig) RemoveServer(id raft.ServerID) error {
	f.record("remove " + string(id))
	f.mu.Lock()
	defer f.mu.Unlock()
	f.servers = slices.DeleteFunc(f.servers, func(s raft.Server) bool { return s.ID == id })
	return nil
}

func (f *fakeConfig) TransferLeadership(id raft.ServerID, _ raft.ServerAddress) error {
	f.record("transfer " + string(id))
	f.mu.Lock()
	f.leading = false
	on := f.onTransfer
	f.mu.Unlock()
	if on != nil {
		on(string(id))
	}
	return nil
}

// fakeConfigs is shardConfigs over fakeConfig.
type fakeConfigs struct {
	*fakeShards
	cfgs []*fakeConfig
}

func (f fakeConfigs) Config(shard int) shardConfig { return f.cfgs[shard] }

// voterConfig is a configuration of voters (ids, addressed by id).
func voterConfig(ids ...string) *fakeConfig {
	f := &fakeConfig{leading: true, applied: 5000}
	for _, id := range ids {
		f.servers = append(f.servers, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(id), Suffrage: raft.Voter})
	}
	return f
}

// progress answers OpShardProgress with index for every node.
func progress(index uint64) *fakeTransport {
	return &fakeTransport{answer: func(_ context.Context, _ string, _ int, req *nodewire.CallRequest) (*nodewire.CallResponse, error) {
		if req.Op != nodewire.OpShardProgress {
			return &nodewire.CallResponse{Err: nodewire.NodeErrBadRequest}, nil
		}
		return &nodewire.CallResponse{Index: index}, nil
	}}
}

func newTestPlacer(self string, ms *fakeMembers, t *fakeTransport) *placer {
	return &placer{
		self: self, log: fakeConfigs{fakeShards: newFakeShards(1)}, members: ms, transport: t,
		hints: newRouting(self, newFakeShards(1), ms, t), draining: func(string) bool { return false },
		logger: slog.New(slog.DiscardHandler), deadGrace: time.Minute, every: time.Hour,
		kick: make(chan struct{}, 1),
	}
}

// place runs one reconcile of shard 0 as p would, and returns what changed.
func place(p *placer, cfg *fakeConfig) []string {
	ms := p.members.Members()
	var alive []member.Member
	status := map[string]member.Member{}
	for _, m := range ms {
		status[m.NodeID] = m
		if m.Status == member.StatusAlive || m.Status == member.StatusSuspect {
			alive = append(alive, m)
		}
	}
	before := len(cfg.recorded())
	p.reconcileShard(0, cfg, alive, status, Leaders(1, alive, p.draining)[0])
	return cfg.recorded()[before:]
}

// placeRounds runs rounds reconciles and checks the steps they took.
func placeRounds(t *testing.T, p *placer, cfg *fakeConfig, rounds int, want []string) {
	t.Helper()
	var got []string
	for i := 0; i < rounds; i++ {
		got = append(got, place(p, cfg)...)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("steps %q, want %q", got, want)
	}
}

// fiveNodes are alive in three regions; target is shard 0's Target.
func fiveNodes() (ms *fakeMembers, target []string) {
	ms = newFakeMembers(node("n1", "a", member.StatusAlive), node("n2", "b", member.StatusAlive),
		node("n3", "c", member.StatusAlive), node("n4", "a", member.StatusAlive), node("n5", "b", member.StatusAlive))
	return ms, Target(0, ms.Members())
}

func TestPlacerAddsThenPromotesThenHandsOver(t *testing.T) {
	ms, target := fiveNodes()
	self := target[1] // a voter that is not the preferred leader
	p := newTestPlacer(self, ms, progress(5000))
	cfg := voterConfig(self)
	var want []string
	for _, id := range target {
		if id != self {
			want = append(want, "add-nonvoter "+id, "promote "+id)
		}
	}
	want = append(want, "transfer "+target[0])
	placeRounds(t, p, cfg, 8, want)
}

func TestPlacerPromotesOnlyCaughtUp(t *testing.T) {
	ms, target := fiveNodes()
	p := newTestPlacer(target[0], ms, progress(5000-catchUpSlack-1))
	cfg := voterConfig(target[0], target[1])
	cfg.set(raft.ServerID(target[2]), raft.ServerAddress(target[2]), raft.Nonvoter)
	if got := place(p, cfg); len(got) != 0 {
		t.Fatalf("steps %q for a non-voter behind by more than catchUpSlack", got)
	}
	p.transport = progress(5000 - catchUpSlack)
	if got := place(p, cfg); !slices.Equal(got, []string{"promote " + target[2]}) {
		t.Fatalf("steps %q, want the promotion", got)
	}
}

func TestPlacerRemovesSurplusDeadFirst(t *testing.T) {
	ms, target := fiveNodes()
	var others []string
	for _, m := range ms.Members() {
		if !slices.Contains(target, m.NodeID) {
			others = append(others, m.NodeID)
		}
	}
	// Both non-target nodes vote; the lower-scoring one is dead.
	slices.SortFunc(others, func(a, b string) int {
		if score(0, a) > score(0, b) {
			return -1
		}
		return 1
	})
	deadID := others[1]
	ms.all = slices.DeleteFunc(ms.all, func(m member.Member) bool { return m.NodeID == deadID })
	dead := node(deadID, "z", member.StatusDead)
	dead.Since = time.Now().Add(-2 * time.Minute)
	ms.all = append(ms.all, dead)
	target = Target(0, ms.Alive())
	p := newTestPlacer(target[0], ms, progress(5000))
	cfg := voterConfig(append(slices.Clone(target), others...)...)
	if got := place(p, cfg); !slices.Equal(got, []string{"remove " + deadID}) {
		t.Fatalf("steps %q, want the dead voter removed first", got)
	}
	if got := place(p, cfg); !slices.Equal(got, []string{"remove " + others[0]}) {
		t.Fatalf("steps %q, want the live surplus voter removed next", got)
	}
	if got := place(p, cfg); len(got) != 0 {
		t.Fatalf("steps %q with the target in place", got)
	}
}

func TestPlacerNeverShrinksOnFailure(t *testing.T) {
	ms := threeNodes()
	ms.all[2].Status = member.StatusDead
	ms.all[2].Since = time.Now().Add(-time.Hour)
	p := newTestPlacer("n1", ms, progress(5000))
	cfg := voterConfig("n1", "n2", "n3")
	// Two live nodes: the target is one voter, but 3 voters are not more
	// than Replicas: nothing is removed.
	for i := 0; i < 3; i++ {
		if got := place(p, cfg); len(got) != 0 {
			t.Fatalf("steps %q on a failure", got)
		}
	}
}

func TestPlacerLeavesAShardNotInItsTarget(t *testing.T) {
	ms, target := fiveNodes()
	var self string
	for _, m := range ms.Members() {
		if !slices.Contains(target, m.NodeID) {
			self = m.NodeID
		}
	}
	p := newTestPlacer(self, ms, progress(5000))
	cfg := voterConfig(append(slices.Clone(target), self)...)
	if got := place(p, cfg); !slices.Equal(got, []string{"transfer " + target[0]}) {
		t.Fatalf("steps %q, want leadership handed to the first target voter", got)
	}
	// Not to a node that is draining.
	cfg.leading = true
	p.draining = func(n string) bool { return n == target[0] }
	if got := place(p, cfg); len(got) != 0 {
		t.Fatalf("steps %q, want none while the next voter drains", got)
	}
}

func TestPlacerRemovesStrayNonvoters(t *testing.T) {
	ms, target := fiveNodes()
	p := newTestPlacer(target[0], ms, progress(5000))
	p.lastTransfer = map[int]time.Time{0: time.Now()}
	cfg := voterConfig(target...)
	var stray string
	for _, m := range ms.Members() {
		if !slices.Contains(target, m.NodeID) {
			stray = m.NodeID
		}
	}
	cfg.set(raft.ServerID(stray), raft.ServerAddress(stray), raft.Nonvoter)
	if got := place(p, cfg); !slices.Equal(got, []string{"remove " + stray}) {
		t.Fatalf("steps %q, want the stray non-voter removed", got)
	}
}

func TestPlacerTransfersToPreferredAtMostEvery(t *testing.T) {
	ms, target := fiveNodes()
	p := newTestPlacer(target[1], ms, progress(5000))
	cfg := voterConfig(target...)
	pref := Leaders(1, ms.Members(), nil)[0]
	if pref == target[1] {
		t.Skip("this node is preferred")
	}
	if got := place(p, cfg); !slices.Equal(got, []string{"transfer " + pref}) {
		t.Fatalf("steps %q, want a transfer to %s", got, pref)
	}
	cfg.leading = true
	if got := place(p, cfg); len(got) != 0 {
		t.Fatalf("steps %q: a second transfer within transferEvery", got)
	}
}

func TestPlacerKeepsALoneVoter(t *testing.T) {
	ms := newFakeMembers(node("n1", "a", member.StatusAlive), node("n2", "b", member.StatusAlive))
	for _, self := range []string{"n1", "n2"} {
		p := newTestPlacer(self, ms, progress(5000))
		if got := place(p, voterConfig(self)); len(got) != 0 {
			t.Fatalf("%s: steps %q, want a lone voter left in place", self, got)
		}
	}
}

func TestPlacerReplacesALostIncarnation(t *testing.T) {
	ms := threeNodes()
	for i := range ms.all {
		ms.all[i].Incarnation = "i1"
	}
	ms.all[1].Incarnation = "i2" // n2 lost its data dir
	p := newTestPlacer("n1", ms, progress(5000))
	cfg := voterConfig()
	for _, id := range []string{"n1", "n2", "n3"} {
		cfg.set(raft.ServerID(id), raft.ServerAddress(nodewire.RaftAddress(id, "i1")), raft.Voter)
	}
	want := []string{"demote n2", "add-nonvoter n2@i2", "promote n2@i2"}
	placeRounds(t, p, cfg, 3, want)
}

func TestPlacerDiscoversUnknownLeaders(t *testing.T) {
	ms := threeNodes()
	tr := &fakeTransport{answer: func(_ context.Context, node string, _ int, _ *nodewire.CallRequest) (*nodewire.CallResponse, error) {
		return &nodewire.CallResponse{Leader: "n3"}, nil
	}}
	p := newTestPlacer("n1", ms, tr)
	cfg := voterConfig("n2", "n3")
	cfg.leading = false
	p.log = fakeConfigs{fakeShards: newFakeShards(1), cfgs: []*fakeConfig{cfg}}
	p.reconcileAll(make(chan struct{}))
	if h := p.hints.hint(0); h != "n3" {
		t.Fatalf("hint %q, want n3", h)
	}
	if n := len(tr.sent()); n != 1 {
		t.Fatalf("%d calls, want 1", n)
	}
	p.reconcileAll(make(chan struct{}))
	if n := len(tr.sent()); n != 1 {
		t.Fatalf("%d calls with a known hint, want none more", n-1)
	}
}

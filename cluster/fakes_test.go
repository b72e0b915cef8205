package cluster

import (
	"context"
	"fmt"
	"sync"

	"github.com/edgenode/edgenode/cluster/member"
	"github.com/edgenode/edgenode/wire/nodewire"
)

// Fakes of what the parts take: no raft, no gossip, no QUIC.

// fakeShards is a relay log's view of its shards: who serves and leads
// each, user u in shard u mod n.
type fakeShards struct {
	mu      sync.Mutex
	n       int
	serving map[int]bool
	leader  map[int]string
}

func newFakeShards(n int) *fakeShards {
	return &fakeShards{n: n, serving: map[int]bool{}, leader: map[int]string{}}
}

func (f *fakeShards) Shards() int             { return f.n }
func (f *fakeShards) ShardFor(user int64) int { return int(user % int64(f.n)) }

func (f *fakeShards) Serving(shard int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.serving[shard]
}

func (f *fakeShards) Leader(shard int) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leader[shard]
}

func (f *fakeShards) setLeader(shard int, node string) {
	f.mu.Lock()
	f.leader[shard] = node
	f.mu.Unlock()
}

// fakeMembers is a membership view; boots are the boot ids gossiped.
type fakeMembers struct {
	mu    sync.Mutex
	all   []member.Member
	boots map[string]string
}

func newFakeMembers(ms ...member.Member) *fakeMembers {
	return &fakeMembers{all: ms, boots: map[string]string{}}
}

// node is a member in region, with status st.
func node(id, region string, st member.Status) member.Member {
	return member.Member{Meta: member.Meta{NodeID: id, Region: region}, Status: st}
}

func (f *fakeMembers) Members() []member.Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]member.Member(nil), f.all...)
}

func (f *fakeMembers) Alive() []member.Member {
	var out []member.Member
	for _, m := range f.Members() {
		if m.Status == member.StatusAlive || m.Status == member.StatusSuspect {
			out = append(out, m)
		}
	}
	return out
}

func (f *fakeMembers) Get(id string) (member.Member, bool) {
	for _, m := range f.Members() {
		if m.NodeID == id {
			return m, true
		}
	}
	return member.Member{}, false
}

func (f *fakeMembers) Boot(id string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.boots[id]
	return b, ok
}

// fakeTransport answers calls with answer and records them.
type fakeTransport struct {
	mu     sync.Mutex
	calls  []sentCall
	answer func(ctx context.Context, node string, shard int, req *nodewire.CallRequest) (*nodewire.CallResponse, error)
}

type sentCall struct {
	node  string
	shard int
	op    string
}

func (t *fakeTransport) Call(ctx context.Context, node string, shard int, req *nodewire.CallRequest) (*nodewire.CallResponse, error) {
	t.mu.Lock()
	t.calls = append(t.calls, sentCall{node, shard, req.Op})
	answer := t.answer
	t.mu.Unlock()
	if answer == nil {
		return nil, fmt.Errorf("%w: %s: unreachable", errRemote, node)
	}
	return answer(ctx, node, shard, req)
}

func (t *fakeTransport) sent() []sentCall {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]sentCall(nil), t.calls...)
}

// nodesCalled lists the nodes of the calls with op.
func (t *fakeTransport) nodesCalled(op string) []string {
	var out []string
	for _, c := range t.sent() {
		if c.op == op {
			out = append(out, c.node)
		}
	}
	return out
}

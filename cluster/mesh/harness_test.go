package mesh

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// registry is a stand-in for membership: it tells every mesh it knows
// where the others listen (Mesh.SetAddr).
type registry struct {
	mu     sync.Mutex
	addrs  map[string]string
	meshes []*Mesh
}

func newRegistry() *registry { return &registry{addrs: make(map[string]string)} }

// set records id's address in every mesh joined so far.
func (r *registry) set(id, addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addrs[id] = addr
	for _, m := range r.meshes {
		m.SetAddr(id, addr)
	}
}

// join registers m (node id) and tells it every address known.
func (r *registry) join(id string, m *Mesh) {
	r.mu.Lock()
	r.meshes = append(r.meshes, m)
	for id, addr := range r.addrs {
		m.SetAddr(id, addr)
	}
	r.mu.Unlock()
	r.set(id, m.Addr())
}

func testLogger() *slog.Logger {
	if os.Getenv("MESH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newMesh starts a mesh on 127.0.0.1:0 and registers it.
func newMesh(tb testing.TB, reg *registry, id, secret string, shards int) *Mesh {
	tb.Helper()
	m, err := New(Options{
		NodeID:     id,
		ListenAddr: "127.0.0.1:0",
		Secret:     secret,
		Shards:     shards,
		Logger:     testLogger(),
	})
	if err != nil {
		tb.Fatalf("New(%s): %v", id, err)
	}
	reg.join(id, m)
	return m
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// countFSM records which command ids it applied.
type countFSM struct {
	mu      sync.Mutex
	seen    map[uint64]struct{}
	applied int
}

func newCountFSM() *countFSM { return &countFSM{seen: make(map[uint64]struct{})} }

func (f *countFSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand || len(l.Data) != 8 {
		return nil
	}
	f.mu.Lock()
	f.seen[binary.BigEndian.Uint64(l.Data)] = struct{}{}
	f.applied++
	f.mu.Unlock()
	return nil
}

func (f *countFSM) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.seen)
}

func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := make([]uint64, 0, len(f.seen))
	for id := range f.seen {
		ids = append(ids, id)
	}
	return fsmSnap(ids), nil
}

func (f *countFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var ids []uint64
	if err := gob.NewDecoder(rc).Decode(&ids); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = make(map[uint64]struct{}, len(ids))
	for _, id := range ids {
		f.seen[id] = struct{}{}
	}
	return nil
}

type fsmSnap []uint64

func (s fsmSnap) Persist(sink raft.SnapshotSink) error {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode([]uint64(s)); err != nil {
		_ = sink.Cancel()
		return err
	}
	if _, err := sink.Write(buf.Bytes()); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (fsmSnap) Release() {}

func cmd(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

// raftNode is one replica of one shard.
type raftNode struct {
	id    string
	shard int
	r     *raft.Raft
	fsm   *countFSM
	trans raft.Transport
}

func (n *raftNode) shutdown() {
	_ = n.r.Shutdown().Error()
	if c, ok := n.trans.(io.Closer); ok {
		_ = c.Close()
	}
}

func raftLogger(name string) hclog.Logger {
	if os.Getenv("MESH_TEST_LOG") != "" {
		return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Warn, Output: os.Stderr})
	}
	return hclog.NewNullLogger()
}

func testRaftConfig(id string, fast bool) *raft.Config {
	cfg := raft.DefaultConfig()
	cfg.LocalID = raft.ServerID(id)
	if fast {
		// Quicker failover than the defaults, still safe on 2 cores under -race.
		cfg.HeartbeatTimeout = 500 * time.Millisecond
		cfg.ElectionTimeout = 500 * time.Millisecond
		cfg.LeaderLeaseTimeout = 250 * time.Millisecond
	}
	cfg.CommitTimeout = 5 * time.Millisecond
	cfg.Logger = raftLogger(fmt.Sprintf("%s/raft", id))
	return cfg
}

// startRaft starts a replica on trans and bootstraps the shard with voters
// ids (raft addresses are the node ids, or addrs when given).
func startRaft(tb testing.TB, cfg *raft.Config, shard int, trans raft.Transport, voters []raft.Server) *raftNode {
	tb.Helper()
	fsm := newCountFSM()
	store := raft.NewInmemStore()
	snaps := raft.NewInmemSnapshotStore()
	if err := raft.BootstrapCluster(cfg, store, store, snaps, trans, raft.Configuration{Servers: voters}); err != nil {
		tb.Fatalf("bootstrap: %v", err)
	}
	r, err := raft.NewRaft(cfg, fsm, store, store, snaps, trans)
	if err != nil {
		tb.Fatalf("NewRaft: %v", err)
	}
	return &raftNode{id: string(cfg.LocalID), shard: shard, r: r, fsm: fsm, trans: trans}
}

// leaderOf returns the replica that is leader, or nil.
func leaderOf(nodes []*raftNode) *raftNode {
	for _, n := range nodes {
		if n.r.State() == raft.Leader {
			return n
		}
	}
	return nil
}

// applyAll applies commands first..first+n-1 to the shard, following
// leader changes, until every one succeeded.
func applyAll(tb testing.TB, nodes []*raftNode, first, n uint64, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	pending := make([]uint64, 0, n)
	for id := first; id < first+n; id++ {
		pending = append(pending, id)
	}
	for len(pending) > 0 {
		if time.Now().After(deadline) {
			tb.Fatalf("shard %d: %d commands not applied within %v", nodes[0].shard, len(pending), timeout)
		}
		l := leaderOf(nodes)
		if l == nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		futs := make([]raft.ApplyFuture, len(pending))
		for i, id := range pending {
			futs[i] = l.r.Apply(cmd(id), 5*time.Second)
		}
		var failed []uint64
		for i, f := range futs {
			if err := f.Error(); err != nil {
				failed = append(failed, pending[i])
			}
		}
		pending = failed
	}
}

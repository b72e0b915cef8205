package sharedlog

import (
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/edgenode/edgenode/relaylog/storetest"
)

// BenchmarkRaftApply compares one shared bolt file ("shared") with one
// raft-boltdb file per shard ("boltdb", the reference); see
// storetest.BenchRaftApply. For boltdb, entries/commit is entries per
// StoreLogs call (one bolt transaction, one fsync pair each).
func BenchmarkRaftApply(b *testing.B) {
	storetest.BenchRaftApply(b, []int{1, 8, 32, 64}, []int{256, 1024}, target, boltdbTarget)
}

// BenchmarkStoreLogs measures the store's own cost per call (no raft, no
// fsync); see storetest.BenchStoreLogs.
func BenchmarkStoreLogs(b *testing.B) { storetest.BenchStoreLogs(b, target) }

// BenchmarkGetLog measures one read of a 250-byte entry.
func BenchmarkGetLog(b *testing.B) { storetest.BenchGetLog(b, target) }

// boltdbTarget is one raft-boltdb file per shard, opened on first use.
var boltdbTarget = storetest.Target{
	Name: "boltdb",
	Open: func(tb testing.TB, dir string, _ storetest.Options) (storetest.DB, error) {
		return &boltdbPerShard{tb: tb, dir: dir, shards: make(map[int]*countingBoltStore)}, nil
	},
}

type boltdbPerShard struct {
	tb     testing.TB
	dir    string
	mu     sync.Mutex
	shards map[int]*countingBoltStore
}

func (d *boltdbPerShard) Shard(id int) storetest.Store {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, ok := d.shards[id]; ok {
		return s
	}
	bs, err := raftboltdb.NewBoltStore(filepath.Join(d.dir, fmt.Sprintf("shard-%d.db", id)))
	if err != nil {
		d.tb.Fatal(err)
	}
	s := &countingBoltStore{BoltStore: bs}
	d.shards[id] = s
	return s
}

func (d *boltdbPerShard) Stats() storetest.Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	var st storetest.Stats
	for _, s := range d.shards {
		st.Commits += s.calls.Load()
		st.Requests += s.calls.Load()
		st.Entries += s.entries.Load()
	}
	return st
}

func (d *boltdbPerShard) QueueLen() int { return 0 }

func (d *boltdbPerShard) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var firstErr error
	for _, s := range d.shards {
		if err := s.Close(); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// countingBoltStore counts StoreLogs calls (one bolt transaction, one fsync
// pair each) on a per-shard raft-boltdb store.
type countingBoltStore struct {
	*raftboltdb.BoltStore
	calls, entries atomic.Uint64
}

func (c *countingBoltStore) StoreLogs(logs []*raft.Log) error {
	c.calls.Add(1)
	c.entries.Add(uint64(len(logs)))
	return c.BoltStore.StoreLogs(logs)
}

func (c *countingBoltStore) StoreLog(l *raft.Log) error {
	return c.StoreLogs([]*raft.Log{l})
}

package walstore

import (
	"path/filepath"
	"testing"

	"github.com/edgenode/edgenode/relaylog/sharedlog"
	"github.com/edgenode/edgenode/relaylog/storetest"
)

// BenchmarkRaftApply compares this package's shared WAL ("wal") with
// sharedlog's shared bolt file ("shared", the reference); see
// storetest.BenchRaftApply. commit-us is write+fdatasync for wal, bolt's
// Tx.Commit for shared.
func BenchmarkRaftApply(b *testing.B) {
	storetest.BenchRaftApply(b, []int{8, 16, 32}, []int{256, 1024}, target, sharedTarget)
}

// BenchmarkStoreLogs measures the store's own cost per call (no raft, no
// fsync); see storetest.BenchStoreLogs.
func BenchmarkStoreLogs(b *testing.B) { storetest.BenchStoreLogs(b, target) }

// BenchmarkGetLog measures one read of a 250-byte entry.
func BenchmarkGetLog(b *testing.B) { storetest.BenchGetLog(b, target) }

// sharedTarget opens a sharedlog.DB (its exported API only: no commit hook,
// no queue length) for the reference runs.
var sharedTarget = storetest.Target{
	Name: "shared",
	Open: func(_ testing.TB, dir string, o storetest.Options) (storetest.DB, error) {
		db, err := sharedlog.Open(sharedlog.Options{Path: filepath.Join(dir, "shared.db"), NoSync: o.NoSync, MaxBatchBytes: o.MaxBatchBytes})
		if err != nil {
			return nil, err
		}
		return sharedDB{db}, nil
	},
	ErrClosed: sharedlog.ErrClosed,
}

type sharedDB struct{ *sharedlog.DB }

func (d sharedDB) Shard(id int) storetest.Store { return d.DB.Shard(id) }
func (d sharedDB) Stats() storetest.Stats       { return storetest.Stats(d.DB.Stats()) }
func (sharedDB) QueueLen() int                  { return 0 }

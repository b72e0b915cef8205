package walstore

import (
	"path/filepath"
	"testing"

	"github.com/edgenode/edgenode/relaylog/storetest"
)

// The tests common to the shared log stores are in relaylog/storetest; this
// adapter runs them on a WAL directory in the test's directory. The tests of
// segments, torn tails and corruption are in wal_test.go.

type testDB struct{ *DB }

func (d testDB) Shard(id int) storetest.Store { return d.DB.Shard(id) }
func (d testDB) Stats() storetest.Stats       { return storetest.Stats(d.DB.Stats()) }

func (d testDB) QueueLen() int { return d.queue.Len() }

var target = storetest.Target{
	Name: "wal",
	Open: func(_ testing.TB, dir string, o storetest.Options) (storetest.DB, error) {
		db, err := open(Options{Path: filepath.Join(dir, "wal"), NoSync: o.NoSync, MaxBatchBytes: o.MaxBatchBytes}, o.BeforeCommit)
		if err != nil {
			return nil, err
		}
		return testDB{db}, nil
	},
	ErrClosed: ErrClosed,
}

func TestConformance(t *testing.T) { storetest.Run(t, target) }

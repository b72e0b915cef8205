package mesh

import (
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// benchCluster is 3 nodes × shards raft groups with in-memory stores, over
// the mesh or (baseline) raft's own TCP transport, one listener per group.
type benchCluster struct {
	groups [][]*raftNode
	close  func()
}

func newBenchCluster(b *testing.B, shards int, overMesh bool) *benchCluster {
	ids := []string{"n1", "n2", "n3"}
	bc := &benchCluster{groups: make([][]*raftNode, shards)}
	var meshes []*Mesh
	reg := newRegistry()
	if overMesh {
		for _, id := range ids {
			meshes = append(meshes, newMesh(b, reg, id, testSecret, shards))
		}
	}
	for s := range shards {
		transports := make([]raft.Transport, len(ids))
		var voters []raft.Server
		for i, id := range ids {
			if overMesh {
				transports[i] = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
					Stream: meshes[i].StreamLayer(s), MaxPool: 3, Timeout: 5 * time.Second,
					Logger: raftLogger(id + "/transport"),
				})
			} else {
				t, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, 5*time.Second, io.Discard)
				if err != nil {
					b.Fatal(err)
				}
				transports[i] = t
			}
			voters = append(voters, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: transports[i].LocalAddr()})
		}
		for i, id := range ids {
			bc.groups[s] = append(bc.groups[s], startRaft(b, testRaftConfig(id, false), s, transports[i], voters))
		}
	}
	bc.close = func() {
		for _, m := range meshes {
			m.Close()
		}
		for _, g := range bc.groups {
			for _, n := range g {
				n.shutdown()
			}
		}
	}
	for s, g := range bc.groups {
		waitFor(b, 30*time.Second, fmt.Sprintf("leader of shard %d", s), func() bool { return leaderOf(g) != nil })
	}
	return bc
}

// BenchmarkRaftApply measures raft applies/s across 3 nodes × 8 shards
// with in-memory log stores (no fsync), so that the transport is what is
// measured: the mesh against raft's TCP transport. See BENCH.md.
func BenchmarkRaftApply(b *testing.B) {
	const shards = 8
	for _, tr := range []string{"mesh", "tcp"} {
		for _, appliers := range []int{64, 512} {
			b.Run(fmt.Sprintf("%s/appliers=%d", tr, appliers), func(b *testing.B) {
				bc := newBenchCluster(b, shards, tr == "mesh")
				defer bc.close()
				leaders := make([]*raft.Raft, shards)
				perNode := map[string]int{}
				for s, g := range bc.groups {
					l := leaderOf(g)
					leaders[s] = l.r
					perNode[l.id]++
				}
				var next atomic.Int64
				var failed atomic.Int64
				lat := make([][]time.Duration, appliers)
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for w := range appliers {
					wg.Go(func() {
						for {
							i := next.Add(1)
							if i > int64(b.N) {
								return
							}
							t0 := time.Now()
							if err := leaders[w%shards].Apply(cmd(uint64(i)), 10*time.Second).Error(); err != nil {
								failed.Add(1)
							}
							lat[w] = append(lat[w], time.Since(t0))
						}
					})
				}
				wg.Wait()
				elapsed := time.Since(start)
				b.StopTimer()
				all := slices.Concat(lat...)
				slices.Sort(all)
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "applies/s")
				b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
				if f := failed.Load(); f > 0 {
					b.Logf("%d applies failed (leader change?)", f)
				}
				b.Logf("leaders per node: %v", perNode)
			})
		}
	}
}

package node_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgenode/edgenode/relaylog"
)

// BenchmarkForwardedCall measures routing one call to the node that leads
// the user's shard: a read of the user's queue (Pending) asked of a node
// that does not lead the shard, over the QUIC mesh, answered from the
// leader's memory. One op = one forwarded call; ns/op is its round trip on
// loopback, allocs/op both sides' allocations in this process.
func BenchmarkForwardedCall(b *testing.B) {
	base := b.TempDir()
	n1 := startNode(b, filepath.Join(base, "n1"), "eu")
	waitFor(b, "n1 ready", 10*time.Second, func() bool { return n1.Log.Ready() })
	n2 := startNode(b, filepath.Join(base, "n2"), "us", n1.Members.GossipAddr())
	n3 := startNode(b, filepath.Join(base, "n3"), "ap", n1.Members.GossipAddr())
	regionOf := map[string]string{n1.Config.NodeID: "eu", n2.Config.NodeID: "us", n3.Config.NodeID: "ap"}
	waitFor(b, "replication", 60*time.Second, func() bool { return fullyReplicated(b, n1, regionOf) })
	waitFor(b, "n2 routes every shard", 30*time.Second, func() bool { return n2.Cluster.Router().Ready() })
	// A user whose shard n2 does not lead.
	var user int64
	waitFor(b, "a shard led by n1 and not n2", 30*time.Second, func() bool {
		for u := int64(1); u < 100; u++ {
			if l := n1.Log.Leader(relaylog.ShardOf(u, n1.Log.Shards())); l == n1.Config.NodeID && !n2.Log.Serving(n2.Log.ShardFor(u)) {
				user = u
				return true
			}
		}
		return false
	})
	r := n2.Cluster.Router()
	ctx := context.Background()
	if _, _, err := r.Pending(ctx, user, 0, 10); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := r.Pending(ctx, user, 0, 10); err != nil {
			b.Fatal(err)
		}
	}
}

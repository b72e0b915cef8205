package node_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/edgenode/edgenode/relaylog"
)

// A socket on a node that replicates but does not lead its user's shard
// gets each event in the home's wake (the subscription), not by pulling
// it from the home afterwards: that node's own apply of the entry, as a
// follower, must not send the socket to pull the same events again (a
// node call per event).
func TestFollowerSocketTakesEventsFromTheHomesWake(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node")
	}
	nodes, n1, n2, n3 := startThree(t, []string{"--jwt-secret", jwtSecret})
	waitFor(t, "every node routes every shard", 10*time.Second, func() bool {
		return n1.Cluster.Router().Ready() && n2.Cluster.Router().Ready() && n3.Cluster.Router().Ready()
	})
	const alice, bob = int64(1), int64(2)
	leader := nodes[shardsOf(t, n1)[relaylog.ShardOf(bob, 4)].Leader]
	var edge *testNode
	for _, n := range []*testNode{n1, n2, n3} {
		if n != leader {
			edge = n
		}
	}
	pulls := func() (sum float64) {
		for _, n := range nodes {
			sum += pushCounter(t, n.Node, "edgenode_node_calls_total", "op", "pending")
		}
		return sum
	}
	s := dialSock(t, edge, bob)
	mustPost(t, n1, alice, bob, 1, "first")
	s.takeMessages(1) // the first may be pulled: the registration's wake carries no events
	before := pulls()
	const n = 20
	for i := range n {
		mustPost(t, n1, alice, bob, int64(2+i), fmt.Sprintf("m%d", i))
		s.takeMessages(1)
	}
	if got := pulls() - before; got > 2 {
		t.Fatalf("%v pulls from the home for %d messages that its wakes carried", got, n)
	}
}

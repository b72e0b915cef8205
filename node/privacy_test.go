package node_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgenode/edgenode/relaylog"
)

func markRead(t *testing.T, n *testNode, reader, sender, upTo int64) {
	t.Helper()
	if code := postAs(t, n, reader, fmt.Sprintf("/v1/conversations/%d/read", sender), map[string]any{"upToMessageId": upTo}); code != http.StatusNoContent {
		t.Fatalf("mark read: %d", code)
	}
}

// readsBy lists the READ receipts by reader in user's queue, read on the
// leader of user's shard.
func readsBy(t *testing.T, nodes map[string]*testNode, n *testNode, user, reader int64) []int64 {
	t.Helper()
	leader := nodes[shardsOf(t, n)[relaylog.ShardOf(user, 4)].Leader]
	if leader == nil {
		t.Fatalf("no leader for user %d's shard", user)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	evs, _, err := leader.Log.Pending(ctx, user, 0, 500)
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, e := range evs {
		if e.Kind == relaylog.KindRead && e.By == reader {
			out = append(out, e.UpTo)
		}
	}
	return out
}

// TestReadMarksOnlyForConversations (issue 13, row 4): in a three-node
// cluster, where the reader's and the sender's shards are led by different
// nodes, a mark-read of a message from the sender puts a READ receipt in
// the sender's queue (it used to be dropped when forwarded: the node
// receiving the call swapped reader and sender); a mark-read of a stranger's
// conversation, or past the sender's newest message, creates nothing.
func TestReadMarksOnlyForConversations(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node")
	}
	nodes, n1, _, _ := startPushCluster(t, newPushFakes(t))
	const alice = int64(1) // the reader
	var bob, carol int64   // a sender, and a stranger to alice
	waitFor(t, "senders on shards led by other nodes than alice's", 30*time.Second, func() bool {
		ss := shardsOf(t, n1)
		la := ss[relaylog.ShardOf(alice, 4)].Leader
		bob, carol = 0, 0
		for u := int64(2); u < 200 && la != ""; u++ {
			if lu := ss[relaylog.ShardOf(u, 4)].Leader; lu != "" && lu != la {
				if bob == 0 {
					bob = u
				} else if carol == 0 {
					carol = u
					return true
				}
			}
		}
		return false
	})
	msg := mustPost(t, n1, bob, alice, 1, "hi alice")
	// Through every node: the call is forwarded to both leaders from some.
	for _, n := range nodes {
		markRead(t, n, alice, carol, msg.MessageID)    // carol never wrote to alice
		markRead(t, n, alice, bob, msg.MessageID+4096) // past bob's newest
	}
	// Through the node that leads neither alice's nor bob's shard: both the
	// check and the mark are forwarded.
	ss := shardsOf(t, n1)
	var third *testNode
	for id, n := range nodes {
		if id != ss[relaylog.ShardOf(alice, 4)].Leader && id != ss[relaylog.ShardOf(bob, 4)].Leader {
			third = n
		}
	}
	if third == nil {
		t.Fatalf("no node leads neither shard: %v", ss)
	}
	markRead(t, third, alice, bob, msg.MessageID)
	if got := readsBy(t, nodes, n1, bob, alice); len(got) != 1 || got[0] != msg.MessageID {
		t.Fatalf("READ receipts by alice in bob's queue: %v, want [%d]", got, msg.MessageID)
	}
	if got := readsBy(t, nodes, n1, carol, alice); len(got) != 0 {
		t.Fatalf("READ receipts by alice in the queue of carol, who never wrote to her: %v", got)
	}
}

// A user's send allowance holds across the cluster: spent on one node, the
// other node (whose own bucket for the user is still full) refuses the
// user too once its usage report reaches the user's home, within a few
// sends instead of a whole burst. The home's buckets are soft state that a
// new leader starts full (cluster.Limits), so a round during which the
// user's shard changed leader (placement moves leaders after the cluster
// forms; an election under load) proves nothing and is played again with
// another user.
func TestSendLimitHoldsAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node")
	}
	base := t.TempDir()
	const burst = 20
	args := []string{"--jwt-secret", jwtSecret, "--send-rate", "0.5", "--send-burst", fmt.Sprint(burst)}
	n1 := startNodeWith(t, filepath.Join(base, "n1"), "eu", args)
	waitFor(t, "n1 ready", 10*time.Second, func() bool { return n1.Log.Ready() })
	n2 := startNodeWith(t, filepath.Join(base, "n2"), "us", args, n1.Members.GossipAddr())
	n3 := startNodeWith(t, filepath.Join(base, "n3"), "ap", args, n1.Members.GossipAddr())
	regionOf := map[string]string{n1.Config.NodeID: "eu", n2.Config.NodeID: "us", n3.Config.NodeID: "ap"}
	waitFor(t, "replication", 30*time.Second, func() bool { return fullyReplicated(t, n1, regionOf) })
	waitFor(t, "every node routes every shard", 10*time.Second, func() bool {
		return n1.Cluster.Router().Ready() && n2.Cluster.Router().Ready() && n3.Cluster.Router().Ready()
	})
	const to = 77
	home := func(user int64) string {
		s := shardsOf(t, n1)[relaylog.ShardOf(user, 4)]
		return fmt.Sprintf("%s@%d", s.Leader, s.Term)
	}
	for round, user := 0, int64(4242); ; round, user = round+1, user+1 {
		if round == 5 {
			t.Fatalf("the home of every user tried changed leader during the round")
		}
		before := home(user)
		accepted := sendLimitRound(t, n1, n2, user, to, burst)
		if after := home(user); after != before {
			t.Logf("user %d: the home moved from %s to %s during the round (n2 accepted %d); again with another user", user, before, after, accepted)
			continue
		}
		if accepted >= burst {
			t.Fatalf("n2 accepted %d sends of a user who had spent the cluster-wide allowance on n1 (home %s throughout)", accepted, before)
		}
		t.Logf("n2 accepted %d sends before refusing", accepted)
		return
	}
}

// sendLimitRound spends user's burst on n1, then sends on n2 until n2
// refuses (or burst sends pass), and says how many n2 accepted.
func sendLimitRound(t *testing.T, n1, n2 *testNode, user, to int64, burst int) (accepted int) {
	for i := range int64(burst) {
		if code, _ := post(t, n1, user, to, i+1, "x"); code != http.StatusCreated {
			t.Fatalf("send %d on n1: %d", i+1, code)
		}
	}
	if code, _ := post(t, n1, user, to, int64(burst)+1, "x"); code != http.StatusTooManyRequests {
		t.Fatalf("send past the burst on n1: %d, want 429", code)
	}
	// Paced like a client that retries: each report interval (1 s) sees
	// a few of n2's sends.
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for i := int64(burst + 2); accepted < burst; i++ {
		code, _ := post(t, n2, user, to, i, "x")
		if code == http.StatusTooManyRequests {
			break
		}
		if code != http.StatusCreated {
			t.Fatalf("send on n2: %d", code)
		}
		accepted++
		<-tick.C
	}
	return accepted
}

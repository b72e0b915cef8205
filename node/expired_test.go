package node_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

// startClockNode is startNode with --retention 1h and the wall clock moved
// by *offset (read at every call).
func startClockNode(t *testing.T, dir, region string, offset *atomic.Int64, join ...string) *testNode {
	t.Helper()
	tune := fastTuning
	tune.Clock = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	return startNodeTuned(t, dir, region, []string{"--jwt-secret", jwtSecret, "--retention", "1h"}, tune, join...)
}

// syncOf is user's GET /v1/messages on n (without acknowledging anything).
func syncOf(t *testing.T, n *testNode, user int64) (int, wire.SyncResponse) {
	t.Helper()
	r, _ := http.NewRequest("GET", n.URL()+"/v1/messages", nil)
	r.Header.Set("Authorization", "Bearer "+tok(t, user))
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		return 0, wire.SyncResponse{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out wire.SyncResponse
	json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

// expiredReceiptFor finds the EXPIRED receipt by `by` in receipts.
func expiredReceiptFor(receipts []wire.Receipt, by int64) (wire.Receipt, bool) {
	for _, r := range receipts {
		if r.Status == wire.StatusExpired && r.ByUserID == by {
			return r, true
		}
	}
	return wire.Receipt{}, false
}

// pickUser is the first user from start on in shard (of 4), or not in it.
func pickUser(start int64, shard int, in bool) int64 {
	for u := start; ; u++ {
		if (relaylog.ShardOf(u, 4) == shard) == in {
			return u
		}
	}
}

// TestExpiredReceiptEndToEnd: on one node with --retention 1h, messages
// their recipients never fetched expire; their sender sees an EXPIRED
// receipt per recipient in its sync and on its socket (message_expired),
// for a recipient in the sender's shard and one in another shard. The
// message the other recipient fetched in time gets none.
func TestExpiredReceiptEndToEnd(t *testing.T) {
	var offset atomic.Int64
	n := startClockNode(t, t.TempDir(), "eu", &offset)
	waitFor(t, "ready", 10*time.Second, func() bool { return n.Log.Ready() })
	const alice = int64(1)
	home := relaylog.ShardOf(alice, 4)
	bobSame := pickUser(2, home, true)
	bobOther := pickUser(2, home, false)
	carol := pickUser(bobOther+1, home, false)
	ids := map[int64]int64{}
	for i, to := range []int64{bobSame, bobOther, carol} {
		code, resp := post(t, n, alice, to, int64(i+1), "hello")
		if code != 201 {
			t.Fatalf("send to %d: %d", to, code)
		}
		ids[to] = resp.Message.MessageID
	}
	// Carol fetches and acknowledges hers in time.
	if code, s := syncOf(t, n, carol); code != 200 || len(s.Messages) != 1 {
		t.Fatalf("carol's sync: %d %+v", code, s)
	} else {
		r, _ := http.NewRequest("GET", n.URL()+"/v1/messages?lastSyncedMessage="+jsonInt(s.LastSyncedMessage), nil)
		r.Header.Set("Authorization", "Bearer "+tok(t, carol))
		resp, err := http.DefaultClient.Do(r)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("carol's ack: %v", err)
		}
		resp.Body.Close()
	}
	alice1 := dialSock(t, n, alice)
	alice1.next(wire.TypeMessageDelivered, nil)

	offset.Store(int64(2 * time.Hour))
	if err := n.Expire(context.Background()); err != nil {
		t.Fatal(err)
	}
	code, s := syncOf(t, n, alice)
	if code != 200 || len(s.Messages) != 0 || len(s.Receipts) != 2 {
		t.Fatalf("alice's sync: %d %+v", code, s)
	}
	for _, bob := range []int64{bobSame, bobOther} {
		rc, ok := expiredReceiptFor(s.Receipts, bob)
		if !ok || len(rc.MessageIDs) != 1 || rc.MessageIDs[0] != ids[bob] {
			t.Fatalf("no EXPIRED receipt by %d of [%d] in %+v", bob, ids[bob], s.Receipts)
		}
		alice1.next(wire.TypeMessageExpired, func(p json.RawMessage) bool {
			var r wire.Receipt
			json.Unmarshal(p, &r)
			return r.ID == rc.ID && r.Status == wire.StatusExpired && r.ByUserID == bob && len(r.MessageIDs) == 1 && r.MessageIDs[0] == ids[bob]
		})
	}
	if _, ok := expiredReceiptFor(s.Receipts, carol); ok {
		t.Fatalf("an EXPIRED receipt for a delivered message: %+v", s.Receipts)
	}
	for _, bob := range []int64{bobSame, bobOther} {
		if code, s := syncOf(t, n, bob); code != 200 || len(s.Messages) != 0 {
			t.Fatalf("%d still gets the message: %d %+v", bob, code, s)
		}
	}
}

func jsonInt(v int64) string { b, _ := json.Marshal(v); return string(b) }

// TestExpiredReceiptAcrossNodes: the sender's shard and the recipient's
// are led by different nodes of a three-node cluster; the recipient's
// shard leader expires the message and commits the EXPIRED receipt at the
// sender's shard leader over the mesh (nodewire.OpExpired).
func TestExpiredReceiptAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node")
	}
	var offset atomic.Int64
	base := t.TempDir()
	n1 := startClockNode(t, filepath.Join(base, "n1"), "eu", &offset)
	waitFor(t, "n1 ready", 10*time.Second, func() bool { return n1.Log.Ready() })
	gossip := n1.Members.GossipAddr()
	n2 := startClockNode(t, filepath.Join(base, "n2"), "us", &offset, gossip)
	n3 := startClockNode(t, filepath.Join(base, "n3"), "ap", &offset, gossip)
	nodes := []*testNode{n1, n2, n3}
	regionOf := map[string]string{}
	for _, n := range nodes {
		regionOf[n.Config.NodeID] = n.region
	}
	waitFor(t, "3 voters in 3 regions for every shard", 30*time.Second, func() bool { return fullyReplicated(t, n1, regionOf) })

	// A sender and a recipient whose shards different nodes lead. Leaders
	// may still move; the round is played again if they did.
	var alice, bob int64
	waitFor(t, "an EXPIRED receipt across nodes", 60*time.Second, func() bool {
		leaders := map[int]string{}
		for _, s := range shardsOf(t, n1) {
			leaders[s.Shard] = s.Leader
		}
		alice, bob = 0, 0
		for a := int64(1); a < 100 && bob == 0; a++ {
			for b := a + 1; b < 200; b++ {
				la, lb := leaders[relaylog.ShardOf(a, 4)], leaders[relaylog.ShardOf(b, 4)]
				if la != "" && lb != "" && la != lb {
					alice, bob = a, b
					break
				}
			}
		}
		if bob == 0 {
			return false
		}
		req := offset.Load()/int64(time.Hour) + 1
		code, resp := post(t, n1, alice, bob, req, "never fetched")
		if code != 201 {
			return false
		}
		offset.Add(int64(2 * time.Hour))
		for _, n := range nodes {
			n.Expire(context.Background()) // each expires the shards it leads
		}
		// The receipt is committed before the message is dropped.
		for range 50 {
			_, s := syncOf(t, nodes[req%3], alice)
			for _, r := range s.Receipts {
				if r.Status == wire.StatusExpired && r.ByUserID == bob && len(r.MessageIDs) == 1 && r.MessageIDs[0] == resp.Message.MessageID {
					return true
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("round %d: no receipt yet for %d (leaders moved?)", req, resp.Message.MessageID)
		return false
	})
}

package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

// startSkewedNode is startNode with the node's wall clock moved by ahead.
func startSkewedNode(t *testing.T, dir, region string, ahead time.Duration, join string) *testNode {
	t.Helper()
	tune := fastTuning
	tune.Clock = func() time.Time { return time.Now().Add(ahead) }
	return startNodeTuned(t, dir, region, []string{"--jwt-secret", jwtSecret}, tune, join)
}

// sendNow posts a message with the given createdAt.
func sendNow(t *testing.T, n *testNode, from, to, req int64, createdAt string) (int, wire.NewMessageResponse, string) {
	t.Helper()
	body, _ := json.Marshal(wire.NewMessageRequest{RequestID: req, ToUserID: to, Content: fmt.Sprintf("m%d", req), CreatedAt: createdAt})
	r, _ := http.NewRequest("POST", n.URL()+"/v1/messages", bytes.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+tok(t, from))
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out wire.NewMessageResponse
	json.Unmarshal(b, &out)
	return resp.StatusCode, out, string(b)
}

// TestClockSkewedLeaderExpiresNothing: a node whose clock runs 48 h, or 40
// days, ahead of the two others leads a shard. Its expiry runs are refused
// (ErrClockSkew, and the edgenode_clock_skew_seconds gauge shows the
// offset), so a message queued in that shard and the idempotency record of
// its send survive: a retry still answers the same message, and the
// recipient still gets it. Without the check, 48 h ahead would drop the
// record (24 h window) and 40 days ahead the message (30 day retention).
// The nodes with right clocks still expire.
func TestClockSkewedLeaderExpiresNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node")
	}
	for _, ahead := range []time.Duration{48 * time.Hour, 40 * 24 * time.Hour} {
		t.Run(ahead.String(), func(t *testing.T) {
			base := t.TempDir()
			n1 := startNode(t, filepath.Join(base, "n1"), "eu")
			waitFor(t, "n1 ready", 10*time.Second, func() bool { return n1.Log.Ready() })
			gossip := n1.Members.GossipAddr()
			n2 := startNode(t, filepath.Join(base, "n2"), "us", gossip)
			skewed := startSkewedNode(t, filepath.Join(base, "n3"), "ap", ahead, gossip)
			nodes := []*testNode{n1, n2, skewed}
			regionOf := map[string]string{}
			for _, n := range nodes {
				regionOf[n.Config.NodeID] = n.region
			}
			waitFor(t, "3 voters in 3 regions for every shard", 30*time.Second, func() bool { return fullyReplicated(t, n1, regionOf) })
			// Each node measures the others within a few probe rounds.
			waitFor(t, "the skewed node to measure about -ahead, the others about 0", 30*time.Second, func() bool {
				if s, ok := skewed.Members.ClockSkew(); !ok || (s+ahead).Abs() > 5*time.Second {
					return false
				}
				for _, n := range []*testNode{n1, n2} {
					if s, ok := n.Members.ClockSkew(); !ok || s.Abs() > 5*time.Second {
						return false
					}
				}
				return true
			})

			// A shard the skewed node leads (placement prefers it there),
			// and a recipient in it.
			var shard = -1
			waitFor(t, "the skewed node to lead a shard", 30*time.Second, func() bool {
				for _, s := range shardsOf(t, n1) {
					if s.Leader == skewed.Config.NodeID {
						shard = s.Shard
						return true
					}
				}
				return false
			})
			to := int64(0)
			for u := int64(1000); ; u++ {
				if relaylog.ShardOf(u, 4) == shard {
					to = u
					break
				}
			}
			// The message gets its id while a node with a right clock leads
			// the shard (a skewed leader's own ids are skewed too, and would
			// not look old to it): hand the shard to n1, send there, and let
			// placement give it back to the skewed node.
			createdAt := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
			req := wire.NewMessageRequest{RequestID: 1, ToUserID: to, Content: "m1", CreatedAt: createdAt}
			var sent relaylog.Event
			waitFor(t, "a send while n1 leads the shard", 30*time.Second, func() bool {
				if r := skewed.Log.Raft(shard); r.State() == raft.Leader {
					r.LeadershipTransferToServer(raft.ServerID(n1.Config.NodeID), raft.ServerAddress(n1.Config.NodeID))
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				ev, _, err := n1.Log.Send(ctx, 7, req)
				if err != nil {
					return false
				}
				sent = ev
				return true
			})
			if d := time.Since(relaylog.IDTime(sent.ID)); d.Abs() > 10*time.Second {
				t.Fatalf("message %d has the time %v, not now", sent.ID, relaylog.IDTime(sent.ID))
			}
			waitFor(t, "the skewed node to lead the shard again", 30*time.Second, func() bool {
				return skewed.Log.Raft(shard).State() == raft.Leader && skewed.Log.Serving(shard)
			})

			err := skewed.Expire(context.Background())
			if !errors.Is(err, relaylog.ErrClockSkew) || !strings.Contains(err.Error(), "ahead of the other nodes") {
				t.Errorf("Expire on the skewed leader: %v, want ErrClockSkew", err)
			}
			t.Logf("skewed leader: %v", err)
			for _, n := range []*testNode{n1, n2} {
				if err := n.Expire(context.Background()); err != nil {
					t.Errorf("Expire on %s (right clock): %v", n.Config.NodeID, err)
				}
			}
			if got := metric(t, skewed, "edgenode_clock_skew_seconds"); got > -ahead.Seconds()+5 || got < -ahead.Seconds()-5 {
				t.Errorf("edgenode_clock_skew_seconds = %v, want about %v", got, -ahead.Seconds())
			}
			if got := metric(t, skewed, "edgenode_expiry_skipped_total"); got < 1 {
				t.Errorf("edgenode_expiry_skipped_total = %v", got)
			}

			// The idempotency record: a retry answers the same message.
			code, again, body := sendNow(t, n2, 7, to, 1, createdAt)
			if code != 201 || again.Message.MessageID != sent.ID {
				t.Fatalf("retry after the skewed leader's expiry: %d %s, want message %d", code, body, sent.ID)
			}
			// The message: still queued for the recipient.
			r, _ := http.NewRequest("GET", n1.URL()+"/v1/messages?lastSyncedMessage=0", nil)
			r.Header.Set("Authorization", "Bearer "+tok(t, to))
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var sr wire.SyncResponse
			json.Unmarshal(b, &sr)
			if len(sr.Messages) != 1 || sr.Messages[0].MessageID != sent.ID {
				t.Fatalf("the recipient's queue after the skewed leader's expiry: %d %s", resp.StatusCode, b)
			}
		})
	}
}

// metric reads one unlabelled series from a node's /metrics.
func metric(t *testing.T, n *testNode, name string) float64 {
	t.Helper()
	resp, err := http.Get(n.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

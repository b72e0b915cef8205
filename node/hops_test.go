package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
	"github.com/edgenode/edgenode/wire/nodewire"
)

// hopsCluster is three nodes routing every shard, with the calls they
// answered each other counted.
type hopsCluster struct {
	t     *testing.T
	nodes map[string]*testNode
	n1    *testNode
}

func startHopsCluster(t *testing.T) *hopsCluster {
	nodes, n1, n2, n3 := startThree(t, []string{"--jwt-secret", jwtSecret})
	waitFor(t, "every node routes every shard", 10*time.Second, func() bool {
		return n1.Cluster.Router().Ready() && n2.Cluster.Router().Ready() && n3.Cluster.Router().Ready()
	})
	return &hopsCluster{t: t, nodes: nodes, n1: n1}
}

// leaderOf is the node that leads user's shard; edgeOf another node.
func (c *hopsCluster) leaderOf(user int64) *testNode {
	return c.nodes[shardsOf(c.t, c.n1)[relaylog.ShardOf(user, 4)].Leader]
}

func (c *hopsCluster) edgeOf(user int64) *testNode {
	lead := c.leaderOf(user)
	for _, n := range c.nodes {
		if n != lead {
			return n
		}
	}
	c.t.Fatal("one node")
	return nil
}

// calls sums the calls with op the nodes answered each other.
func (c *hopsCluster) calls(op string) (sum float64) {
	for _, n := range c.nodes {
		sum += pushCounter(c.t, n.Node, "edgenode_node_calls_total", "op", op)
	}
	return sum
}

// A socket on a node that replicates but does not lead its user's shard
// gets each event in the home's wake (the subscription), not by pulling
// it from the home afterwards: that node's own apply of the entry, as a
// follower, must not send the socket to pull the same events again (a
// node call per event).
func TestFollowerSocketTakesEventsFromTheHomesWake(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node")
	}
	c := startHopsCluster(t)
	const alice, bob = int64(1), int64(2)
	n1, edge, pulls := c.n1, c.edgeOf(bob), func() float64 { return c.calls("pending") }
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

// Acks that raise no receipt (here: a sender's acks of the DELIVERED
// receipts of what it sent) travel from an edge to the leader of the
// user's shard in ack_devices calls, and take effect there: the receipts
// leave the sender's queue.
func TestReceiptAcksTravelInBatches(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node")
	}
	c := startHopsCluster(t)
	const alice, bob = int64(1), int64(2)
	leaderOf, edge, calls := c.leaderOf, c.edgeOf(bob), c.calls
	b := dialDevice(t, edge, bob, "phone")
	a := dialSock(t, leaderOf(alice), alice) // alice's acks run where her shard is led
	before := calls(nodewire.OpAckDevices)
	const n = 10
	for i := range n {
		mustPost(t, edge, bob, alice, int64(1+i), fmt.Sprintf("m%d", i))
	}
	a.takeMessages(n)
	// bob takes the receipts, acknowledging each.
	got := 0
	if err := b.ackEach(func(f wire.Frame) bool {
		var r wire.Receipt
		if f.Type == wire.TypeMessageDelivered && json.Unmarshal(f.Payload, &r) == nil {
			got += len(r.MessageIDs)
		}
		return got >= n
	}); err != nil {
		t.Fatalf("after %d of %d receipts: %v", got, n, err)
	}
	waitFor(t, "bob's receipts acknowledged at his shard's leader", 10*time.Second, func() bool {
		evs, _, err := leaderOf(bob).Log.Pending(context.Background(), bob, 0, 100)
		return err == nil && len(evs) == 0
	})
	if got := calls(nodewire.OpAckDevices) - before; got < 1 {
		t.Fatalf("%v ack_devices calls for bob's acks of %d receipts", got, n)
	}

	// Revoked through the leader's node, bob's phone on the edge learns it
	// from the answer to its next ack, which travels in a batch too.
	if code, _ := asDevice(t, leaderOf(bob), "DELETE", "/v1/devices/phone", bob, "", nil); code != http.StatusNoContent {
		t.Fatalf("revoke: %d", code)
	}
	batches := calls(nodewire.OpAckDevices)
	mustPost(t, edge, bob, alice, n+1, "after")
	a.takeMessages(1)
	revoked := false
	err := b.ackEach(func(f wire.Frame) bool {
		var e wire.ErrorDetail
		revoked = revoked || f.Type == wire.TypeError && json.Unmarshal(f.Payload, &e) == nil && e.Code == wire.CodeDeviceRevoked
		return false
	})
	if !revoked || !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
		t.Fatalf("the revoked phone's socket ended with %v (device_revoked seen: %v)", err, revoked)
	}
	if calls(nodewire.OpAckDevices) == batches {
		t.Fatal("the revoked phone's ack took no ack_devices call")
	}
}

// A socket's ack of messages, which raises their DELIVERED receipts,
// travels to the leader of its user's shard in ack_devices calls too
// (never alone in ack_device), and the leader commits the receipts.
func TestMessageAcksTravelInBatches(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node")
	}
	c := startHopsCluster(t)
	const alice, bob = int64(1), int64(2)
	edge, calls := c.edgeOf(bob), c.calls
	b := dialDevice(t, edge, bob, "phone")
	a := dialSock(t, c.leaderOf(alice), alice)
	single, batched := calls(nodewire.OpAckDevice), calls(nodewire.OpAckDevices)
	const n = 5
	var sent []int64
	for i := range n {
		sent = append(sent, mustPost(t, c.n1, alice, bob, int64(1+i), fmt.Sprintf("m%d", i)).MessageID)
	}
	b.takeMessages(n)
	delivered := map[int64]bool{}
	if err := a.ackEach(func(f wire.Frame) bool {
		var r wire.Receipt
		if f.Type == wire.TypeMessageDelivered && json.Unmarshal(f.Payload, &r) == nil {
			for _, id := range r.MessageIDs {
				delivered[id] = true
			}
		}
		return len(delivered) >= n
	}); err != nil {
		t.Fatalf("alice got DELIVERED for %d of %d messages: %v", len(delivered), n, err)
	}
	for _, id := range sent {
		if !delivered[id] {
			t.Fatalf("no DELIVERED receipt for message %d (%v)", id, delivered)
		}
	}
	if got := calls(nodewire.OpAckDevice) - single; got != 0 {
		t.Fatalf("%v ack_device calls for bob's acks of messages", got)
	}
	if got := calls(nodewire.OpAckDevices) - batched; got < 1 {
		t.Fatalf("%v ack_devices calls for bob's acks of messages", got)
	}
}

// ackEach reads frames, acknowledging each event, until done says so
// (nil) or the socket fails (its error).
func (s *sock) ackEach(done func(wire.Frame) bool) error {
	s.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		_, raw, err := s.conn.ReadMessage()
		if err != nil {
			return err
		}
		var f wire.Frame
		json.Unmarshal(raw, &f)
		if f.ID > 0 {
			ack, _ := json.Marshal(map[string]any{"type": "ack", "payload": map[string]int64{"upTo": f.ID}})
			if err := s.conn.WriteMessage(websocket.TextMessage, ack); err != nil {
				return err
			}
		}
		if done(f) {
			return nil
		}
	}
}

package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/memberlist"

	"github.com/edgenode/edgenode/auth"
	"github.com/edgenode/edgenode/cluster"
	"github.com/edgenode/edgenode/config"
	"github.com/edgenode/edgenode/node"
	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

const clusterSecret = "cluster-secret-for-tests-0123456789abcdef"
const jwtSecret = "jwt-secret-for-tests-0123456789abcdef"

var fastTuning = node.Tuning{
	Member: func(c *memberlist.Config) {
		c.ProbeInterval = 200 * time.Millisecond
		c.ProbeTimeout = 100 * time.Millisecond
		c.SuspicionMult = 2
		c.GossipInterval = 50 * time.Millisecond
		c.PushPullInterval = time.Second
	},
	DeadGrace:      time.Second,
	ReconcileEvery: 300 * time.Millisecond,
	RaftHeartbeat:  300 * time.Millisecond,
}

type testNode struct {
	*node.Node
	dir    string
	region string
}

func startNode(t testing.TB, dir, region string, join ...string) *testNode {
	t.Helper()
	return startNodeWith(t, dir, region, []string{"--jwt-secret", jwtSecret}, join...)
}

// startNodeWith starts a node on loopback ports with fast test timings and
// extra flags.
func startNodeWith(t testing.TB, dir, region string, extra []string, join ...string) *testNode {
	t.Helper()
	return startNodeTuned(t, dir, region, extra, fastTuning, join...)
}

// startNodeTuned is startNodeWith with its own tuning (a moved clock, say).
func startNodeTuned(t testing.TB, dir, region string, extra []string, tune node.Tuning, join ...string) *testNode {
	t.Helper()
	args := []string{"--data-dir", dir, "--region", region, "--http-addr", "127.0.0.1:0",
		"--gossip-addr", "127.0.0.1:0", "--cluster-addr", "127.0.0.1:0", "--advertise-addr", "127.0.0.1",
		"--cluster-secret", clusterSecret, "--shards", "4", "--send-rate", "1000", "--send-burst", "1000"}
	args = append(args, extra...)
	if len(join) > 0 {
		args = append(args, "--join", strings.Join(join, ","))
	}
	cfg, err := config.Load(args, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.StartTuned(context.Background(), cfg, nil, tune)
	if err != nil {
		t.Fatal(err)
	}
	tn := &testNode{Node: n, dir: dir, region: region}
	t.Cleanup(func() { tn.Shutdown(context.Background()) })
	return tn
}

func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tok(t *testing.T, user int64) string {
	s, err := auth.Issue([]byte(jwtSecret), user, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func post(t *testing.T, n *testNode, from, to, req int64, content string) (int, wire.NewMessageResponse) {
	createdAt := time.Date(2026, 11, 27, 10, 20, 8, 0, time.UTC).Add(time.Duration(req) * time.Millisecond).Format("2006-01-02T15:04:05.000Z")
	body, _ := json.Marshal(wire.NewMessageRequest{RequestID: req, ToUserID: to, Content: content, CreatedAt: createdAt})
	r, _ := http.NewRequest("POST", n.URL()+"/v1/messages", bytes.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+tok(t, from))
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		return 0, wire.NewMessageResponse{}
	}
	defer resp.Body.Close()
	var out wire.NewMessageResponse
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func shardsOf(t testing.TB, n *testNode) []cluster.ShardInfo {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return n.Cluster.Shards(ctx)
}

// fullyReplicated: every shard has 3 voters in 3 regions and a leader.
func fullyReplicated(t testing.TB, n *testNode, regionOf map[string]string) bool {
	for _, s := range shardsOf(t, n) {
		if s.Leader == "" || len(s.Voters) != 3 {
			return false
		}
		regions := map[string]bool{}
		for _, v := range s.Voters {
			regions[regionOf[v]] = true
		}
		if len(regions) != 3 {
			return false
		}
	}
	return true
}

// startThree starts three nodes in regions eu, us and ap with extra flags
// and waits until every shard has a voter in each region; it returns them
// by node id, and in order.
func startThree(t *testing.T, extra []string) (map[string]*testNode, *testNode, *testNode, *testNode) {
	t.Helper()
	base := t.TempDir()
	n1 := startNodeWith(t, filepath.Join(base, "n1"), "eu", extra)
	waitFor(t, "n1 ready", 10*time.Second, func() bool { return n1.Log.Ready() })
	n2 := startNodeWith(t, filepath.Join(base, "n2"), "us", extra, n1.Members.GossipAddr())
	n3 := startNodeWith(t, filepath.Join(base, "n3"), "ap", extra, n1.Members.GossipAddr())
	nodes := map[string]*testNode{n1.Config.NodeID: n1, n2.Config.NodeID: n2, n3.Config.NodeID: n3}
	regionOf := map[string]string{n1.Config.NodeID: "eu", n2.Config.NodeID: "us", n3.Config.NodeID: "ap"}
	waitFor(t, "replication", 30*time.Second, func() bool { return fullyReplicated(t, n1, regionOf) })
	return nodes, n1, n2, n3
}

func TestThreeRegionClusterReplicatesRoutesAndSurvivesALeaderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node")
	}
	base := t.TempDir()
	n1 := startNode(t, filepath.Join(base, "n1"), "eu")
	waitFor(t, "n1 ready", 10*time.Second, func() bool { return n1.Log.Ready() })
	gossip := n1.Members.GossipAddr()
	n2 := startNode(t, filepath.Join(base, "n2"), "us", gossip)
	n3 := startNode(t, filepath.Join(base, "n3"), "ap", gossip)
	nodes := []*testNode{n1, n2, n3}
	regionOf := map[string]string{}
	for _, n := range nodes {
		regionOf[n.Config.NodeID] = n.region
	}
	waitFor(t, "3 voters in 3 regions for every shard", 30*time.Second, func() bool { return fullyReplicated(t, n1, regionOf) })
	waitFor(t, "leaders on at least two nodes", 20*time.Second, func() bool {
		leaders := map[string]bool{}
		for _, s := range shardsOf(t, n1) {
			leaders[s.Leader] = true
		}
		return len(leaders) >= 2
	})
	// Every node is ready (every shard has a leader), whichever shards it
	// leads itself.
	for _, n := range nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := n.WaitReady(ctx)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", n.Config.NodeID, err)
		}
	}
	// Every node lists every edge.
	for _, n := range nodes {
		if got := len(n.Members.Alive()); got != 3 {
			t.Fatalf("%s sees %d alive", n.Config.NodeID, got)
		}
	}

	// Cross-node delivery: pick a recipient whose shard n1 does not lead,
	// connect it to n2, send through n3.
	byNode := map[string]*testNode{}
	for _, n := range nodes {
		byNode[n.Config.NodeID] = n
	}
	recipient := int64(0)
	for u := int64(100); u < 200; u++ {
		s := shardsOf(t, n1)[relaylog.ShardOf(u, 4)]
		if s.Leader != n2.Config.NodeID {
			recipient = u
			break
		}
	}
	hdr := http.Header{"Authorization": {"Bearer " + tok(t, recipient)}}
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(n2.URL(), "http")+"/v1/socket/updates", hdr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := conn.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	// A sender whose shard another node leads, so that the DELIVERED
	// receipt crosses nodes too.
	sender := int64(0)
	rl := shardsOf(t, n1)[relaylog.ShardOf(recipient, 4)].Leader
	for u := int64(1); u < 100; u++ {
		if shardsOf(t, n1)[relaylog.ShardOf(u, 4)].Leader != rl {
			sender = u
			break
		}
	}
	code, sent := post(t, n3, sender, recipient, 1, "across the cluster")
	if code != 201 {
		t.Fatalf("send through n3: %d", code)
	}
	for {
		_, b, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for the message on n2: %v", err)
		}
		var f wire.Frame
		json.Unmarshal(b, &f)
		if f.Type == wire.TypeNewMessage {
			if f.ID != sent.Message.MessageID {
				t.Fatalf("got %d, want %d", f.ID, sent.Message.MessageID)
			}
			ack, _ := json.Marshal(map[string]any{"type": "ack", "payload": map[string]int64{"upTo": f.ID}})
			conn.WriteMessage(websocket.TextMessage, ack)
			break
		}
	}

	waitFor(t, "the DELIVERED receipt at the sender, across nodes", 10*time.Second, func() bool {
		r, _ := http.NewRequest("GET", n1.URL()+"/v1/messages", nil)
		r.Header.Set("Authorization", "Bearer "+tok(t, sender))
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var sr wire.SyncResponse
		json.NewDecoder(resp.Body).Decode(&sr)
		return len(sr.Receipts) == 1 && sr.Receipts[0].ByUserID == recipient && len(sr.Receipts[0].MessageIDs) == 1 && sr.Receipts[0].MessageIDs[0] == sent.Message.MessageID
	})

	// Load, then kill the node leading most shards without a goodbye.
	counts := map[string]int{}
	for _, s := range shardsOf(t, n1) {
		counts[s.Leader]++
	}
	victim := n1
	for id, c := range counts {
		if c > counts[victim.Config.NodeID] {
			victim = byNode[id]
		}
	}
	var survivors []*testNode
	for _, n := range nodes {
		if n != victim {
			survivors = append(survivors, n)
		}
	}
	type key struct{ from, req int64 }
	var mu sync.Mutex
	acked := map[key]int64{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var lastErrAt, killedAt time.Time
	var resumed time.Duration
	errCodes := map[int]int{}
	var slowest time.Duration // the longest send around the kill: the failover time clients saw
	for g := int64(1); g <= 4; g++ {
		wg.Add(1)
		go func(from int64) {
			defer wg.Done()
			for req := int64(1); ; req++ {
				select {
				case <-stop:
					return
				default:
				}
				target := survivors[int(req)%len(survivors)]
				start := time.Now()
				code, r := post(t, target, 1000+from, 300+req%20, req, fmt.Sprintf("%d/%d", from, req))
				took := time.Since(start)
				mu.Lock()
				if !killedAt.IsZero() && start.After(killedAt.Add(-time.Second)) && took > slowest {
					slowest = took
				}
				if code == 201 {
					acked[key{from, req}] = r.Message.MessageID
				} else if !killedAt.IsZero() {
					lastErrAt = time.Now()
					errCodes[code]++
				}
				mu.Unlock()
				if code != 201 {
					time.Sleep(20 * time.Millisecond) // a client's retry pause
				}
			}
		}(g)
	}
	waitFor(t, "load before the kill", 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) > 100 })
	mu.Lock()
	killedAt = time.Now()
	mu.Unlock()
	victim.Kill()
	before := 0
	defer func() {
		mu.Lock()
		t.Logf("errors after the kill by status: %v; acked %d", errCodes, len(acked))
		mu.Unlock()
		for _, n := range survivors {
			t.Logf("%s sees shards %+v", n.Config.NodeID, shardsOf(t, n))
		}
	}()
	waitFor(t, "sends to resume after the kill", 15*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		if before == 0 {
			before = len(acked)
		}
		return len(acked) > before+200 && time.Since(lastErrAt) > time.Second
	})
	close(stop)
	wg.Wait()
	mu.Lock()
	if !lastErrAt.IsZero() {
		resumed = lastErrAt.Sub(killedAt)
	}
	mu.Unlock()
	t.Logf("killed %s (led %d of 4 shards); last failed send %v after the kill; slowest send around the kill %v; %d sends acknowledged", victim.Config.NodeID, counts[victim.Config.NodeID], resumed, slowest, len(acked))

	// Nothing acknowledged is lost: drain every recipient through a survivor.
	seen := map[int64]bool{}
	for u := int64(300); u < 320; u++ {
		cursor := int64(0)
		for {
			r, _ := http.NewRequest("GET", fmt.Sprintf("%s/v1/messages?lastSyncedMessage=%d&limit=500", survivors[0].URL(), cursor), nil)
			r.Header.Set("Authorization", "Bearer "+tok(t, u))
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			var sr wire.SyncResponse
			json.NewDecoder(resp.Body).Decode(&sr)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("sync of %d: %d", u, resp.StatusCode)
			}
			for _, m := range sr.Messages {
				if seen[m.MessageID] {
					t.Fatalf("message %d twice", m.MessageID)
				}
				seen[m.MessageID] = true
			}
			cursor = sr.LastSyncedMessage
			if !sr.HasMore {
				break
			}
		}
	}
	for k, id := range acked {
		if !seen[id] {
			t.Fatalf("acknowledged message %v (id %d) lost after the kill", k, id)
		}
	}

	// The killed node comes back with its data and rejoins.
	back := startNode(t, victim.dir, victim.region, survivors[0].Members.GossipAddr())
	waitFor(t, "the restarted node back in every shard", 30*time.Second, func() bool {
		regionOf[back.Config.NodeID] = back.region
		return fullyReplicated(t, survivors[0], regionOf)
	})

	// A retry after a leader change answers the identical message: the
	// newest acknowledged send of a sender (remembered: its shard's last
	// 8), after its shard's leader handed over.
	var newest key
	for k := range acked {
		if k.from == 1 && k.req > newest.req {
			newest = k
		}
	}
	to := 300 + newest.req%20
	shard := relaylog.ShardOf(to, 4)
	lead := shardsOf(t, survivors[0])[shard].Leader
	byNode[back.Config.NodeID] = back
	if err := byNode[lead].Log.Raft(shard).LeadershipTransfer().Error(); err != nil {
		t.Fatalf("leadership transfer of shard %d from %s: %v", shard, lead, err)
	}
	waitFor(t, "a leader of the shard again", 10*time.Second, func() bool { return shardsOf(t, survivors[0])[shard].Leader != "" })
	code, again := post(t, survivors[0], 1000+newest.from, to, newest.req, fmt.Sprintf("%d/%d", newest.from, newest.req))
	if code != 201 || again.Message.MessageID != acked[newest] {
		t.Fatalf("retry of %v after shard %d's leader %s handed over: %d, id %d, want id %d", newest, shard, lead, code, again.Message.MessageID, acked[newest])
	}
	_ = os.Getenv
}

type sock struct {
	t    *testing.T
	conn *websocket.Conn
}

func dialSock(t *testing.T, n *testNode, user int64) *sock {
	t.Helper()
	return dialDevice(t, n, user, "")
}

// next reads frames until one of type typ satisfies ok (nil: any).
func (s *sock) next(typ string, ok func(json.RawMessage) bool) json.RawMessage {
	s.t.Helper()
	p, seen, err := s.nextWithin(typ, ok, 10*time.Second)
	if err != nil {
		s.t.Fatalf("waiting for %s: %v (frames seen meanwhile: %q)", typ, err, seen)
	}
	return p
}

// nextWithin is next with a deadline, reporting instead of failing.
func (s *sock) nextWithin(typ string, ok func(json.RawMessage) bool, d time.Duration) (json.RawMessage, []string, error) {
	s.conn.SetReadDeadline(time.Now().Add(d))
	var seen []string
	for {
		_, b, err := s.conn.ReadMessage()
		if err != nil {
			return nil, seen, err
		}
		seen = append(seen, string(b))
		var f wire.Frame
		json.Unmarshal(b, &f)
		if f.Type == typ && (ok == nil || ok(f.Payload)) {
			return f.Payload, seen, nil
		}
	}
}

func statusIs(user int64, online, typing bool, seen bool) func(json.RawMessage) bool {
	return func(p json.RawMessage) bool {
		var st wire.ContactStatus
		json.Unmarshal(p, &st)
		return st.UserID == user && st.Online == online && st.Typing == typing && (!seen || st.LastConnectedAt != nil)
	}
}

func TestPresenceWatchAndTypingAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node")
	}
	base := t.TempDir()
	n1 := startNode(t, filepath.Join(base, "n1"), "eu")
	waitFor(t, "n1 ready", 10*time.Second, func() bool { return n1.Log.Ready() })
	n2 := startNode(t, filepath.Join(base, "n2"), "us", n1.Members.GossipAddr())
	n3 := startNode(t, filepath.Join(base, "n3"), "ap", n1.Members.GossipAddr())
	regionOf := map[string]string{n1.Config.NodeID: "eu", n2.Config.NodeID: "us", n3.Config.NodeID: "ap"}
	waitFor(t, "replication", 30*time.Second, func() bool { return fullyReplicated(t, n1, regionOf) })
	waitFor(t, "every node routes every shard", 10*time.Second, func() bool {
		return n1.Cluster.Router().Ready() && n2.Cluster.Router().Ready() && n3.Cluster.Router().Ready()
	})

	waitFor(t, "leaders spread over the nodes", 20*time.Second, func() bool {
		leaders := map[string]bool{}
		for _, s := range shardsOf(t, n1) {
			leaders[s.Leader] = true
		}
		return len(leaders) >= 2 && !leaders[""]
	})
	// A user's home moving (a leadership transfer of the balancer) shows
	// watchers a brief offline: start once leadership has settled.
	var last string
	settled := time.Now()
	waitFor(t, "leadership settled for 2 s", 30*time.Second, func() bool {
		b, _ := json.Marshal(shardsOf(t, n1))
		if string(b) != last {
			last, settled = string(b), time.Now()
		}
		return time.Since(settled) > 2*time.Second
	})
	// Pick a watcher homed off n1 and a contact homed off n2, so that both
	// the watch and the presence cross nodes.
	shards := shardsOf(t, n1)
	pick := func(not string, from int64) int64 {
		for u := from; u < from+100; u++ {
			if shards[relaylog.ShardOf(u, 4)].Leader != not {
				return u
			}
		}
		t.Fatal("no user found")
		return 0
	}
	alice := pick(n1.Config.NodeID, 500)
	bob := pick(n2.Config.NodeID, 600)
	// Presence is only between users who share a conversation: alice
	// writes bob (through a third node).
	if code, _ := post(t, n3, alice, bob, 1, "hi bob"); code != http.StatusCreated {
		t.Fatalf("send: %d", code)
	}

	a := dialSock(t, n1, alice)
	a.conn.WriteJSON(map[string]any{"type": "watch", "payload": map[string]any{"userIds": []int64{bob}}})
	dialed := time.Now()
	b := dialSock(t, n2, bob)
	// The online update crosses nodes carrying the open time as
	// lastConnectedAt (bob never connected before: the store has none).
	a.next(wire.TypeContactStatusUpdate, func(p json.RawMessage) bool {
		var st wire.ContactStatus
		json.Unmarshal(p, &st)
		if st.UserID != bob || !st.Online || st.LastConnectedAt == nil {
			return false
		}
		at, err := time.Parse(time.RFC3339Nano, *st.LastConnectedAt)
		return err == nil && !at.Before(dialed.Add(-time.Second))
	})
	// A stranger, asking bob's own node, sees him as never connected.
	r, _ := http.NewRequest("GET", fmt.Sprintf("%s/v1/users/%d/status", n2.URL(), bob), nil)
	r.Header.Set("Authorization", "Bearer "+tok(t, 999))
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	var st wire.ContactStatus
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if resp.StatusCode != 200 || st.Online || st.LastConnectedAt != nil {
		t.Fatalf("a stranger sees bob as %d %+v, want never connected", resp.StatusCode, st)
	}

	// Bob types to alice through a third node's REST API. Typing is best
	// effort (the node taking it asks bob's home whether he is online, and
	// drops it if it cannot tell), so like an app it is sent again every
	// 2 s until seen.
	var seen []string
	for attempt := 0; ; attempt++ {
		body, _ := json.Marshal(map[string]bool{"typing": true})
		r, _ := http.NewRequest("POST", fmt.Sprintf("%s/v1/conversations/%d/typing", n3.URL(), alice), bytes.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+tok(t, bob))
		resp, err := http.DefaultClient.Do(r)
		if err != nil || resp.StatusCode != 204 {
			t.Fatalf("typing: %v %v", resp, err)
		}
		resp.Body.Close()
		_, s, err := a.nextWithin(wire.TypeContactStatusUpdate, statusIs(bob, true, true, false), 2*time.Second)
		seen = append(seen, s...)
		if err == nil {
			break
		}
		if attempt == 4 {
			t.Fatalf("typing never reached alice: %v (frames seen: %q)", err, seen)
		}
	}

	// Bob's socket closes: alice, on another node, sees him offline with a
	// last-seen time, and any node answers the same status.
	b.conn.Close()
	a.next(wire.TypeContactStatusUpdate, statusIs(bob, false, false, true))
	waitFor(t, "GET status through n3", 10*time.Second, func() bool {
		r, _ := http.NewRequest("GET", fmt.Sprintf("%s/v1/users/%d/status", n3.URL(), bob), nil)
		r.Header.Set("Authorization", "Bearer "+tok(t, alice))
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var st wire.ContactStatus
		json.NewDecoder(resp.Body).Decode(&st)
		return resp.StatusCode == 200 && !st.Online && st.LastConnectedAt != nil
	})
}

// --bootstrap-expect 3: nothing serves until three nodes are up; then every
// shard gets its three voters. Development tokens derive from the shared
// cluster secret, so every node accepts the same token.
func TestBootstrapExpect(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node")
	}
	base := t.TempDir()
	start := func(name, region string, join ...string) *testNode {
		return startNodeWith(t, filepath.Join(base, name), region, []string{"--bootstrap-expect", "3", "--jwt-secret", jwtSecret}, join...)
	}
	n1 := start("a", "eu")
	n2 := start("b", "us", n1.Members.GossipAddr())
	if n1.Cluster.Router().Ready() || n2.Cluster.Router().Ready() {
		t.Fatal("a shard serves before the expected nodes joined")
	}
	n3 := start("c", "ap", n1.Members.GossipAddr())
	regionOf := map[string]string{n1.Config.NodeID: "eu", n2.Config.NodeID: "us", n3.Config.NodeID: "ap"}
	waitFor(t, "3 voters per shard", 30*time.Second, func() bool { return fullyReplicated(t, n1, regionOf) })
	if n1.Config.JWTSecret != n2.Config.JWTSecret || n1.Config.JWTSecret == "" {
		t.Fatal("development JWT secrets differ between nodes of one cluster")
	}
}

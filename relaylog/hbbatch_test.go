package relaylog

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/edgenode/edgenode/wire"
	"github.com/edgenode/edgenode/wire/nodewire"
)

// hbPair is two (or three) logs of two shards each whose raft groups talk
// over TCP and whose heartbeats go in batches over in-memory pipes: n1
// leads, n2 (and n3) follow. Raft addresses are the node ids; each shard's
// transport dials the TCP address of that shard's transport on the node.
type hbPair struct {
	a, b, c *Log
	mu      sync.Mutex
	logs    map[string]*Log                           // node id → log, for the heartbeat dial
	tcp     map[string]map[int]raft.ServerAddress     // node id → shard → TCP address
	trs     map[string]map[int]*raft.NetworkTransport // node id → shard → transport
	down    bool                                      // the heartbeat dial fails, and datagram beats
	cut     map[[3]string]bool                        // {from, to, shard}: raft's own RPCs cannot dial
	// datagrams: the logs send node beats as datagrams (Options.Beat),
	// delivered here in process, except those of old, which are of a
	// build without them (and say so in their features).
	datagrams bool
	old       map[string]bool
}

// beat is node from's Options.Beat: it hands the beat to node's log.
func (p *hbPair) beat(from string) func(string) error {
	return func(node string) error {
		p.mu.Lock()
		l, down := p.logs[node], p.down
		p.mu.Unlock()
		if l == nil || down {
			return fmt.Errorf("no connection to %s", node)
		}
		l.HeardBeat(from)
		return nil
	}
}

// features is every log's PeerFeatures.
func (p *hbPair) features(node string) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.old[node] {
		return Features &^ FeatureBeatDatagrams
	}
	return Features
}

func (p *hbPair) dial(from string) HeartbeatDial {
	return func(_ context.Context, node string) (net.Conn, error) {
		p.mu.Lock()
		l, down := p.logs[node], p.down
		p.mu.Unlock()
		if l == nil || down {
			return nil, fmt.Errorf("no heartbeat stream to %s", node)
		}
		c, s := net.Pipe()
		go l.ServeHeartbeats(s, from)
		return c, nil
	}
}

// shardAddrs maps a server id to the TCP address of one shard's transport
// on node from.
type shardAddrs struct {
	p     *hbPair
	from  string
	shard int
}

func (s shardAddrs) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	if s.p.cut[[3]string{s.from, string(id), fmt.Sprint(s.shard)}] {
		return "", fmt.Errorf("%s cut off from %s on shard %d", s.from, id, s.shard)
	}
	if a, ok := s.p.tcp[string(id)][s.shard]; ok {
		return a, nil
	}
	return "", fmt.Errorf("no address for %s", id)
}

func openHBLog(t *testing.T, p *hbPair, id string, join bool, hb time.Duration) *Log {
	t.Helper()
	p.mu.Lock()
	var beat func(string) error
	if p.datagrams && !p.old[id] {
		beat = p.beat(id)
	}
	p.mu.Unlock()
	l, err := Open(Options{
		Beat: beat, PeerFeatures: p.features,
		Dir: t.TempDir(), NodeID: id, Shards: 2, Join: join, HeartbeatTimeout: hb,
		Transport: func(shard int, _ raft.ServerAddress) (raft.Transport, error) {
			tr, err := raft.NewTCPTransportWithConfig("127.0.0.1:0", nil, &raft.NetworkTransportConfig{
				MaxPool: 3, Timeout: 10 * time.Second, ServerAddressProvider: shardAddrs{p, id, shard},
				Logger: hclog.NewNullLogger(),
			})
			if err == nil {
				p.mu.Lock()
				if p.tcp[id] == nil {
					p.tcp[id] = map[int]raft.ServerAddress{}
					p.trs[id] = map[int]*raft.NetworkTransport{}
				}
				p.tcp[id][shard] = tr.LocalAddr()
				p.trs[id][shard] = tr
				p.mu.Unlock()
			}
			return tr, err
		},
		Heartbeats: p.dial(id),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p.mu.Lock()
	p.logs[id] = l
	p.mu.Unlock()
	return l
}

func newHBPairs() *hbPair {
	return &hbPair{logs: map[string]*Log{}, tcp: map[string]map[int]raft.ServerAddress{},
		trs: map[string]map[int]*raft.NetworkTransport{}, cut: map[[3]string]bool{}, old: map[string]bool{}}
}

func newHBPair(t *testing.T) *hbPair {
	return newHBGroup(t, false, 200*time.Millisecond, 200*time.Millisecond)
}

// newHBGroup opens n1 and n2 (and n3 with three) and waits until they
// follow n1 on both shards; lead and follow are n1's and the others' raft
// heartbeat timeouts.
func newHBGroup(t *testing.T, three bool, lead, follow time.Duration) *hbPair {
	return startHBGroup(t, newHBPairs(), three, lead, follow)
}

// startHBGroup is newHBGroup on p, set up beforehand (datagrams, old).
func startHBGroup(t *testing.T, p *hbPair, three bool, lead, follow time.Duration) *hbPair {
	p.a = openHBLog(t, p, "n1", false, lead)
	p.b = openHBLog(t, p, "n2", true, follow)
	followers := map[string]*Log{"n2": p.b}
	if three {
		p.c = openHBLog(t, p, "n3", true, follow)
		followers["n3"] = p.c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.a.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	for id, l := range followers {
		for i := range 2 {
			if err := p.a.Raft(i).AddVoter(raft.ServerID(id), raft.ServerAddress(id), 0, 10*time.Second).Error(); err != nil {
				t.Fatalf("shard %d: add %s: %v", i, id, err)
			}
			waitHB(t, fmt.Sprintf("%s following n1 on shard %d", id, i), func() bool {
				_, lid := l.Raft(i).LeaderWithID()
				return lid == "n1"
			})
		}
	}
	return p
}

// waitHB polls cond every millisecond for up to 20 s and fails the test if
// it never holds.
func waitHB(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 20s waiting for %s", what)
		}
	}
}

func terms(l *Log) [2]string {
	return [2]string{l.Raft(0).Stats()["term"], l.Raft(1).Stats()["term"]}
}

// The leader's heartbeats go in batches, fewer frames than heartbeats,
// and keep the follower from electing.
func TestHeartbeatsGoInBatches(t *testing.T) {
	p := newHBPair(t)
	p.a.beats.realEvery.Store(0) // every heartbeat travels
	before := terms(p.b)
	b0, h0 := p.a.beats.batches.Load(), p.a.beats.beats.Load()
	waitHB(t, "40 heartbeats batched", func() bool { return p.a.beats.beats.Load()-h0 >= 40 })
	batches, beats := p.a.beats.batches.Load()-b0, p.a.beats.beats.Load()-h0
	if batches >= beats {
		t.Fatalf("%d heartbeats in %d batches: none shared a batch", beats, batches)
	}
	if after := terms(p.b); after != before {
		t.Fatalf("follower's terms moved from %v to %v: heartbeats did not hold the leader", before, after)
	}
	if !p.a.shards[0].serving.Load() || !p.a.shards[1].serving.Load() {
		t.Fatal("n1 stopped leading")
	}
}

// cutStreams closes every heartbeat stream l has open to another node.
func cutStreams(l *Log) {
	l.beats.mu.Lock()
	defer l.beats.mu.Unlock()
	for _, peer := range l.beats.peers {
		peer.mu.Lock()
		if peer.conn != nil {
			peer.conn.c.Close()
		}
		peer.mu.Unlock()
	}
}

// When the batch path fails (a node without it, a broken stream), the
// heartbeats go as raft's own RPCs: the leader stays.
func TestHeartbeatsFallBackToRaftRPCs(t *testing.T) {
	p := newHBPair(t)
	waitHB(t, "n2 hearing n1 on a heartbeat stream", func() bool { return p.b.heard.within("n1", time.Second) })
	before := terms(p.b)
	p.mu.Lock()
	p.down = true
	p.mu.Unlock()
	// Break the open stream: every heartbeat on it fails over.
	cutStreams(p.a)
	d0 := p.a.beats.direct.Load()
	// Past the silence after which the follower would stand, were the
	// leader's raft not reaching it (stand.go): it must not stand.
	down := time.Now()
	waitHB(t, "heartbeats sent as raft RPCs for a while", func() bool {
		return p.a.beats.direct.Load()-d0 >= 20 && time.Since(down) > leaderSilent+2*standStep+hbBeatEvery
	})
	if after := terms(p.b); after != before {
		t.Fatalf("follower's terms moved from %v to %v without batches", before, after)
	}
	if n := p.b.stood.Load(); n != 0 {
		t.Fatalf("the follower stood %d times while its leader's raft reached it", n)
	}
	// The path comes back after hbDownFor.
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
	h0 := p.a.beats.beats.Load()
	waitHB(t, "batches again", func() bool { return p.a.beats.beats.Load() > h0 })
}

// A heartbeat for another incarnation of this node's raft data, or for a
// shard it has not, is refused, as the mesh refuses such raft streams.
func TestHeartbeatForAnotherIncarnationIsRefused(t *testing.T) {
	p := newHBPair(t)
	for _, tc := range []struct {
		shard int
		to    string
	}{{0, "not-" + p.b.Incarnation()}, {7, ""}, {-1, ""}} {
		a := p.b.heartbeat(&nodewire.Heartbeat{ID: 3, Shard: tc.shard, To: tc.to, Term: 1, HeaderAddr: []byte("x")})
		if a.Err == "" || a.ID != 3 {
			t.Fatalf("heartbeat for shard %d, incarnation %q answered %+v", tc.shard, tc.to, a)
		}
	}
	// The right incarnation reaches raft, which answers (a stale term here).
	a := p.b.heartbeat(&nodewire.Heartbeat{ID: 4, Shard: 0, To: p.b.Incarnation(), ProtocolVersion: int(raft.ProtocolVersionMax), Term: 1, HeaderAddr: []byte("x")})
	if a.Err != "" || a.Success || a.Term < 1 {
		t.Fatalf("heartbeat of an old term answered %+v, want raft's refusal with its term", a)
	}
}

// The sender forgets idle peers once it knows hbMaxPeers: nodes that come
// and go over months do not grow it.
func TestHeartbeatSenderForgetsIdlePeers(t *testing.T) {
	s := newHBSender(func(context.Context, string) (net.Conn, error) { return nil, fmt.Errorf("no such node") }, "n0", &heardFrom{}, time.Second)
	defer s.close()
	req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{Addr: []byte("n1")}, Term: 1}
	var wg sync.WaitGroup
	for i := range hbMaxPeers + 10 {
		wg.Go(func() {
			var resp raft.AppendEntriesResponse
			if err := s.beat(0, raft.ServerAddress(fmt.Sprintf("node-%d@x", i)), req, &resp); err != errHBDown {
				t.Errorf("heartbeat to a node that cannot be dialed: %v, want errHBDown", err)
			}
		})
	}
	wg.Wait()
	var resp raft.AppendEntriesResponse
	s.beat(0, "one-more@x", req, &resp)
	s.mu.Lock()
	n := len(s.peers)
	s.mu.Unlock()
	if n > hbMaxPeers {
		t.Fatalf("%d peers kept after %d nodes, want at most %d", n, hbMaxPeers+11, hbMaxPeers)
	}
}

// An idle leader answers its heartbeats on its own node, from the node
// beats, and refreshes each answer with a real heartbeat about every
// half timeout (hbSender.realEvery), at the beats and whatever raft's own
// pace; the leader stays and the followers' terms do not move. Here the
// timeout is 2 s on the leader (a refresh every second), 4 s on the
// follower.
func TestIdleHeartbeatsAreAnsweredLocally(t *testing.T) {
	p := newHBGroup(t, false, 2*time.Second, 0)
	before := terms(p.b)
	every := time.Duration(p.a.beats.realEvery.Load())
	l0, h0, t0 := p.a.beats.local.Load(), p.a.beats.beats.Load(), time.Now()
	waitHB(t, "10 heartbeats answered locally over 5 s", func() bool {
		return p.a.beats.local.Load()-l0 >= 10 && time.Since(t0) >= 5*time.Second
	})
	real, elapsed := p.a.beats.beats.Load()-h0, time.Since(t0)
	// Two shards, each refreshed about every realEvery (a refresh waits
	// for a beat, and one due takes along the others at least a quarter
	// old): at most twice that pace, plus a round.
	if limit := 2 * (2*int64(elapsed/every) + 1); real > limit {
		t.Fatalf("%d real heartbeats in %v (a refresh due every %v), want at most %d", real, elapsed, every, limit)
	}
	if p.a.beats.nodeBeats.Load() == 0 {
		t.Fatal("no node beat sent")
	}
	if after := terms(p.b); after != before {
		t.Fatalf("follower's terms moved from %v to %v", before, after)
	}
	if !p.a.shards[0].serving.Load() || !p.a.shards[1].serving.Load() {
		t.Fatal("n1 stopped leading")
	}
}

// A leader's raft runs with three times the log's heartbeat timeout, so
// its heartbeat goroutines, answered locally, wake a third as often; a
// follower's keeps the log's, and a leader that hands its leadership
// over goes back to it.
func TestLeadersHeartbeatAtALongerTimeout(t *testing.T) {
	p := newHBGroup(t, false, time.Second, time.Second)
	timeout := func(l *Log, shard int) time.Duration { return l.Raft(shard).ReloadableConfig().HeartbeatTimeout }
	for i := range 2 {
		waitHB(t, fmt.Sprintf("shard %d's leader at 3 s", i), func() bool { return timeout(p.a, i) == 3*time.Second })
		if got := timeout(p.b, i); got != time.Second {
			t.Fatalf("shard %d: follower's heartbeat timeout %v, want 1s", i, got)
		}
	}
	if err := p.a.Raft(0).LeadershipTransferToServer("n2", "n2").Error(); err != nil {
		t.Fatal(err)
	}
	waitHB(t, "n2 leading shard 0 at 3 s, n1 back to 1 s", func() bool {
		return p.b.Raft(0).State() == raft.Leader && timeout(p.b, 0) == 3*time.Second && timeout(p.a, 0) == time.Second
	})
	if got := timeout(p.a, 1); got != 3*time.Second {
		t.Fatalf("shard 1, still led by n1: heartbeat timeout %v, want 3s", got)
	}
}

// While raft transfers a shard's leadership it refuses the shard's
// writes, for up to its election timeout when the target does not take
// over; TransferLeadership hands raft the transfer with the log's timeout
// (1 s here), not the three times it a leader's raft has otherwise, and
// the leader that still leads after a failed transfer goes back to its
// slower pace; one that handed over stays at the log's.
func TestTransferRunsWithTheLogsTimeout(t *testing.T) {
	p := newHBGroup(t, false, time.Second, time.Second)
	timeout := func(l *Log, shard int) time.Duration { return l.Raft(shard).ReloadableConfig().ElectionTimeout }
	waitHB(t, "both shards' leader at 3 s", func() bool { return timeout(p.a, 0) == 3*time.Second && timeout(p.a, 1) == 3*time.Second })
	var during []time.Duration
	p.a.testHookTransfer = func(s *shard) { during = append(during, s.raft.ReloadableConfig().ElectionTimeout) }
	if err := p.a.TransferLeadership(0, "nobody", "nobody"); err == nil {
		t.Fatal("a transfer to a server outside the shard succeeded")
	}
	if got := timeout(p.a, 0); got != 3*time.Second || p.a.Raft(0).State() != raft.Leader {
		t.Fatalf("after a failed transfer: %v, leader %v; want 3s, still leading", got, p.a.Raft(0).State() == raft.Leader)
	}
	if err := p.a.TransferLeadership(1, "n2", "n2"); err != nil {
		t.Fatal(err)
	}
	waitHB(t, "n2 leading shard 1 at 3 s, n1 at 1 s", func() bool {
		return p.b.Raft(1).State() == raft.Leader && timeout(p.b, 1) == 3*time.Second && timeout(p.a, 1) == time.Second
	})
	if len(during) != 2 || during[0] != time.Second || during[1] != time.Second {
		t.Fatalf("raft's election timeout when each transfer began: %v, want the log's 1s", during)
	}
}

// When the leader's node goes silent its followers stand for election at
// once: here their own raft timeout is an hour, so only standing can
// elect the new leader. The nodes beat each other on the heartbeat
// streams, or with datagrams.
func TestFollowersStandWhenLeaderNodeGoesSilent(t *testing.T) {
	for _, datagrams := range []bool{false, true} {
		t.Run(fmt.Sprintf("datagrams=%v", datagrams), func(t *testing.T) {
			p := newHBPairs()
			p.datagrams = datagrams
			startHBGroup(t, p, true, 200*time.Millisecond, time.Hour)
			waitHB(t, "n2 and n3 hearing n1", func() bool {
				return p.b.heard.within("n1", time.Second) && p.c.heard.within("n1", time.Second)
			})
			p.mu.Lock()
			delete(p.logs, "n1")
			p.mu.Unlock()
			p.a.Close()
			for i := range 2 {
				waitHB(t, fmt.Sprintf("a new leader of shard %d", i), func() bool {
					return p.b.Raft(i).State() == raft.Leader || p.c.Raft(i).State() == raft.Leader
				})
			}
			if p.b.stood.Load()+p.c.stood.Load() == 0 {
				t.Fatal("new leaders without a follower standing")
			}
		})
	}
}

// Between two nodes that take datagram beats, node beats go as datagrams
// and no empty frame goes on the heartbeat streams, and the leader still
// answers heartbeats locally on what the datagrams tell; a node of a
// build without them is beaten on the stream, as before, and sent no
// datagram.
func TestDatagramBeatsReplaceEmptyFrames(t *testing.T) {
	for _, old := range []bool{false, true} {
		t.Run(fmt.Sprintf("follower_without_datagrams=%v", old), func(t *testing.T) {
			p := newHBPairs()
			p.datagrams = true
			p.old["n2"] = old
			startHBGroup(t, p, false, 2*time.Second, 0)
			before := terms(p.b)
			l0 := p.a.beats.local.Load()
			waitHB(t, "10 heartbeats answered locally", func() bool { return p.a.beats.local.Load()-l0 >= 10 })
			dg, frames := p.a.beats.datagramBeats.Load(), p.a.beats.nodeBeats.Load()
			if old {
				if dg != 0 || frames == 0 {
					t.Fatalf("to a node without datagram beats: %d datagrams, %d empty frames; want none and some", dg, frames)
				}
			} else {
				if dg == 0 || frames != 0 {
					t.Fatalf("%d datagrams, %d empty frames; want some and none", dg, frames)
				}
				if !p.a.heard.within("n2", time.Second) || !p.b.heard.within("n1", time.Second) {
					t.Fatal("the nodes do not hear each other's datagrams")
				}
			}
			if after := terms(p.b); after != before {
				t.Fatalf("follower's terms moved from %v to %v", before, after)
			}
		})
	}
}

// The real heartbeats that refresh the leader's local answers to a
// follower node go together: once one shard's is due, the others' come
// along, so that after the first round a frame carries every shard's
// (here two) instead of one frame for each at different beats. Raft's
// timeout is 2 s on the leader, so a refresh is due every second and
// raft heartbeats every 200-400 ms, both longer than the 300 ms beat.
func TestRefreshesOfAllShardsGoTogether(t *testing.T) {
	p := newHBPairs()
	p.datagrams = true
	startHBGroup(t, p, false, 2*time.Second, 4*time.Second)
	waitHB(t, "both shards answered locally", func() bool {
		p.a.beats.mu.Lock()
		peer := p.a.beats.peers["n2"]
		p.a.beats.mu.Unlock()
		if peer == nil {
			return false
		}
		peer.mu.Lock()
		defer peer.mu.Unlock()
		return len(peer.last) == 2
	})
	b0, h0 := p.a.beats.batches.Load(), p.a.beats.beats.Load()
	waitHB(t, "six frames of refreshes", func() bool { return p.a.beats.batches.Load()-b0 >= 6 })
	frames, beats := p.a.beats.batches.Load()-b0, p.a.beats.beats.Load()-h0
	// The first frame may carry one shard's; every later one both.
	if beats < 2*frames-1 {
		t.Fatalf("%d refreshes went in %d frames, want both shards' in each after the first", beats, frames)
	}
}

// When the first follower to stand lacks entries the second has, the
// second refuses its vote and must stand itself: raft forgot the leader
// when the candidate's newer term came, and no one else will stand (the
// followers' own raft timeout is an hour here). The follower that stands
// first on shard 0 is cut off from the leader's appends (the heartbeat
// streams still flow, so it hears the leader's node), messages commit on
// the leader and the other follower, then the leader's node goes silent.
func TestFollowerWithNewerLogStandsAfterRefusing(t *testing.T) {
	p := newHBGroup(t, true, 200*time.Millisecond, time.Hour)
	cfg := p.a.Raft(0).GetConfiguration().Configuration()
	behind, ahead := p.b, p.c
	if standRank(0, cfg, "n1", "n2") != 0 {
		behind, ahead = p.c, p.b
	}
	behindID := behind.opts.NodeID
	p.mu.Lock()
	p.cut[[3]string{"n1", behindID, "0"}] = true
	p.mu.Unlock()
	// Drop the leader's connections to the lagging follower's shard 0:
	// every new one fails to dial.
	p.trs[behindID][0].CloseStreams()
	user := int64(1)
	for ShardOf(user, 2) != 0 {
		user++
	}
	for i := range 5 {
		if _, _, err := p.a.Send(context.Background(), 100, wire.NewMessageRequest{RequestID: int64(i + 1), ToUserID: user, Content: "x", CreatedAt: time.Now().UTC().Format(time.RFC3339Nano)}); err != nil {
			t.Fatal(err)
		}
	}
	waitHB(t, "the follower ahead to hold the messages", func() bool {
		return ahead.Raft(0).LastIndex() >= p.a.Raft(0).LastIndex()
	})
	if b, a := behind.Raft(0).LastIndex(), ahead.Raft(0).LastIndex(); b >= a {
		t.Fatalf("%s's log (last index %d) is not behind %s's (%d)", behindID, b, ahead.opts.NodeID, a)
	}
	waitHB(t, "both followers hearing n1 and each other", func() bool {
		return p.b.heard.within("n1", time.Second) && p.c.heard.within("n1", time.Second) &&
			p.b.hearsOthers("n1", time.Second) && p.c.hearsOthers("n1", time.Second)
	})
	p.mu.Lock()
	delete(p.logs, "n1")
	p.mu.Unlock()
	p.a.Close()
	waitHB(t, "a new leader of shard 0", func() bool {
		return ahead.Raft(0).State() == raft.Leader
	})
	if behind.stood.Load() == 0 {
		t.Fatalf("%s, the first to stand, did not", behindID)
	}
}

// A lone voter stands at once rather than after raft's timeout (an hour
// here).
func TestLoneVoterStandsAtOnce(t *testing.T) {
	p := newHBPairs()
	l := openHBLog(t, p, "n1", false, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := l.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
}

// A shard's followers take turns to stand: distinct ranks, the same on
// every node, and the order differs between shards.
func TestStandRanks(t *testing.T) {
	var c raft.Configuration
	for _, id := range []raft.ServerID{"a", "b", "c", "d"} {
		c.Servers = append(c.Servers, raft.Server{ID: id, Suffrage: raft.Voter})
	}
	c.Servers = append(c.Servers, raft.Server{ID: "e", Suffrage: raft.Nonvoter})
	firsts := map[raft.ServerID]bool{}
	for shard := range 16 {
		seen := map[int]raft.ServerID{}
		for _, id := range []raft.ServerID{"b", "c", "d"} {
			r := standRank(shard, c, "a", id)
			if other, dup := seen[r]; dup || r < 0 || r > 2 {
				t.Fatalf("shard %d: %s has rank %d (also %q)", shard, id, r, other)
			}
			seen[r] = id
		}
		firsts[seen[0]] = true
	}
	if len(firsts) < 2 {
		t.Fatalf("one follower stands first on all 16 shards: %v", firsts)
	}
}

// A follower that hears no other node does not stand when its leader's
// node goes silent: it is more likely cut off itself, and standing would
// only raise its term. Here every heartbeat stream is cut before the
// leader closes (raft's own RPCs still flow between n2 and n3), and the
// test checks past the silence after which a follower would stand.
func TestFollowerHearingNobodyDoesNotStand(t *testing.T) {
	p := newHBGroup(t, true, 200*time.Millisecond, time.Hour)
	waitHB(t, "n2 and n3 hearing n1 and each other", func() bool {
		return p.b.heard.within("n1", time.Second) && p.c.heard.within("n1", time.Second) &&
			p.b.hearsOthers("n1", time.Second) && p.c.hearsOthers("n1", time.Second)
	})
	p.mu.Lock()
	p.down = true
	delete(p.logs, "n1")
	p.mu.Unlock()
	cutStreams(p.b)
	cutStreams(p.c)
	p.a.Close()
	cut := time.Now()
	waitHB(t, "past the silence after which a follower stands", func() bool {
		return time.Since(cut) > leaderSilent+2*standStep+2*hbBeatEvery
	})
	if n := p.b.stood.Load() + p.c.stood.Load(); n != 0 {
		t.Fatalf("followers hearing nobody stood %d times", n)
	}
}

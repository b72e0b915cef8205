package relaylog

import (
	"fmt"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Failover by node silence: the follower half of the node beats
// (hbbatch.go).
//
// A leader answers its heartbeats itself while beats come from the
// follower's node, and its raft runs with a long heartbeat timeout
// (Options.HeartbeatTimeout, 4 s by default, three times that while
// leading: heartbeats every 1.2-2.4 s, a real one reaching each follower
// about every two seconds). A follower's own
// raft would wait that timeout and up to as long again before it stood
// for election. Instead, every hbBeatEvery the log checks each shard it
// follows: when nothing came from the leader's node for leaderSilent, and
// the leader's raft has not reached the follower's for as long, the
// follower stands at once, as if the leader had handed it the
// leadership. So that a shard's followers do not stand together and split
// the vote, they take turns standStep apart, in an order fixed per shard
// (standRank); a follower that granted its vote to another that stood
// meanwhile does not stand (raft counts the vote as contact). One that
// refused it, its own log holding entries the candidate lacks, stands at
// its next check: no one else who can win will. To stand, the log hands
// its raft a TimeoutNow, the last step of hashicorp/raft's leadership
// transfer, and the vote it asks for carries the transfer flag, which
// the other followers honour even while they still know the old leader.
// Raft's safety does not depend on who stands when: a follower whose log
// lacks committed entries is refused by the others. A follower stands
// once per term, only for a leader whose node it had heard from (a node
// it never heard, an older version without these streams, is left to
// raft's own timeout), and only while it hears another node (one that
// hears nobody is more likely cut off itself: standing would raise its
// term and cost an election when it comes back).
//
// A lone voter (a new or restarted node of one) stands the same way at
// once instead of after the timeout.
//
// So the failover after a leader's node dies takes leaderSilent less up
// to a beat, plus up to a tick and an election round (0.6-1.2 s and the
// vote); the e2e suite measures it.
const (
	leaderSilent = 3 * hbBeatEvery
	standStep    = 300 * time.Millisecond
	// heardRecently: a follower stands only if it heard another node this
	// recently (a frame comes from each every beat or so), well after the
	// leader's node went silent: a follower cut off from everyone stops
	// hearing the others at most a beat after the leader, so by the time
	// the leader is leaderSilent silent the others are not this recent.
	heardRecently = hbBeatEvery + hbBeatEvery/2
	// heardKeep is how long a node with no stream left stays in heardFrom.
	heardKeep = time.Minute
)

// heardFrom is when each node last sent this one a frame on its heartbeat
// stream (ServeHeartbeats) or a datagram beat (Log.HeardBeat). An entry
// lives while its node has a stream and heardKeep after the last of
// either.
type heardFrom struct {
	mu sync.Mutex
	m  map[string]*heardEntry
}

type heardEntry struct {
	streams int
	at      atomic.Int64 // Unix ns
}

// entryLocked is node's entry, made if need be. h.mu is held.
func (h *heardFrom) entryLocked(node string) *heardEntry {
	if h.m == nil {
		h.m = make(map[string]*heardEntry)
	}
	e := h.m[node]
	if e == nil {
		e = &heardEntry{}
		h.m[node] = e
	}
	return e
}

// open registers a stream from node and returns the clock its frames set.
func (h *heardFrom) open(node string) *atomic.Int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.entryLocked(node)
	e.streams++
	e.at.Store(time.Now().UnixNano())
	return &e.at
}

func (h *heardFrom) close(node string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e := h.m[node]; e != nil {
		e.streams--
	}
}

// beat records a datagram beat from node (Log.HeardBeat).
func (h *heardFrom) beat(node string) {
	h.mu.Lock()
	e := h.entryLocked(node)
	h.mu.Unlock()
	e.at.Store(time.Now().UnixNano())
}

// last is when node last sent a frame (known false: never, or too long
// ago to be kept).
func (h *heardFrom) last(node string) (t time.Time, known bool) {
	h.mu.Lock()
	e := h.m[node]
	h.mu.Unlock()
	if e == nil {
		return time.Time{}, false
	}
	return time.Unix(0, e.at.Load()), true
}

// anyWithin reports whether a node other than not sent a frame in the
// last d.
func (h *heardFrom) anyWithin(not string, d time.Duration) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for node, e := range h.m {
		if node != not && time.Since(time.Unix(0, e.at.Load())) < d {
			return true
		}
	}
	return false
}

// within reports whether node sent a frame in the last d.
func (h *heardFrom) within(node string, d time.Duration) bool {
	t, ok := h.last(node)
	return ok && time.Since(t) < d
}

// sweep forgets nodes without a stream heard from longer than heardKeep
// ago.
func (h *heardFrom) sweep() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for node, e := range h.m {
		if e.streams <= 0 && time.Since(time.Unix(0, e.at.Load())) > heardKeep {
			delete(h.m, node)
		}
	}
}

// tickLoop, every hbBeatEvery until the log closes, sends the node beats
// due and checks whether a shard should stand: one wake-up for both.
func (l *Log) tickLoop() {
	defer l.wg.Done()
	t := time.NewTicker(hbBeatEvery)
	defer t.Stop()
	var peers []*hbPeer
	var cfgs []raft.Configuration
	wanted := map[string]bool{}
	for n := 1; ; n++ {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		// One read of each shard's configuration per tick serves both
		// the beats and the stand check.
		clear(wanted)
		cfgs = cfgs[:0]
		for _, s := range l.shards {
			f := s.raft.GetConfiguration()
			var c raft.Configuration
			if f.Error() == nil {
				c = f.Configuration()
			}
			cfgs = append(cfgs, c)
			for _, srv := range c.Servers {
				if srv.Suffrage == raft.Voter && string(srv.ID) != l.opts.NodeID {
					wanted[string(srv.ID)] = true
				}
			}
		}
		peers = l.beats.beatAll(peers, wanted)
		for i, s := range l.shards {
			s.maybeStand(cfgs[i])
		}
		if n%int(heardKeep/hbBeatEvery) == 0 {
			l.heard.sweep()
		}
	}
}

// silent reports whether this node heard from node once and has heard
// nothing from it for d: no frame on its stream to this node, no answer
// on this node's stream to it.
func (l *Log) silent(node string, d time.Duration) bool {
	in, inKnown := l.heard.last(node)
	out, outKnown := l.beats.lastAnswer(node)
	if !inKnown && !outKnown {
		return false
	}
	return time.Since(in) >= d && time.Since(out) >= d
}

// hearsOthers: a node other than not sent a frame or an answer to this
// one within d.
func (l *Log) hearsOthers(not string, d time.Duration) bool {
	return l.heard.anyWithin(not, d) || l.beats.anyAnswerWithin(not, d)
}

// maybeStand hands the shard's raft a TimeoutNow when it should stand
// (see above), at most once per term; cfg is the shard's latest raft
// configuration.
func (s *shard) maybeStand(cfg raft.Configuration) {
	if s.guard == nil {
		return
	}
	// Every tick, leading or not: a replica that led last and lost its
	// leadership is left to raft's timeout (the self case below), not
	// made to stand against the leader it followed before.
	_, leader := s.raft.LeaderWithID()
	if leader != "" {
		s.lastLeader = leader
	}
	if s.raft.State() != raft.Follower {
		return
	}
	term := s.raft.CurrentTerm()
	if s.stoodTerm == term {
		return
	}
	if !isVoter(cfg, raft.ServerID(s.log.opts.NodeID)) {
		return
	}
	if leader == "" && len(cfg.Servers) > 1 {
		// Raft forgets its leader when a candidate asks for its vote
		// with a newer term, even a candidate it refuses because its own
		// log is newer. Then no one stood who can win: the candidate
		// lacks entries this replica has, so this replica must stand
		// itself, against the leader it followed.
		leader = s.lastLeader
	}
	switch {
	case leader == "":
		// A lone voter need not wait for its own timeout.
		if len(cfg.Servers) != 1 {
			return
		}
	case string(leader) == s.log.opts.NodeID:
		return
	default:
		// Silent means both: no frame from the leader's node, and no
		// raft message from the leader (which reaches this node as raft's
		// own RPCs while the beat stream between the nodes is down, as
		// after a partition heals).
		rank := standRank(s.id, cfg, leader, raft.ServerID(s.log.opts.NodeID))
		wait := leaderSilent + time.Duration(rank)*standStep
		if time.Since(s.raft.LastContact()) < wait || !s.log.silent(string(leader), wait) {
			return
		}
		// A follower that hears no other node either is more likely cut
		// off itself: standing would only raise its term, which costs the
		// cluster an election when it comes back. Raft's timeout (with
		// its pre-vote, which raises no term) takes over.
		if len(cfg.Servers) > 2 && !s.log.hearsOthers(string(leader), heardRecently) {
			return
		}
		s.log.opts.Logger.Info("relaylog: leader's node silent, standing for election", "shard", s.id, "leader", leader, "term", term)
	}
	if s.guard.timeoutNow() {
		s.stoodTerm = term
		s.log.stood.Add(1)
	}
}

func isVoter(c raft.Configuration, id raft.ServerID) bool {
	for _, srv := range c.Servers {
		if srv.ID == id {
			return srv.Suffrage == raft.Voter
		}
	}
	return false
}

// standRank is self's turn to stand among shard's voters other than
// leader: their order by a hash of shard and id, so that it differs
// between shards and every node computes the same.
func standRank(shard int, c raft.Configuration, leader, self raft.ServerID) int {
	key := func(id raft.ServerID) uint64 {
		h := fnv.New64a()
		fmt.Fprintf(h, "%d/%s", shard, id)
		return h.Sum64()
	}
	mine, rank := key(self), 0
	for _, srv := range c.Servers {
		if srv.Suffrage == raft.Voter && srv.ID != leader && srv.ID != self {
			if k := key(srv.ID); k < mine || (k == mine && srv.ID < self) {
				rank++
			}
		}
	}
	return rank
}

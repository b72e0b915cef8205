package relaylog

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/edgenode/edgenode/wire/nodewire"
)

// Coalesced heartbeats. hashicorp/raft's leader sends each follower of
// each shard a heartbeat every HeartbeatTimeout/10 to /5 (50-100 ms at
// 500 ms), each an RPC of its own: with S shards on three voters that is
// about 26·S RPCs a second and their answers, each a QUIC packet and a
// system call on both sides, whatever the load (an idle three-node cluster
// used 0.52-0.68 cores in all at 16 shards; docs/PERFORMANCE.md). Here a
// node sends the heartbeats of all its leaders to one follower node
// together: a heartbeat waits for the next flush to that node (at most
// hbFlush), goes in one frame with the others waiting
// (nodewire.HeartbeatBatch, over Options.Heartbeats: the mesh's
// KindHeartbeat streams), and the follower writes the answers of a batch
// together once all are in, or hbAnswerLinger after the first, so that a
// shard busy on disk holds back no other for longer.
//
// A heartbeat that reaches its follower's raft goes through the
// transport's consumer channel, as SerialHeartbeats sends them, and the
// answer is that raft's. A heartbeat's period grows by at most hbFlush (to
// 150 ms), far inside the 500 ms timeout. Should the batch path fail (a
// node of a version without it, a broken stream), the heartbeats to that
// node go as raft's RPCs for hbDownFor, and then the batch path is tried
// again.
//
// Node beats and local answers. Most heartbeats need not travel at all:
// every hbBeatEvery a node sends each node it shares a shard with a node
// beat, a datagram outside QUIC (Options.Beat, the mesh's Beat; each of
// the two nodes beats the other and nobody answers), or, to a node of an
// older build, an empty batch on the stream, which the node answers at
// once (of two nodes with streams to each other only the one with the
// lower id beats; the other hears its beats and it hears the answers). While a frame came from the
// follower's node within a quarter of raft's heartbeat timeout and the
// shard's follower there answered a real heartbeat of the same term
// within the timeout, the sender answers that shard's heartbeat itself
// with the follower's last answer (CockroachDB's quiesced ranges lean on
// node liveness the same way); past half the timeout a real heartbeat,
// which nothing waits for, goes on the stream at the next node beat to
// refresh it, and the other shards' answers from that node go along
// (alignLocked), so that a node's refreshes to another share one frame.
// A pair of shard and follower then costs a real heartbeat every one to
// two seconds (with the default 4 s timeout), a node pair about one frame
// each way every two seconds, and the beats cost the same whatever the
// number of shards. The followers
// rely on the same beats to stand for election when the leader's node
// goes silent (stand.go).

const (
	// hbFlush is how long a heartbeat waits for others to the same node.
	hbFlush = 50 * time.Millisecond
	// hbAnswerTimeout bounds the wait for an answer (raft's own RPCs wait
	// up to the transport's timeout, 10 s).
	hbAnswerTimeout = 5 * time.Second
	// hbDownFor is how long heartbeats to a node go as raft's RPCs after
	// the batch path to it failed.
	hbDownFor = 5 * time.Second
	// hbMaxInflight bounds the heartbeats a node answers at once on one
	// stream; beyond, a heartbeat is answered with an error at once.
	hbMaxInflight = 4 * nodewire.MaxHeartbeatsPerBatch
	// hbMaxPeers bounds the nodes the sender keeps state for: past it,
	// peers without a stream or a waiting heartbeat (nodes gone, or whose
	// batch path failed) are forgotten when a new one is added.
	hbMaxPeers = 256
	// hbBeatEvery is how often a node beat goes to a node (when no other
	// frame went in the meantime, and the node does not beat this one).
	// With the beats, their answers, QUIC's acknowledgements of both and
	// the wake-ups they cause, the beats were the largest share of an idle
	// node's wake-ups at 200 ms (a runtime trace of an idle node of three,
	// 16 shards); 300 ms with raft's 4 s timeout took an idle three-node
	// cluster of 16 shards from 0.055-0.064 to 0.042-0.047 cores
	// (docs/PERFORMANCE.md) and the failover after a leader's death from
	// at most 0.8 s to at most 1.2 s and the vote (stand.go).
	hbBeatEvery = 300 * time.Millisecond
)

// errHBDown: the batch path to a node is not usable now; the heartbeat
// goes as raft's own RPC.
var errHBDown = errors.New("relaylog: heartbeat batches unavailable")

// HeartbeatDial opens a stream for heartbeat batches to a node (the
// mesh's KindHeartbeat), which answers it with Log.ServeHeartbeats.
type HeartbeatDial func(ctx context.Context, node string) (net.Conn, error)

// isHeartbeat reports whether req is a raft heartbeat (the test of
// hashicorp/raft's NetworkTransport, with the leader's address taken from
// the RPC header, which raft v1.8 always fills; the deprecated Leader
// field it also fills is not carried: raft reads the header first).
func isHeartbeat(req *raft.AppendEntriesRequest) bool {
	return req.Term != 0 && len(req.RPCHeader.Addr) > 0 &&
		req.PrevLogEntry == 0 && req.PrevLogTerm == 0 && len(req.Entries) == 0 && req.LeaderCommitIndex == 0
}

// hbSender batches this node's heartbeats per follower node.
type hbSender struct {
	dial  HeartbeatDial
	self  string
	heard *heardFrom
	flush time.Duration

	mu     sync.Mutex
	peers  map[string]*hbPeer
	closed bool
	// A heartbeat is answered locally only while a frame came from the
	// follower's node within fresh (a quarter of the heartbeat timeout)
	// and the shard's follower answered a real heartbeat within twice
	// realEvery; past realEvery (half the timeout: raft's follower waits
	// at least the timeout) a real one refreshes the answer. realEvery in
	// ns; tests set 0 to send every heartbeat.
	fresh     time.Duration
	realEvery atomic.Int64

	// sendBeat sends a node beat as a datagram (Options.Beat) to the nodes
	// datagram approves (those that take them); nil: node beats go on the
	// streams.
	sendBeat func(node string) error
	datagram func(node string) bool
	// leads reports whether this node's replica of shard leads in term
	// (refreshLocked); nil: always.
	leads func(shard int, term uint64) bool

	// Counts, for the metrics and tests: frames sent, heartbeats sent in
	// them, heartbeats sent as raft's RPCs because the batch path failed,
	// heartbeats answered locally, node beats sent on streams and as
	// datagrams.
	batches, beats, direct, local, nodeBeats, datagramBeats atomic.Int64
}

// newHBSender: self is this node's id; heard is when other nodes' streams
// to this one last carried a frame (ServeHeartbeats); timeout is raft's
// heartbeat timeout.
func newHBSender(dial HeartbeatDial, self string, heard *heardFrom, timeout time.Duration) *hbSender {
	s := &hbSender{dial: dial, self: self, heard: heard, flush: hbFlush, peers: make(map[string]*hbPeer), fresh: timeout / 4}
	s.realEvery.Store(int64(timeout / 2))
	return s
}

// hbPeer is the batch path to one node.
type hbPeer struct {
	s    *hbSender
	node string

	mu         sync.Mutex
	queue      []*hbCall
	flushing   bool // a flush is scheduled
	connecting bool // nodeBeat is opening the stream
	conn       *hbConn
	nextID     uint64
	downUntil  time.Time
	sent       time.Time // the last frame written on conn
	answered   time.Time // the last answer read on conn
	// last is each shard's last successful real heartbeat to this node,
	// whose answer is given locally meanwhile; one per shard.
	last map[int]hbLast
}

type hbLast struct {
	conn       *hbConn // the stream it was answered on
	to         string  // the follower's incarnation
	term       uint64
	at         time.Time // when it was sent
	resp       raft.AppendEntriesResponse
	refreshing bool // a real heartbeat to refresh it is on its way
	// beat is the real heartbeat answered, sent again to refresh the
	// answer (refreshLocked).
	beat nodewire.Heartbeat
}

type hbConn struct {
	c     net.Conn
	wmu   sync.Mutex         // one frame written at a time
	calls map[uint64]*hbCall // sent, not answered; guarded by hbPeer.mu
}

// write writes f on the stream.
func (c *hbConn) write(f any) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.c.SetWriteDeadline(time.Now().Add(hbAnswerTimeout))
	return nodewire.WriteNodeFrame(c.c, f)
}

type hbCall struct {
	beat  nodewire.Heartbeat
	ans   nodewire.HeartbeatAnswer
	err   error
	done  chan struct{}
	conn  *hbConn // the stream it went on; guarded by hbPeer.mu
	at    time.Time
	async bool // a refresh nobody waits for (recordLocked keeps its answer)
}

func (s *hbSender) peer(node string) *hbPeer {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	p := s.peers[node]
	if p == nil {
		if len(s.peers) >= hbMaxPeers {
			for id, q := range s.peers {
				if q.idle() {
					delete(s.peers, id)
				}
			}
		}
		p = &hbPeer{s: s, node: node, last: make(map[int]hbLast)}
		s.peers[node] = p
	}
	return p
}

// idle: no stream, nothing waiting for a flush.
func (p *hbPeer) idle() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conn == nil && len(p.queue) == 0 && !p.flushing && !p.connecting
}

// beat sends req, shard's heartbeat to target, in the next batch to
// target's node and fills resp with the answer, or answers it locally
// (see "Node beats and local answers"). errHBDown: send it as raft's own
// RPC instead.
func (s *hbSender) beat(shard int, target raft.ServerAddress, req *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	node, inc := nodewire.SplitRaftAddress(string(target))
	p := s.peer(node)
	if p == nil {
		return errHBDown
	}
	now := time.Now()
	hb := nodewire.Heartbeat{
		Shard: shard, To: inc, ProtocolVersion: int(req.ProtocolVersion),
		HeaderID: req.RPCHeader.ID, HeaderAddr: req.RPCHeader.Addr, Term: req.Term,
	}
	p.mu.Lock()
	if last, ok := p.last[shard]; ok && p.conn != nil && last.conn == p.conn && last.to == inc && last.term == req.Term &&
		p.aliveLocked(now, s.fresh) {
		if now.Sub(last.at) < 2*time.Duration(s.realEvery.Load()) {
			// Answered locally. Past realEvery a real heartbeat
			// refreshes the answer at the next node beat
			// (refreshLocked); until it is answered (or for another
			// realEvery) the last answer stands.
			*resp = last.resp
			p.mu.Unlock()
			s.local.Add(1)
			return nil
		}
	}
	if now.Before(p.downUntil) {
		p.mu.Unlock()
		return errHBDown
	}
	p.nextID++
	hb.ID = p.nextID
	c := &hbCall{done: make(chan struct{}), at: now, beat: hb}
	p.queue = append(p.queue, c)
	if !p.flushing {
		p.flushing = true
		time.AfterFunc(s.flush, p.flushNow)
	}
	p.mu.Unlock()

	t := time.NewTimer(hbAnswerTimeout)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		p.forget(c)
		return fmt.Errorf("relaylog: heartbeat to %s: no answer in %v", target, hbAnswerTimeout)
	}
	if c.err != nil {
		return c.err
	}
	if c.ans.Err != "" {
		return fmt.Errorf("relaylog: heartbeat to %s: %s", target, c.ans.Err)
	}
	*resp = answerResponse(&c.ans)
	return nil
}

func answerResponse(a *nodewire.HeartbeatAnswer) raft.AppendEntriesResponse {
	return raft.AppendEntriesResponse{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersion(a.ProtocolVersion), ID: a.HeaderID, Addr: a.HeaderAddr},
		Term:      a.Term, LastLog: a.LastLog, Success: a.Success, NoRetryBackoff: a.NoRetryBackoff,
	}
}

// recordLocked keeps a's answer to c, a real heartbeat, as its shard's
// local answer when it is a success in c's term, and drops the shard's
// local answer otherwise. p.mu is held.
func (p *hbPeer) recordLocked(c *hbCall, a *nodewire.HeartbeatAnswer) {
	if a.Err == "" && a.Success && a.Term == c.beat.Term && c.conn != nil {
		p.last[c.beat.Shard] = hbLast{conn: c.conn, to: c.beat.To, term: c.beat.Term, at: c.at, resp: answerResponse(a), beat: c.beat}
	} else {
		delete(p.last, c.beat.Shard)
	}
}

// aliveLocked: a frame came from p's node within d (an answer on this
// stream, or a frame on its own stream to this node). p.mu is held.
func (p *hbPeer) aliveLocked(now time.Time, d time.Duration) bool {
	return now.Sub(p.answered) < d || p.s.heard.within(p.node, d)
}

// lastAnswer is when node last answered a frame on this node's stream to
// it (known false: never).
func (s *hbSender) lastAnswer(node string) (t time.Time, known bool) {
	s.mu.Lock()
	p := s.peers[node]
	s.mu.Unlock()
	if p == nil {
		return time.Time{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.answered, !p.answered.IsZero()
}

// forget drops c, whose caller stopped waiting.
func (p *hbPeer) forget(c *hbCall) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil {
		delete(p.conn.calls, c.beat.ID)
	}
}

// flushNow sends what waits, on the stream to the node (opened if need
// be).
func (p *hbPeer) flushNow() {
	p.mu.Lock()
	batch := p.queue
	p.queue, p.flushing = nil, false
	conn := p.conn
	p.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	if conn == nil {
		var err error
		if conn, err = p.connect(); err != nil {
			p.fail(nil, batch)
			return
		}
	}
	frame := nodewire.HeartbeatBatch{Beats: make([]nodewire.Heartbeat, len(batch))}
	p.mu.Lock()
	for i, c := range batch {
		frame.Beats[i] = c.beat
		c.conn = conn
		conn.calls[c.beat.ID] = c
	}
	p.sent = time.Now()
	p.mu.Unlock()
	if err := conn.write(&frame); err != nil {
		p.fail(conn, nil)
		return
	}
	p.s.batches.Add(1)
	p.s.beats.Add(int64(len(batch)))
}

// connect opens the stream to the node and starts reading its answers.
func (p *hbPeer) connect() (*hbConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	c, err := p.s.dial(ctx, p.node)
	cancel()
	if err != nil {
		return nil, err
	}
	conn := &hbConn{c: c, calls: make(map[uint64]*hbCall)}
	p.mu.Lock()
	if p.conn != nil { // another flush connected meanwhile
		p.mu.Unlock()
		c.Close()
		return p.connOrNil()
	}
	p.conn = conn
	p.mu.Unlock()
	go p.read(conn)
	return conn, nil
}

func (p *hbPeer) connOrNil() (*hbConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == nil {
		return nil, errHBDown
	}
	return p.conn, nil
}

// read hands each answer to its call until the stream fails.
func (p *hbPeer) read(conn *hbConn) {
	br := bufio.NewReader(conn.c)
	for {
		var a nodewire.HeartbeatAnswer
		if err := nodewire.ReadNodeFrame(br, &a); err != nil {
			p.fail(conn, nil)
			return
		}
		p.mu.Lock()
		if p.conn == conn {
			p.answered = time.Now()
		}
		c := conn.calls[a.ID] // none for a node beat's answer (ID 0)
		delete(conn.calls, a.ID)
		if c != nil {
			p.recordLocked(c, &a)
		}
		p.mu.Unlock()
		if c != nil {
			c.ans = a
			close(c.done)
		}
	}
}

// fail ends conn (if not nil) and every call sent on it, and the calls of
// batch, with errHBDown: they go as raft's RPCs, and so does every
// heartbeat to the node for hbDownFor.
func (p *hbPeer) fail(conn *hbConn, batch []*hbCall) {
	p.mu.Lock()
	p.downUntil = time.Now().Add(hbDownFor)
	if conn != nil {
		if p.conn == conn {
			p.conn = nil
		}
		for id, c := range conn.calls {
			batch = append(batch, c)
			delete(conn.calls, id)
		}
	}
	p.mu.Unlock()
	if conn != nil {
		conn.c.Close()
	}
	for _, c := range batch {
		c.err = errHBDown
		close(c.done)
	}
}

// beatAll sends the node beats due (Log.tickLoop calls it every
// hbBeatEvery), opening a stream to each node of wanted (the nodes this
// one shares a shard with) that has none, so that every two such nodes
// hear each other even when neither leads a shard the other follows
// (stand.go: a follower that hears no other node does not stand). peers
// is scratch space, returned for the next call.
func (s *hbSender) beatAll(peers []*hbPeer, wanted map[string]bool) []*hbPeer {
	for node := range wanted {
		s.peer(node) // gets or creates
	}
	peers = peers[:0]
	s.mu.Lock()
	for _, p := range s.peers {
		peers = append(peers, p)
	}
	s.mu.Unlock()
	for _, p := range peers {
		p.nodeBeat(wanted[p.node])
	}
	return peers
}

// anyAnswerWithin: a node other than not answered on this node's stream
// to it within d.
func (s *hbSender) anyAnswerWithin(not string, d time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for node, p := range s.peers {
		if node == not {
			continue
		}
		p.mu.Lock()
		ok := time.Since(p.answered) < d
		p.mu.Unlock()
		if ok {
			return true
		}
	}
	return false
}

var emptyBatch = &nodewire.HeartbeatBatch{}

// nodeBeat sends the heartbeats waiting for the beat to p's node, and a
// node beat: a datagram when the node takes them (wanted: to the nodes
// this one shares a shard with, each way), else an empty batch, if there
// is a stream and nothing else went on it for half a beat period. Of two
// nodes that beat each other on streams only the one with the lower id
// does: the other hears its beats, and the first its answers.
func (p *hbPeer) nodeBeat(wanted bool) {
	now := time.Now()
	s := p.s
	byDatagram := s.sendBeat != nil && s.datagram(p.node)
	if byDatagram && wanted {
		// Sent before any frame: on a node's first beat the stream is
		// not open yet, and the datagram needs only the mesh's
		// connection (ErrNoConn until there is one).
		if s.sendBeat(p.node) == nil {
			s.datagramBeats.Add(1)
		}
	}
	p.mu.Lock()
	p.refreshLocked(now)
	if len(p.queue) > 0 {
		p.mu.Unlock()
		p.flushNow()
		return
	}
	conn := p.conn
	if conn == nil && wanted && !p.connecting && !now.Before(p.downUntil) {
		// The stream carries the real heartbeats, and opening it opens
		// the connection whose key signs the datagrams.
		p.connecting = true
		p.mu.Unlock()
		go func() {
			if _, err := p.connect(); err != nil {
				p.fail(nil, nil)
			}
			p.mu.Lock()
			p.connecting = false
			p.mu.Unlock()
		}()
		return
	}
	if byDatagram || conn == nil || now.Sub(p.sent) < hbBeatEvery/2 ||
		(s.self > p.node && s.heard.within(p.node, hbBeatEvery+hbBeatEvery/2)) {
		p.mu.Unlock()
		return
	}
	p.sent = now
	p.mu.Unlock()
	if err := conn.write(emptyBatch); err != nil {
		p.fail(conn, nil)
		return
	}
	s.nodeBeats.Add(1)
}

// refreshLocked queues, at a node beat, a real heartbeat to refresh each
// local answer from this node that is realEvery old, and when one is due,
// each other one at least a quarter of that old: the shards' refreshes to
// a node then fall due together and go in one frame about every
// realEvery, instead of one frame at most beats (a node leading five
// shards refreshed each every two seconds: 2.5 frames a second to each
// follower node, each with its answer and QUIC's acknowledgement). Only
// for shards this node still leads in the answer's term (hbSender.leads):
// a refresh is a heartbeat in the leader's name, and nothing but raft's
// own heartbeats may keep a follower from electing once the leader is
// gone. Nothing waits for a refresh; its answer replaces the local one
// (recordLocked). p.mu is held.
func (p *hbPeer) refreshLocked(now time.Time) {
	every := time.Duration(p.s.realEvery.Load())
	if every <= 0 || p.conn == nil || len(p.last) == 0 {
		return
	}
	live := func(shard int, last hbLast) bool {
		return !last.refreshing && last.conn == p.conn && last.beat.Term != 0 && (p.s.leads == nil || p.s.leads(shard, last.term))
	}
	due := len(p.queue) > 0
	for shard, last := range p.last {
		if !due && now.Sub(last.at) >= every && live(shard, last) {
			due = true
		}
	}
	if !due {
		return
	}
	queued := make(map[int]bool, len(p.queue))
	for _, c := range p.queue {
		queued[c.beat.Shard] = true
	}
	for shard, last := range p.last {
		if queued[shard] || now.Sub(last.at) < every/4 || !live(shard, last) {
			continue
		}
		last.refreshing = true
		p.last[shard] = last
		p.nextID++
		hb := last.beat
		hb.ID = p.nextID
		p.queue = append(p.queue, &hbCall{beat: hb, at: now, async: true, done: make(chan struct{})})
	}
}

// close ends every stream; heartbeats go as raft's RPCs from now on.
func (s *hbSender) close() {
	s.mu.Lock()
	s.closed = true
	peers := s.peers
	s.peers = nil
	s.mu.Unlock()
	for _, p := range peers {
		p.mu.Lock()
		conn := p.conn
		p.mu.Unlock()
		if conn != nil {
			p.fail(conn, nil)
		}
	}
}

// HeardBeat takes a datagram node beat from node (Options.Beat on the
// sender; the mesh checked who sent it): node is alive, as when a frame
// comes on its heartbeat stream.
func (l *Log) HeardBeat(node string) { l.heard.beat(node) }

// ServeHeartbeats answers the heartbeat batches node from sends on conn
// (the mesh's KindHeartbeat) until the stream ends: each heartbeat goes
// to its shard's raft, and the answers of a batch are written together
// once all are in, or hbAnswerLinger after the first, so that a shard
// busy on disk delays no other for longer. A node beat (an empty batch)
// is answered at once. Every frame tells this node's followers that
// from is alive (stand.go).
func (l *Log) ServeHeartbeats(conn net.Conn, from string) {
	defer conn.Close()
	heard := l.heard.open(from)
	defer l.heard.close(from)
	answers := make(chan nodewire.HeartbeatAnswer, 64)
	done := make(chan struct{})
	defer close(done)
	go func() { // a closed log answers nothing, node beats included
		select {
		case <-l.stop:
			conn.Close()
		case <-done:
		}
	}()
	var pending atomic.Int64 // heartbeats read, answers not yet written
	go writeAnswers(conn, answers, done, &pending)
	br := bufio.NewReader(conn)
	for {
		var b nodewire.HeartbeatBatch
		if err := nodewire.ReadNodeFrame(br, &b); err != nil {
			return
		}
		heard.Store(time.Now().UnixNano())
		if len(b.Beats) == 0 {
			pending.Add(1)
			select {
			case answers <- nodewire.HeartbeatAnswer{}:
			case <-done:
			}
			continue
		}
		for _, h := range b.Beats {
			if pending.Add(1) > hbMaxInflight {
				select {
				case answers <- nodewire.HeartbeatAnswer{ID: h.ID, Err: "too many heartbeats in flight"}:
				case <-done:
				}
				continue
			}
			go func() {
				a := l.heartbeat(&h)
				select {
				case answers <- a:
				case <-done:
				}
			}()
		}
	}
}

// hbAnswerLinger is how long a written answer waits for the others still
// pending before the stream is flushed.
const hbAnswerLinger = 5 * time.Millisecond

// writeAnswers writes answers, flushing when none is pending or
// hbAnswerLinger after the first unflushed one, until done or a write
// fails (which closes conn).
func writeAnswers(conn net.Conn, answers <-chan nodewire.HeartbeatAnswer, done <-chan struct{}, pending *atomic.Int64) {
	bw := bufio.NewWriter(conn)
	linger := time.NewTimer(hbAnswerLinger)
	linger.Stop()
	for {
		var a nodewire.HeartbeatAnswer
		select {
		case <-done:
			return
		case a = <-answers:
		}
		conn.SetWriteDeadline(time.Now().Add(hbAnswerTimeout))
		err := nodewire.WriteNodeFrame(bw, &a)
		pending.Add(-1)
		linger.Reset(hbAnswerLinger)
	more:
		for err == nil && pending.Load() > 0 {
			select {
			case a = <-answers:
				err = nodewire.WriteNodeFrame(bw, &a)
				pending.Add(-1)
			case <-linger.C:
				break more
			case <-done:
				return
			}
		}
		linger.Stop()
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			conn.Close()
			return
		}
	}
}

// heartbeat hands h to its shard's raft and returns raft's answer.
func (l *Log) heartbeat(h *nodewire.Heartbeat) nodewire.HeartbeatAnswer {
	a := nodewire.HeartbeatAnswer{ID: h.ID}
	if h.Shard < 0 || h.Shard >= len(l.shards) {
		a.Err = fmt.Sprintf("no shard %d", h.Shard)
		return a
	}
	if h.To != "" && h.To != l.Incarnation() {
		// As the mesh refuses a raft stream for another incarnation
		// (KindRaftTo): this node's raft data is not the replica the
		// leader addresses.
		a.Err = "another incarnation"
		return a
	}
	g := l.shards[h.Shard].guard
	if g == nil {
		a.Err = "shard without a network transport"
		return a
	}
	respCh := make(chan raft.RPCResponse, 1)
	rpc := raft.RPC{
		Command: &raft.AppendEntriesRequest{
			RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersion(h.ProtocolVersion), ID: h.HeaderID, Addr: h.HeaderAddr},
			Term:      h.Term,
		},
		RespChan: respCh,
	}
	t := time.NewTimer(hbAnswerTimeout)
	defer t.Stop()
	select {
	case g.ch <- rpc:
	case <-g.done:
		a.Err = "shard closed"
		return a
	case <-t.C:
		a.Err = "raft busy"
		return a
	}
	var r raft.RPCResponse
	select {
	case r = <-respCh:
	case <-g.done:
		a.Err = "shard closed"
		return a
	case <-t.C:
		a.Err = "raft busy"
		return a
	}
	if r.Error != nil {
		a.Err = r.Error.Error()
		return a
	}
	resp, ok := r.Response.(*raft.AppendEntriesResponse)
	if !ok {
		a.Err = "unexpected answer"
		return a
	}
	a.ProtocolVersion = int(resp.ProtocolVersion)
	a.HeaderID, a.HeaderAddr = resp.RPCHeader.ID, resp.RPCHeader.Addr
	a.Term, a.LastLog, a.Success, a.NoRetryBackoff = resp.Term, resp.LastLog, resp.Success, resp.NoRetryBackoff
	return a
}

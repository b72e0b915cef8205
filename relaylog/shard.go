package relaylog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Proposer limits: a raft entry carries at most maxBatchCommands commands or
// about maxBatchBytes, and a shard has at most maxInflight entries between
// raft.Apply and commit. With two in flight, one batch fills while the other
// is being fsynced, so batches grow with load instead of with a timer.
const (
	maxBatchCommands = 2048
	maxBatchBytes    = 1 << 20
	maxInflight      = 2
	proposeQueue     = 8192
)

type shard struct {
	id   int
	raft *raft.Raft
	fsm  *fsm
	log  *Log
	// paceMu orders paceHeartbeats' changes of raft's configuration.
	paceMu sync.Mutex
	// guard is the transport's consumer side, where batched heartbeats
	// for this shard go in (nil with an in-memory transport).
	guard *voteGuard
	// features every server of the configuration had when last checked,
	// until featuresUntil (Unix ns): Log.hasFeature.
	features      atomic.Uint64
	featuresUntil atomic.Int64

	propose  chan *proposal
	acks     ackBatch // acknowledgements waiting to be proposed together (ackbatch.go)
	inflight chan struct{}
	waiting  chan pendingEntry
	stop     chan struct{}
	wg       sync.WaitGroup

	// closeMu orders proposals before shutdown: senders hold it shared, and
	// close takes it exclusively before stopping the proposer, so a queued
	// proposal is always answered.
	closeMu sync.RWMutex
	closed  bool

	// serving is true while this node leads the shard and its state
	// machine has applied everything committed before the leadership
	// began: reads and the checks made at proposal see the whole state.
	serving atomic.Bool

	// expiryHeld is when EXPIRED receipts that failed to commit began to
	// hold back this shard's expiry (Unix ns; 0: they do not).
	expiryHeld atomic.Int64

	// stoodTerm is the last term in which tickLoop made this replica
	// stand for election (stand.go); tickLoop's own.
	stoodTerm uint64
	// lastLeader is the last leader tickLoop saw this replica follow (or
	// itself, leading); only tickLoop touches it.
	lastLeader raft.ServerID
}

type proposal struct {
	cmd  command
	res  result
	done chan struct{}
}

type pendingEntry struct {
	f     raft.ApplyFuture
	batch []*proposal
	start time.Time
}

var proposalPool = sync.Pool{New: func() any { return &proposal{done: make(chan struct{}, 1)} }}

func newShard(id int, r *raft.Raft, f *fsm, l *Log, leadership <-chan bool) *shard {
	s := &shard{
		id: id, raft: r, fsm: f, log: l,
		propose:  make(chan *proposal, proposeQueue),
		inflight: make(chan struct{}, maxInflight),
		waiting:  make(chan pendingEntry, maxInflight),
		stop:     make(chan struct{}),
	}
	s.acks = ackBatch{s: s, delay: l.opts.AckBatch}
	s.wg.Add(3)
	go s.proposeLoop()
	go s.completeLoop()
	go s.leadershipLoop(leadership)
	return s
}

// leadershipLoop follows raft's leadership notifications. A new leader first
// waits on a barrier, so that every entry committed by earlier terms (the
// log replayed after a restart, a predecessor's last writes) is applied
// before it serves; then its id generator is moved past the shard's last id.
func (s *shard) leadershipLoop(ch <-chan bool) {
	defer s.wg.Done()
	for {
		select {
		case <-s.stop:
			return
		case leader := <-ch:
			s.paceHeartbeats(leader)
			if !leader {
				if s.serving.Swap(false) {
					s.log.commits.served(s.id, false)
				}
				continue
			}
			if err := s.raft.Barrier(30 * time.Second).Error(); err != nil {
				continue // leadership lost meanwhile; a new notification follows
			}
			if s.raft.State() == raft.Leader {
				s.log.gen.observe(s.fsm.maxID())
				if !s.serving.Swap(true) {
					s.log.commits.served(s.id, true)
				}
			}
		}
	}
}

// leadHeartbeats is how many times the log's raft timeout a replica's
// raft heartbeat timeout is while it leads, on a node with node beats:
// raft's leader heartbeats each follower every tenth to fifth of it, and
// with node beats those are answered locally (hbbatch.go), the real ones
// that keep followers from electing going at the beats every realEvery
// whatever raft's pace; so a leader's heartbeat goroutines need not wake
// every 400-800 ms, one per shard and follower (an idle node's largest
// source of wake-ups after the beats). Three: every 1.2-2.4 s, within
// the 4 s leader lease, which they keep.
const leadHeartbeats = 3

// paceHeartbeats sets raft's heartbeat (and election) timeout to
// leadHeartbeats times the log's while the replica leads, and back when
// it does not (raft then re-arms a follower's timer with the shorter
// value at once), on a log with node beats. raft's election timeout must
// be at least its heartbeat timeout, and a leader's raft waits the
// election timeout for a leadership transfer to end, refusing writes
// meanwhile: so Log.TransferLeadership sets the log's timeout back
// first.
func (s *shard) paceHeartbeats(leading bool) {
	if s.log.beats == nil {
		return
	}
	s.paceMu.Lock()
	defer s.paceMu.Unlock()
	t := s.log.opts.HeartbeatTimeout
	if leading {
		t *= leadHeartbeats
	}
	rc := s.raft.ReloadableConfig()
	if rc.HeartbeatTimeout == t {
		return
	}
	rc.HeartbeatTimeout, rc.ElectionTimeout = t, t
	if err := s.raft.ReloadConfig(rc); err != nil {
		s.log.opts.Logger.Warn("relaylog: raft heartbeat timeout not changed", "shard", s.id, "leading", leading, "err", err)
	}
}

// TransferLeadership hands shard's leadership to server id at addr (to
// any voter raft picks when id is ""), after committing the acknowledgements
// waiting in its batch (FlushAcks) and with raft's timeouts back at the
// log's, so that a transfer that fails stops the shard's writes for the
// log's election timeout, not three times it; a leader that still leads
// after goes back to its slower heartbeats.
func (l *Log) TransferLeadership(shard int, id raft.ServerID, addr raft.ServerAddress) error {
	if shard < 0 || shard >= len(l.shards) {
		return fmt.Errorf("relaylog: no shard %d", shard)
	}
	s := l.shards[shard]
	l.FlushAcks(shard)
	s.paceHeartbeats(false)
	if l.testHookTransfer != nil {
		l.testHookTransfer(s)
	}
	var err error
	if id == "" {
		err = s.raft.LeadershipTransfer().Error()
	} else {
		err = s.raft.LeadershipTransferToServer(id, addr).Error()
	}
	// A notification of the leadership's loss may be on its way to
	// leadershipLoop, which sets the same; the state decides here.
	s.paceHeartbeats(s.raft.State() == raft.Leader)
	return err
}

// do proposes c and waits for its result.
func (s *shard) do(ctx context.Context, c command) (result, error) {
	p, err := s.submit(ctx, c)
	if err != nil {
		return result{}, err
	}
	return p.wait()
}

// submit queues c for the next batch; wait returns its result. Once queued,
// a proposal is answered whatever ctx does: the entry may commit, and the
// caller must not be told it failed when it did not.
func (s *shard) submit(ctx context.Context, c command) (*proposal, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	p := proposalPool.Get().(*proposal)
	p.cmd = c
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		proposalPool.Put(p)
		return nil, ErrClosed
	}
	select {
	case s.propose <- p:
		s.closeMu.RUnlock()
		return p, nil
	case <-ctx.Done():
		s.closeMu.RUnlock()
		proposalPool.Put(p)
		return nil, fmt.Errorf("relaylog: shard %d: %w", s.id, ErrOverloaded)
	}
}

// check fails with a *NotLeaderError unless this node serves the shard:
// only a caught-up leader proposes and answers reads; routing to it is the
// cluster's job.
func (s *shard) check() error {
	if s.serving.Load() {
		return nil
	}
	_, id := s.raft.LeaderWithID()
	leader := string(id)
	if leader == s.log.opts.NodeID {
		leader = "" // leading but still catching up
	}
	return &NotLeaderError{Shard: s.id, Leader: leader}
}

func (p *proposal) wait() (result, error) {
	<-p.done
	r := p.res
	p.res, p.cmd = result{}, command{}
	proposalPool.Put(p)
	return r, r.err
}

func (s *shard) proposeLoop() {
	defer s.wg.Done()
	defer close(s.waiting)
	var cmds []*command
	// carry is a proposal taken from the queue that could not join the
	// batch before it: the first of the next.
	var carry *proposal
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-s.propose:
			case <-s.stop:
				s.failQueued()
				return
			}
		}
		select {
		case s.inflight <- struct{}{}:
		case <-s.stop:
			first.res.err = ErrClosed
			first.done <- struct{}{}
			s.failQueued()
			return
		}
		batch := []*proposal{first}
		size := len(first.cmd.content) + 64
	drain:
		for len(batch) < maxBatchCommands && size < maxBatchBytes {
			select {
			case p := <-s.propose:
				// EXPIRED receipts travel in entries of their own: a
				// replica of a build without them cannot decode such an
				// entry and skips it whole, which then costs it only
				// receipts, never another command.
				if (p.cmd.kind == cmdExpired) != (first.cmd.kind == cmdExpired) {
					carry = p
					break drain
				}
				batch = append(batch, p)
				size += len(p.cmd.content) + 64
			default:
				break drain
			}
		}
		cmds = cmds[:0]
		for _, p := range batch {
			switch p.cmd.kind {
			case cmdSend, cmdDelivered, cmdRead, cmdExpired, cmdSentCopy, cmdReadSync:
				p.cmd.id = s.log.gen.next(s.id)
			}
			cmds = append(cmds, &p.cmd)
		}
		data := encodeEntry(make([]byte, 0, size), cmds)
		s.log.m.batchCommands.Observe(float64(len(batch)))
		f := s.raft.Apply(data, 0)
		s.waiting <- pendingEntry{f: f, batch: batch, start: time.Now()}
	}
}

func (s *shard) failQueued() {
	for {
		select {
		case p := <-s.propose:
			p.res.err = ErrClosed
			p.done <- struct{}{}
		default:
			return
		}
	}
}

func (s *shard) completeLoop() {
	defer s.wg.Done()
	for pe := range s.waiting {
		err := pe.f.Error()
		<-s.inflight
		s.log.m.applySeconds.Observe(time.Since(pe.start).Seconds())
		var rs []result
		if err == nil {
			rs, _ = pe.f.Response().([]result)
			if len(rs) != len(pe.batch) {
				err = fmt.Errorf("relaylog: shard %d: entry answered %d results for %d commands", s.id, len(rs), len(pe.batch))
				if len(rs) == 1 && rs[0].err != nil {
					err = rs[0].err
				}
			}
		} else {
			err = mapRaftError(s.id, err)
		}
		for i, p := range pe.batch {
			if err != nil {
				p.res = result{err: err}
			} else {
				p.res = rs[i]
			}
			p.done <- struct{}{}
		}
	}
}

func mapRaftError(shard int, err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrAbortedByRestore):
		return fmt.Errorf("relaylog: shard %d: %w (%v)", shard, ErrNoLeader, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	}
	return fmt.Errorf("relaylog: shard %d: %w", shard, err)
}

func (s *shard) close() error {
	s.acks.close(2 * time.Second)
	s.closeMu.Lock()
	s.closed = true
	s.closeMu.Unlock()
	close(s.stop)
	s.wg.Wait()
	return s.raft.Shutdown().Error()
}

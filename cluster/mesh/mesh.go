package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// Kind is what a stream carries; it is the first byte of every stream.
type Kind byte

// Stream kinds. See doc.go for the header layout.
const (
	// KindRaft carries one raft NetworkTransport connection of a shard.
	KindRaft Kind = 1
	// KindCall carries one call on a stream of its own (the first form of
	// forwarding; the cluster now multiplexes calls on KindCallMux).
	KindCall Kind = 2
	// KindSubscribe carries deliveries from a queue owner to an edge.
	KindSubscribe Kind = 3
	// KindCallMux carries every forwarded call from one node to another,
	// each frame tagged with its call's id.
	KindCallMux Kind = 4
	// KindRaftTo is KindRaft for one incarnation of the receiver's raft
	// data: its header also names the incarnation the opener addresses
	// (the raft address is node-id@incarnation, nodewire.RaftAddress), and the
	// receiver resets the stream unless its own incarnation is that one. A
	// node whose data dir was lost never answers raft as the replica it
	// was.
	KindRaftTo Kind = 5
	// KindHeartbeat carries the raft heartbeats of every shard from one
	// node's leaders to another node, in batches (relaylog's coalesced
	// heartbeats; nodewire.HeartbeatBatch).
	KindHeartbeat Kind = 6
)

func (k Kind) String() string {
	switch k {
	case KindRaft:
		return "raft"
	case KindCall:
		return "call"
	case KindSubscribe:
		return "subscribe"
	case KindCallMux:
		return "callmux"
	case KindRaftTo:
		return "raft-to"
	case KindHeartbeat:
		return "heartbeat"
	}
	return fmt.Sprintf("kind(%d)", byte(k))
}

const (
	// ProtocolVersion is the version of the stream protocol (header layout
	// and kinds). It is negotiated through the ALPN: a node speaking another
	// version fails the TLS handshake.
	ProtocolVersion = 1
	// ALPN is the TLS application protocol of the mesh.
	ALPN = "edgenode-mesh/1"

	// MaxNodeIDLen bounds the sender node id in a stream header.
	MaxNodeIDLen = 255
	// MaxIncarnationLen bounds the incarnation in a KindRaftTo header.
	MaxIncarnationLen = 64
	// MaxShard bounds the shard number in a stream header.
	MaxShard = 1<<31 - 1

	// KeepAlivePeriod and MaxIdleTimeout: a dead peer (no packet at all
	// for MaxIdleTimeout, keep-alives included) fails every stream on its
	// connection within MaxIdleTimeout; a peer that closes its mesh sends
	// CONNECTION_CLOSE and fails them at once.
	KeepAlivePeriod = 2 * time.Second
	MaxIdleTimeout  = 10 * time.Second
	// DialTimeout bounds a connection attempt (QUIC + TLS handshake); an
	// Open with a shorter context deadline gives up sooner.
	DialTimeout = 5 * time.Second
	// headerTimeout bounds how long an inbound stream may take to send its
	// header.
	headerTimeout = 10 * time.Second

	// drainMin/drainMax: a duplicate connection (both nodes dialed at once)
	// is closed once it has had no stream for drainMin, and at most
	// drainMax after it lost. Raft keeps a pipeline's stream open while
	// it replicates, so a loser carrying raft traffic usually lives
	// drainMax; closing it then fails at most the RPCs in flight on it,
	// which raft retries on the kept connection.
	drainMin = time.Second
	drainMax = 5 * time.Second

	// raftStreamsPerShard is the number of concurrent streams one peer may
	// need for one shard on one connection: raft's transports pool no idle
	// streams (RaftTransport), but these may be in use at once: the
	// pipelined AppendEntries stream, a synchronous AppendEntries, the
	// heartbeat, RequestVote/TimeoutNow and InstallSnapshot, and streams
	// whose credit is still in flight.
	raftStreamsPerShard = 8
	// streamHeadroom is room above the raft streams for KindCall and
	// KindSubscribe streams and for streams whose credit is still in flight.
	streamHeadroom = 4096
)

// QUIC application error codes.
const (
	connCodeShutdown  quic.ApplicationErrorCode = 0x100 // the node closed its mesh
	connCodeDuplicate quic.ApplicationErrorCode = 0x101 // the pair has another connection
	connCodeBadPeer   quic.ApplicationErrorCode = 0x102 // no usable node id

	streamCodeClosed   quic.StreamErrorCode = 0x200 // Conn.Close
	streamCodeRejected quic.StreamErrorCode = 0x201 // bad header, sender mismatch, no handler
	streamCodeShutdown quic.StreamErrorCode = 0x202 // layer or mesh closed before accept
)

// MaxIncomingStreams is the bidirectional stream limit a node grants each
// peer, sized for the shard count: every shard may need raftStreamsPerShard
// streams from the same peer at once (a peer can lead every shard), plus
// headroom for calls and subscriptions. quic-go's default of 100 starves
// raft at a few hundred groups: OpenStream blocks waiting for credit while
// heartbeats time out, and leaders flap. A stream that is not open costs
// nothing, so the limit is generous.
func MaxIncomingStreams(shards int) int64 {
	if shards < 1 {
		shards = 1
	}
	return int64(shards)*raftStreamsPerShard + streamHeadroom
}

// Errors.
var (
	ErrClosed      = fmt.Errorf("mesh: closed: %w", net.ErrClosed)
	ErrUnknownNode = errors.New("mesh: node address unknown")
	ErrSelf        = errors.New("mesh: stream to self")
)

// Options configures a Mesh.
type Options struct {
	NodeID     string
	ListenAddr string // --cluster-addr, UDP, e.g. ":7947" or "127.0.0.1:0"
	Secret     string // cluster secret: mutual TLS with a CA derived from it
	// Or operator-supplied PKI instead of the secret (PEM files). The
	// certificate must name the node id in its CommonName or a DNS SAN.
	CAFile, CertFile, KeyFile string
	Shards                    int // to size stream limits
	Logger                    *slog.Logger
}

// Mesh is a node's endpoint of the QUIC mesh: one UDP socket that both
// listens and dials, at most one preferred connection per peer node, and
// streams demultiplexed by kind and shard.
type Mesh struct {
	opts  Options
	log   *slog.Logger
	pki   *pki
	qconf *quic.Config
	udp   *net.UDPConn
	tr    *quic.Transport
	ln    *quic.Listener

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	conns    map[string]*peerConn // preferred connection per peer
	all      map[*peerConn]struct{}
	dials    map[string]*dialCall
	addrs    map[string]string // node id → mesh address (SetAddr)
	layers   map[int]*streamLayer
	handlers map[Kind]func(s net.Conn, from string, shard int)

	staleIncarnation atomic.Int64 // KindRaftTo streams refused (StaleIncarnationStreams)

	beatsServed                             bool // HandleBeats was called; guarded by mu
	beatsSent, beatsReceived, beatsRejected atomic.Int64
}

// SetAddr records where node id's mesh listens (host:port), as
// membership learns it (member.Options.Addresses); "" forgets the node.
// A stream to a node opens a connection there when none is live.
func (m *Mesh) SetAddr(id, addr string) {
	m.mu.Lock()
	if addr == "" {
		delete(m.addrs, id)
	} else {
		m.addrs[id] = addr
	}
	m.mu.Unlock()
}

// StaleIncarnationStreams counts the raft streams this node refused because
// they addressed another incarnation of its raft data (KindRaftTo).
func (m *Mesh) StaleIncarnationStreams() int64 { return m.staleIncarnation.Load() }

// peerConn is one QUIC connection to a peer.
type peerConn struct {
	m        *Mesh
	id       string // peer node id, from its certificate
	qc       *quic.Conn
	dialer   string // node id of the side that dialed it
	active   atomic.Int64
	draining atomic.Bool
	beat     beatState // beat.go
}

func (pc *peerConn) alive() bool { return pc.qc.Context().Err() == nil }

func (pc *peerConn) streamDone() { pc.active.Add(-1) }

type dialCall struct {
	done chan struct{}
	pc   *peerConn
	err  error
}

// New creates a mesh and starts listening at once.
func New(opts Options) (*Mesh, error) {
	if opts.NodeID == "" {
		return nil, errors.New("mesh: empty node id")
	}
	if len(opts.NodeID) > MaxNodeIDLen {
		return nil, fmt.Errorf("mesh: node id longer than %d bytes", MaxNodeIDLen)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "mesh", "node", opts.NodeID)

	p, err := newPKI(opts.Secret, opts.CAFile, opts.CertFile, opts.KeyFile, opts.NodeID)
	if err != nil {
		return nil, err
	}

	laddr, err := net.ResolveUDPAddr("udp", opts.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("mesh: listen address: %w", err)
	}
	udp, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, fmt.Errorf("mesh: listen: %w", err)
	}
	var resetKey quic.StatelessResetKey
	copy(resetKey[:], p.resetKeyMaterial)
	tr := &quic.Transport{
		Conn: udp,
		// Stable across restarts of this node: packets for a connection
		// of its previous life get a stateless reset, so peers drop that
		// connection at once instead of after MaxIdleTimeout.
		StatelessResetKey: &resetKey,
	}
	qconf := &quic.Config{
		HandshakeIdleTimeout:  DialTimeout,
		MaxIdleTimeout:        MaxIdleTimeout,
		KeepAlivePeriod:       KeepAlivePeriod,
		MaxIncomingStreams:    MaxIncomingStreams(opts.Shards),
		MaxIncomingUniStreams: -1, // the mesh uses bidirectional streams only
		// Many shards' replication share one connection: let its flow
		// control window grow beyond quic-go's 15 MB default.
		MaxConnectionReceiveWindow: 64 << 20,
	}
	ln, err := tr.Listen(p.serverTLS(), qconf)
	if err != nil {
		_ = tr.Close()
		_ = udp.Close()
		return nil, fmt.Errorf("mesh: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mesh{
		opts:     opts,
		log:      log,
		pki:      p,
		qconf:    qconf,
		udp:      udp,
		tr:       tr,
		ln:       ln,
		ctx:      ctx,
		cancel:   cancel,
		conns:    make(map[string]*peerConn),
		all:      make(map[*peerConn]struct{}),
		dials:    make(map[string]*dialCall),
		addrs:    make(map[string]string),
		layers:   make(map[int]*streamLayer),
		handlers: make(map[Kind]func(net.Conn, string, int)),
	}
	m.wg.Add(1)
	go m.acceptLoop()
	return m, nil
}

// Addr returns the actual UDP address the mesh listens on.
func (m *Mesh) Addr() string { return m.udp.LocalAddr().String() }

// NodeID returns this node's id.
func (m *Mesh) NodeID() string { return m.opts.NodeID }

// Handle registers h for inbound streams of kind k (KindCall,
// KindSubscribe). Each stream is passed to h in its own goroutine, with the
// verified sender node id and the shard from its header; h owns the stream
// and must Close it. Streams of a kind without a handler are reset.
func (m *Mesh) Handle(k Kind, h func(s net.Conn, from string, shard int)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h == nil {
		delete(m.handlers, k)
		return
	}
	m.handlers[k] = h
}

// Open opens an outbound stream of kind k for shard on the connection to
// nodeID, dialing it if there is none. The returned net.Conn is a *Conn.
func (m *Mesh) Open(ctx context.Context, nodeID string, k Kind, shard int) (net.Conn, error) {
	return m.open(ctx, nodeID, header{kind: k, shard: shard})
}

func (m *Mesh) open(ctx context.Context, nodeID string, h header) (net.Conn, error) {
	k, shard := h.kind, h.shard
	if nodeID == m.opts.NodeID {
		return nil, ErrSelf
	}
	if shard < 0 || shard > MaxShard {
		return nil, fmt.Errorf("mesh: bad shard %d", shard)
	}
	for attempt := 0; ; attempt++ {
		pc, err := m.getConn(ctx, nodeID)
		if err != nil {
			return nil, err
		}
		c, err := m.openOn(ctx, pc, h)
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil || pc.alive() || attempt > 0 {
			return nil, fmt.Errorf("mesh: open %s stream to %s: %w", k, nodeID, err)
		}
		// The connection died under us: forget it and redial once.
		m.forget(pc)
	}
}

func (m *Mesh) openOn(ctx context.Context, pc *peerConn, h header) (*Conn, error) {
	s, err := pc.qc.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	c := newConn(pc, s, h.kind, h.shard)
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetWriteDeadline(dl)
	}
	// The peer learns of the stream with its first bytes: the header.
	h.from = m.opts.NodeID
	_, err = c.Write(appendHeader(make([]byte, 0, 16+len(m.opts.NodeID)+len(h.to)), h))
	_ = s.SetWriteDeadline(time.Time{})
	if err != nil {
		c.reset(streamCodeShutdown)
		return nil, err
	}
	return c, nil
}

// getConn returns the preferred live connection to id, dialing if needed.
// Concurrent callers share one dial.
func (m *Mesh) getConn(ctx context.Context, id string) (*peerConn, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	if pc := m.conns[id]; pc != nil && pc.alive() {
		m.mu.Unlock()
		return pc, nil
	}
	call := m.dials[id]
	if call == nil {
		call = &dialCall{done: make(chan struct{})}
		m.dials[id] = call
		m.wg.Add(1)
		go m.dial(id, call)
	}
	m.mu.Unlock()
	select {
	case <-call.done:
		return call.pc, call.err
	case <-ctx.Done():
		return nil, fmt.Errorf("mesh: connect to %s: %w", id, context.Cause(ctx))
	}
}

func (m *Mesh) dial(id string, call *dialCall) {
	defer m.wg.Done()
	call.pc, call.err = m.dialConn(id)
	m.mu.Lock()
	if m.dials[id] == call {
		delete(m.dials, id)
	}
	m.mu.Unlock()
	close(call.done)
}

func (m *Mesh) dialConn(id string) (*peerConn, error) {
	m.mu.Lock()
	addr, ok := m.addrs[id]
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownNode, id)
	}
	uaddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("mesh: resolve %s (%s): %w", id, addr, err)
	}
	ctx, cancel := context.WithTimeout(m.ctx, DialTimeout)
	defer cancel()
	qc, err := m.tr.Dial(ctx, uaddr, m.pki.clientTLS(id), m.qconf)
	if err != nil {
		if m.ctx.Err() != nil {
			return nil, ErrClosed
		}
		m.log.Debug("dial failed", "peer", id, "addr", addr, "err", err)
		return nil, fmt.Errorf("mesh: dial %s at %s: %w", id, addr, err)
	}
	m.log.Debug("connected", "peer", id, "addr", addr)
	return m.register(&peerConn{m: m, id: id, qc: qc, dialer: m.opts.NodeID})
}

func (m *Mesh) acceptLoop() {
	defer m.wg.Done()
	for {
		qc, err := m.ln.Accept(m.ctx)
		if err != nil {
			if m.ctx.Err() == nil {
				m.log.Error("accept failed", "err", err)
			}
			return
		}
		certs := qc.ConnectionState().TLS.PeerCertificates
		id := ""
		if len(certs) > 0 {
			id = certNodeID(certs[0])
		}
		if id == "" || id == m.opts.NodeID || len(id) > MaxNodeIDLen {
			m.log.Warn("rejecting connection", "remote", qc.RemoteAddr(), "cert_node", id)
			_ = qc.CloseWithError(connCodeBadPeer, "bad node id")
			continue
		}
		m.log.Debug("accepted", "peer", id, "remote", qc.RemoteAddr())
		_, _ = m.register(&peerConn{m: m, id: id, qc: qc, dialer: id})
	}
}

// preferred reports whether a connection dialed by dialer is the one to
// keep for the pair (self, peer) when both exist: the one dialed by the
// smaller node id. Both nodes reach the same verdict.
func (m *Mesh) preferred(pc *peerConn) bool {
	return pc.dialer == min(m.opts.NodeID, pc.id)
}

// register installs a new connection and returns the connection to use for
// the peer (pc, or the existing one when pc loses). The loser drains.
func (m *Mesh) register(pc *peerConn) (*peerConn, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		_ = pc.qc.CloseWithError(connCodeShutdown, "node shutting down")
		return nil, ErrClosed
	}
	m.all[pc] = struct{}{}
	winner, loser := pc, (*peerConn)(nil)
	if old := m.conns[pc.id]; old != nil && old.alive() {
		// Same direction: the newer replaces the older (the peer redialed
		// or restarted). Otherwise the one dialed by the smaller id wins.
		if m.preferred(pc) == m.preferred(old) || m.preferred(pc) {
			loser = old
		} else {
			winner, loser = old, pc
		}
	}
	m.conns[pc.id] = winner
	m.wg.Add(1)
	go m.serveConn(pc)
	if loser != nil {
		loser.draining.Store(true)
		m.wg.Add(1)
		go m.drain(loser)
	}
	m.mu.Unlock()
	if loser != nil {
		m.log.Debug("duplicate connection", "peer", pc.id, "kept_dialer", winner.dialer)
	}
	return winner, nil
}

// drain closes a losing duplicate connection once it has carried no stream
// for drainMin, or after drainMax.
func (m *Mesh) drain(pc *peerConn) {
	defer m.wg.Done()
	tick := time.NewTicker(drainMin / 4)
	defer tick.Stop()
	deadline := time.NewTimer(drainMax)
	defer deadline.Stop()
	idleSince := time.Now()
	for {
		select {
		case <-pc.qc.Context().Done():
			return
		case <-m.ctx.Done():
			return
		case <-deadline.C:
			_ = pc.qc.CloseWithError(connCodeDuplicate, "duplicate connection")
			return
		case now := <-tick.C:
			if pc.active.Load() > 0 {
				idleSince = now
			} else if now.Sub(idleSince) >= drainMin {
				_ = pc.qc.CloseWithError(connCodeDuplicate, "duplicate connection")
				return
			}
		}
	}
}

// forget drops pc from the peer table if it is still there.
func (m *Mesh) forget(pc *peerConn) {
	m.mu.Lock()
	if m.conns[pc.id] == pc {
		delete(m.conns, pc.id)
	}
	delete(m.all, pc)
	m.mu.Unlock()
}

// serveConn accepts the peer's streams on pc until the connection ends.
func (m *Mesh) serveConn(pc *peerConn) {
	defer m.wg.Done()
	for {
		s, err := pc.qc.AcceptStream(m.ctx)
		if err != nil {
			break
		}
		m.wg.Add(1)
		go m.serveStream(pc, s)
	}
	m.forget(pc)
	_ = pc.qc.CloseWithError(connCodeShutdown, "")
	m.log.Debug("connection closed", "peer", pc.id, "cause", context.Cause(pc.qc.Context()))
}

// serveStream reads the header of an inbound stream and dispatches it.
func (m *Mesh) serveStream(pc *peerConn, s *quic.Stream) {
	wgDone := sync.OnceFunc(m.wg.Done)
	defer wgDone()
	_ = s.SetReadDeadline(time.Now().Add(headerTimeout))
	h, err := readHeader(s)
	_ = s.SetReadDeadline(time.Time{})
	c := newConn(pc, s, h.kind, h.shard)
	if err != nil {
		m.log.Debug("bad stream header", "peer", pc.id, "err", err)
		c.reset(streamCodeRejected)
		return
	}
	if h.from != pc.id {
		m.log.Warn("stream sender does not match peer certificate", "peer", pc.id, "header_from", h.from)
		c.reset(streamCodeRejected)
		return
	}
	switch h.kind {
	case KindRaft, KindRaftTo:
		m.mu.Lock()
		l := m.layers[h.shard]
		m.mu.Unlock()
		if l == nil {
			c.reset(streamCodeRejected)
			return
		}
		if h.kind == KindRaftTo && h.to != l.incarnation {
			// The opener's configuration names a replica this node's
			// raft data is not (its data dir was lost since): the
			// cluster replaces that replica (placement), never this node.
			m.staleIncarnation.Add(1)
			m.log.Debug("raft stream for another incarnation of this node", "peer", pc.id, "shard", h.shard, "to", h.to, "ours", l.incarnation)
			c.reset(streamCodeRejected)
			return
		}
		l.deliver(c)
	default:
		m.mu.Lock()
		hf := m.handlers[h.kind]
		m.mu.Unlock()
		if hf == nil {
			m.log.Debug("no handler for stream", "peer", pc.id, "kind", h.kind)
			c.reset(streamCodeRejected)
			return
		}
		// The handler is the application's: Close does not wait for it
		// (it ends when its stream fails).
		wgDone()
		hf(c, h.from, h.shard)
	}
}

// Close closes every connection (peers see CONNECTION_CLOSE at once), every
// stream layer and the socket, and waits for the mesh's goroutines.
func (m *Mesh) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	conns := make([]*peerConn, 0, len(m.all))
	for pc := range m.all {
		conns = append(conns, pc)
	}
	layers := make([]*streamLayer, 0, len(m.layers))
	for _, l := range m.layers {
		layers = append(layers, l)
	}
	m.mu.Unlock()

	m.cancel()
	_ = m.ln.Close()
	var wg sync.WaitGroup
	for _, pc := range conns {
		wg.Go(func() { _ = pc.qc.CloseWithError(connCodeShutdown, "node shutting down") })
	}
	wg.Wait()
	for _, l := range layers {
		_ = l.Close()
	}
	err := m.tr.Close()
	if cerr := m.udp.Close(); err == nil {
		err = cerr
	}
	m.wg.Wait()
	return err
}

// numConns is the number of live connections per peer (tests).
func (m *Mesh) numConns() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := make(map[string]int)
	for pc := range m.all {
		if pc.alive() {
			n[pc.id]++
		}
	}
	return n
}

// current is the preferred connection to peer, or nil (tests).
func (m *Mesh) current(peer string) *peerConn {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.conns[peer]
}

package mesh

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/edgenode/edgenode/wire/nodewire"
)

// acceptBacklog is how many inbound raft streams of a shard may wait for
// raft's Accept loop.
const acceptBacklog = 64

// streamLayer is the raft.StreamLayer of one shard.
type streamLayer struct {
	m           *Mesh
	shard       int
	local       raft.ServerAddress // Addr().String()
	incarnation string             // of local (nodewire.SplitRaftAddress)
	ch          chan *Conn
	done        chan struct{}
	closer      sync.Once
}

var _ raft.StreamLayer = (*streamLayer)(nil)

// StreamLayer returns the raft.StreamLayer of shard, for
// raft.NewNetworkTransportWithConfig, with this node's id as its address.
// Raft server addresses are node ids, optionally with the incarnation of
// the node's raft data (nodewire.RaftAddress). Dial opens a stream for the
// shard on the shared connection to that node: KindRaft for a bare id,
// KindRaftTo for id@incarnation, which the node refuses unless its raft
// data is that incarnation. Accept returns the inbound raft streams of the
// shard. Closing the layer (as NetworkTransport.Close does) stops
// accepting for the shard only; a later StreamLayer call for the same shard
// returns a fresh layer.
func (m *Mesh) StreamLayer(shard int) raft.StreamLayer {
	return m.streamLayer(shard, raft.ServerAddress(m.opts.NodeID))
}

// streamLayer returns shard's layer, creating it with the local address
// local (node id or id@incarnation) when there is none.
func (m *Mesh) streamLayer(shard int, local raft.ServerAddress) *streamLayer {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l := m.layers[shard]; l != nil {
		return l
	}
	_, inc := nodewire.SplitRaftAddress(string(local))
	l := &streamLayer{m: m, shard: shard, local: local, incarnation: inc, ch: make(chan *Conn, acceptBacklog), done: make(chan struct{})}
	if m.closed {
		close(l.done)
		return l
	}
	m.layers[shard] = l
	return l
}

// Dial opens a raft stream to the node (and incarnation) at address.
func (l *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	id, inc := nodewire.SplitRaftAddress(string(address))
	if inc == "" {
		return l.m.Open(ctx, id, KindRaft, l.shard)
	}
	return l.m.open(ctx, id, header{kind: KindRaftTo, shard: l.shard, to: inc})
}

// Accept waits for the next inbound raft stream of the shard.
func (l *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, ErrClosed
	}
}

// deliver hands an inbound stream to Accept, or resets it if the layer
// closes first.
func (l *streamLayer) deliver(c *Conn) {
	select {
	case l.ch <- c:
		select {
		case <-l.done: // closed meanwhile: Close may have drained already
			l.drain()
		default:
		}
	case <-l.done:
		c.reset(streamCodeShutdown)
	}
}

func (l *streamLayer) drain() {
	for {
		select {
		case c := <-l.ch:
			c.reset(streamCodeShutdown)
		default:
			return
		}
	}
}

// Close stops accepting raft streams for the shard. Streams already
// accepted are unaffected.
func (l *streamLayer) Close() error {
	l.closer.Do(func() {
		close(l.done)
		l.m.mu.Lock()
		if l.m.layers[l.shard] == l {
			delete(l.m.layers, l.shard)
		}
		l.m.mu.Unlock()
		l.drain()
	})
	return nil
}

// Addr returns an address whose String is the layer's local raft address.
func (l *streamLayer) Addr() net.Addr { return raftAddr(l.local) }

// raftAddr is a raft server address as a net.Addr.
type raftAddr string

func (a raftAddr) Network() string { return "edgenode-mesh" }
func (a raftAddr) String() string  { return string(a) }

// RaftTransport returns a raft.NetworkTransport for shard over the mesh
// whose local address is local (cfg.Stream is set to the shard's layer).
// Use it rather than building the transport on StreamLayer directly: it
// turns off NetworkTransport's pool of streams (cfg.MaxPool is set to 0),
// so that every RPC opens a fresh stream on the peer's current QUIC
// connection (a QUIC stream costs one frame, no round trip). A pooled
// stream whose connection had ended (the peer restarted, or the pair
// dropped a duplicate connection) failed the next RPC that took it, and a
// failed RequestVote can leave a shard without a leader for an election
// timeout. The pools used to be dropped instead whenever a connection
// ended, with NetworkTransport.CloseStreams, which also closes every
// stream the transport serves: healthy peers' pipelines broke whenever
// any node restarted, and raft resends a failed pipelined entry only with
// its next write or after its commit timeout.
func (m *Mesh) RaftTransport(shard int, local raft.ServerAddress, cfg raft.NetworkTransportConfig) *raft.NetworkTransport {
	cfg.Stream = m.streamLayer(shard, local)
	cfg.MaxPool = 0
	return raft.NewNetworkTransportWithConfig(&cfg)
}

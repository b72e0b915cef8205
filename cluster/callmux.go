package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/edgenode/edgenode/cluster/mesh"
	"github.com/edgenode/edgenode/wire/nodewire"
)

// callMux carries every forwarded call from this node to one peer on one
// long-lived stream, each request and response tagged with the call's id,
// instead of a stream per call: opening and closing a QUIC stream per call
// cost more than the call (profiles of a three-node cluster under load).
// Responses come back in any order; a call that gives up (its context) only
// stops waiting. When the stream fails, every waiting call fails and the
// next call opens a new one.
type callMux struct {
	t    *meshTransport
	node string
	conn net.Conn
	wmu  sync.Mutex // one writer at a time

	mu      sync.Mutex
	next    uint64
	waiting map[uint64]chan *nodewire.CallResponse
	dead    chan struct{}
	err     error
}

// meshTransport is the Transport over the mesh: one callMux per peer.
type meshTransport struct {
	open        func(ctx context.Context, node string) (net.Conn, error)
	callTimeout time.Duration

	muxMu sync.Mutex
	muxes map[string]*callMux // by peer node id
}

func newMeshTransport(m *mesh.Mesh, callTimeout time.Duration) *meshTransport {
	return &meshTransport{
		open: func(ctx context.Context, node string) (net.Conn, error) {
			return m.Open(ctx, node, mesh.KindCallMux, 0)
		},
		callTimeout: callTimeout,
		muxes:       make(map[string]*callMux),
	}
}

// Call sends req to node about shard and waits for its answer, at most
// the call timeout.
func (t *meshTransport) Call(ctx context.Context, node string, shard int, req *nodewire.CallRequest) (*nodewire.CallResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, t.callTimeout)
	defer cancel()
	m, err := t.muxTo(ctx, node)
	if err != nil {
		return nil, fmt.Errorf("%w: open to %s: %v", errRemote, node, err)
	}
	r := *req
	r.Version = nodewire.NodeProtocolVersion
	r.Shard = shard
	resp, err := m.call(ctx, &r)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errRemote, node, err)
	}
	return resp, nil
}

// muxTo returns the live mux to node, opening it if needed.
func (t *meshTransport) muxTo(ctx context.Context, node string) (*callMux, error) {
	t.muxMu.Lock()
	m := t.muxes[node]
	t.muxMu.Unlock()
	if m != nil {
		select {
		case <-m.dead:
		default:
			return m, nil
		}
	}
	conn, err := t.open(ctx, node)
	if err != nil {
		return nil, err
	}
	m = &callMux{t: t, node: node, conn: conn, waiting: make(map[uint64]chan *nodewire.CallResponse), dead: make(chan struct{})}
	t.muxMu.Lock()
	if cur := t.muxes[node]; cur != nil && cur != m {
		select {
		case <-cur.dead:
		default:
			// Another call opened one meanwhile: use it.
			t.muxMu.Unlock()
			conn.Close()
			return cur, nil
		}
	}
	t.muxes[node] = m
	t.muxMu.Unlock()
	go m.readLoop()
	return m, nil
}

func (m *callMux) call(ctx context.Context, req *nodewire.CallRequest) (*nodewire.CallResponse, error) {
	ch := make(chan *nodewire.CallResponse, 1)
	m.mu.Lock()
	if m.err != nil {
		err := m.err
		m.mu.Unlock()
		return nil, err
	}
	m.next++
	id := m.next
	m.waiting[id] = ch
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.waiting, id)
		m.mu.Unlock()
	}()
	m.wmu.Lock()
	m.conn.SetWriteDeadline(time.Now().Add(m.t.callTimeout))
	err := nodewire.WriteTaggedFrame(m.conn, id, req)
	m.wmu.Unlock()
	if err != nil {
		m.fail(err)
		return nil, err
	}
	select {
	case resp := <-ch:
		return resp, nil
	case <-m.dead:
		// A response that raced the failure still counts.
		select {
		case resp := <-ch:
			return resp, nil
		default:
		}
		return nil, m.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (m *callMux) readLoop() {
	br := bufio.NewReaderSize(m.conn, 16<<10)
	for {
		var resp nodewire.CallResponse
		id, err := nodewire.ReadTaggedFrame(br, &resp)
		if err != nil {
			m.fail(err)
			return
		}
		m.mu.Lock()
		ch := m.waiting[id]
		delete(m.waiting, id)
		m.mu.Unlock()
		if ch != nil {
			ch <- &resp
		}
	}
}

// fail ends the mux once: waiting calls fail, the next call opens another.
func (m *callMux) fail(err error) {
	m.mu.Lock()
	if m.err != nil {
		m.mu.Unlock()
		return
	}
	m.err = fmt.Errorf("call stream to %s: %w", m.node, err)
	close(m.dead)
	m.mu.Unlock()
	m.conn.Close()
	m.t.muxMu.Lock()
	if m.t.muxes[m.node] == m {
		delete(m.t.muxes, m.node)
	}
	m.t.muxMu.Unlock()
}

var errClosed = errors.New("cluster: closed")

// close ends every mux (Cluster.Close).
func (t *meshTransport) close() {
	t.muxMu.Lock()
	all := make([]*callMux, 0, len(t.muxes))
	for _, m := range t.muxes {
		all = append(all, m)
	}
	t.muxMu.Unlock()
	for _, m := range all {
		m.fail(errClosed)
	}
}

// serveCallMux answers the calls a peer multiplexes on one stream, each in
// its own goroutine, responses written as they complete.
func (c *Cluster) serveCallMux(s net.Conn, from string, _ int) {
	defer s.Close()
	br := bufio.NewReaderSize(s, 16<<10)
	var wmu sync.Mutex
	for {
		req := new(nodewire.CallRequest)
		id, err := nodewire.ReadTaggedFrame(br, req)
		if err != nil {
			return
		}
		go func() {
			resp := c.handleCall(from, req)
			wmu.Lock()
			s.SetWriteDeadline(time.Now().Add(c.opts.CallTimeout))
			err := nodewire.WriteTaggedFrame(s, id, resp)
			wmu.Unlock()
			if err != nil {
				s.Close()
			}
		}()
	}
}

package mesh

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/quic-go/quic-go"
)

const testSecret = "0123456789abcdef0123456789abcdef-test-secret"

// echo copies a stream back until EOF, then closes it.
func echo(c net.Conn) {
	_, _ = io.Copy(c, c)
	_ = c.Close()
}

// roundTrip writes payload, half-closes, and expects it back.
func roundTrip(t *testing.T, c net.Conn, payload []byte) {
	t.Helper()
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(*Conn).CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Errorf("read: %v", err)
		return
	}
	if err := <-errc; err != nil {
		t.Errorf("write: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Errorf("echo mismatch: got %d bytes, want %d", len(got), len(payload))
	}
}

type seenStream struct {
	kind  Kind
	from  string
	shard int
}

func TestStreamsBothWays(t *testing.T) {
	reg := newRegistry()
	a := newMesh(t, reg, "node-a", testSecret, 4)
	defer a.Close()
	b := newMesh(t, reg, "node-b", testSecret, 4)
	defer b.Close()

	var mu sync.Mutex
	var seen []seenStream
	for _, m := range []*Mesh{a, b} {
		for _, k := range []Kind{KindCall, KindSubscribe} {
			m.Handle(k, func(s net.Conn, from string, shard int) {
				mu.Lock()
				seen = append(seen, seenStream{k, from, shard})
				mu.Unlock()
				if s.RemoteAddr().String() != from {
					t.Errorf("RemoteAddr %q, from %q", s.RemoteAddr(), from)
				}
				echo(s)
			})
		}
		l := m.StreamLayer(3)
		if got := l.Addr().String(); got != m.NodeID() {
			t.Errorf("StreamLayer.Addr = %q, want %q", got, m.NodeID())
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go echo(c)
			}
		}()
	}

	payload := make([]byte, 256<<10)
	_, _ = rand.Read(payload)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// Both directions at once, so both nodes dial each other concurrently.
	var wg sync.WaitGroup
	for _, pair := range [][2]*Mesh{{a, b}, {b, a}} {
		from, to := pair[0], pair[1]
		for _, k := range []Kind{KindRaft, KindCall, KindSubscribe} {
			for i := range 3 {
				wg.Go(func() {
					var c net.Conn
					var err error
					if k == KindRaft {
						c, err = from.StreamLayer(3).Dial(raft.ServerAddress(to.NodeID()), 10*time.Second)
					} else {
						c, err = from.Open(ctx, to.NodeID(), k, 3)
					}
					if err != nil {
						t.Errorf("%s -> %s %s #%d: %v", from.NodeID(), to.NodeID(), k, i, err)
						return
					}
					if c.RemoteAddr().String() != to.NodeID() || c.LocalAddr().String() != from.NodeID() {
						t.Errorf("addrs %v -> %v", c.LocalAddr(), c.RemoteAddr())
					}
					roundTrip(t, c, payload)
				})
			}
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	mu.Lock()
	for _, s := range seen {
		if s.shard != 3 || (s.from != "node-a" && s.from != "node-b") {
			t.Errorf("handler saw %+v", s)
		}
	}
	if len(seen) != 12 {
		t.Errorf("handlers saw %d streams, want 12", len(seen))
	}
	mu.Unlock()

	// Exactly one connection per pair once a duplicate (if both dialed at
	// once) has drained, and it is the same one on both sides.
	waitFor(t, 2*drainMax, "one connection per pair", func() bool {
		return a.numConns()["node-b"] == 1 && b.numConns()["node-a"] == 1
	})
	ca, cb := a.current("node-b"), b.current("node-a")
	if ca == nil || cb == nil || ca.qc.LocalAddr().String() != cb.qc.RemoteAddr().String() ||
		ca.qc.RemoteAddr().String() != cb.qc.LocalAddr().String() {
		t.Fatalf("nodes use different connections")
	}
	if ca.dialer != "node-a" {
		t.Errorf("kept the connection dialed by %s, want node-a (smaller id)", ca.dialer)
	}
	// Every stream was closed at both ends.
	waitFor(t, 5*time.Second, "no active streams", func() bool {
		return ca.active.Load() == 0 && cb.active.Load() == 0
	})

	// Streams keep flowing over the one connection.
	c, err := b.Open(ctx, "node-a", KindCall, 0)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, []byte("again"))
	if n := a.numConns()["node-b"]; n != 1 {
		t.Errorf("%d connections after reuse", n)
	}
}

// TestStreamCreditReturned opens more streams, one after the other, than the
// peer's stream limit: that only works if Close completes both directions
// so each stream's credit returns to the opener.
func TestStreamCreditReturned(t *testing.T) {
	reg := newRegistry()
	a := newMesh(t, reg, "a", testSecret, 1)
	defer a.Close()
	b := newMesh(t, reg, "b", testSecret, 1)
	defer b.Close()
	// The raft pattern: the server answers, then reads until the client
	// closes; the client closes without reading to EOF.
	b.Handle(KindCall, func(s net.Conn, _ string, _ int) {
		defer s.Close()
		var buf [1]byte
		if _, err := io.ReadFull(s, buf[:]); err != nil {
			return
		}
		if _, err := s.Write(buf[:]); err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, s)
	})
	n := int(MaxIncomingStreams(1)) + 300
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := a.Open(ctx, "b", KindCall, 0)
		cancel()
		if err != nil {
			t.Fatalf("stream %d of %d: %v", i, n, err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		var buf [1]byte
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatalf("stream %d write: %v", i, err)
		}
		if _, err := io.ReadFull(c, buf[:]); err != nil || buf[0] != byte(i) {
			t.Fatalf("stream %d read: %v %d", i, err, buf[0])
		}
		_ = c.Close()
	}
	waitFor(t, 5*time.Second, "streams completed", func() bool {
		pa, pb := a.current("b"), b.current("a")
		return pa != nil && pb != nil && pa.active.Load() == 0 && pb.active.Load() == 0
	})
}

func TestWrongSecretRejected(t *testing.T) {
	reg := newRegistry()
	a := newMesh(t, reg, "a", testSecret, 1)
	defer a.Close()
	b := newMesh(t, reg, "b", "another secret of the same length, but wrong", 1)
	defer b.Close()
	called := make(chan struct{}, 2)
	for _, m := range []*Mesh{a, b} {
		m.Handle(KindCall, func(s net.Conn, _ string, _ int) { called <- struct{}{}; s.Close() })
	}
	for _, pair := range [][2]*Mesh{{a, b}, {b, a}} {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		c, err := pair[0].Open(ctx, pair[1].NodeID(), KindCall, 0)
		cancel()
		if err == nil {
			c.Close()
			t.Fatalf("%s opened a stream to %s with a different secret", pair[0].NodeID(), pair[1].NodeID())
		}
		t.Logf("%s -> %s: %v", pair[0].NodeID(), pair[1].NodeID(), err)
	}
	if len(a.numConns()) != 0 || len(b.numConns()) != 0 {
		t.Fatalf("connections registered: %v %v", a.numConns(), b.numConns())
	}
	select {
	case <-called:
		t.Fatal("handler called for a peer with a wrong secret")
	default:
	}

	// The acceptor checks the dialer's certificate too: a client with a
	// wrong-secret certificate that skips verifying the server is refused.
	wrong, err := secretPKI("another secret of the same length, but wrong", "b")
	if err != nil {
		t.Fatal(err)
	}
	conf := wrong.clientTLS("a")
	conf.VerifyPeerCertificate = nil
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if qc, err := quic.DialAddr(ctx, a.Addr(), conf, &quic.Config{}); err == nil {
		// TLS 1.3: the client may finish before the server has checked
		// its certificate; the server then closes the connection.
		s, err := qc.OpenStreamSync(ctx)
		if err == nil {
			_, _ = s.Write(appendHeader(nil, header{kind: KindCall, from: "b"}))
			_ = s.SetReadDeadline(time.Now().Add(3 * time.Second))
			_, err = s.Read(make([]byte, 1))
		}
		if err == nil {
			t.Fatal("server answered a client with a wrong-secret certificate")
		}
		t.Logf("wrong-secret client: %v", err)
		_ = qc.CloseWithError(0, "")
	} else {
		t.Logf("wrong-secret client: %v", err)
	}
	if len(a.numConns()) != 0 {
		t.Fatalf("server registered a wrong-secret client: %v", a.numConns())
	}

	// Same secret, but a certificate for another node id than dialed: a node
	// "c" listening where "b" is expected is refused by the dialer.
	c := newMesh(t, reg, "c", testSecret, 1)
	defer c.Close()
	reg.set("b", c.Addr())
	if s, err := a.Open(ctx, "b", KindCall, 0); err == nil {
		s.Close()
		t.Fatal("dialed b, accepted a certificate for c")
	}
	select {
	case <-called:
		t.Fatal("handler called for a peer with a wrong secret")
	default:
	}
}

// TestSpoofedSender: a stream whose header names another node than the
// peer's certificate is reset.
func TestSpoofedSender(t *testing.T) {
	reg := newRegistry()
	a := newMesh(t, reg, "a", testSecret, 1)
	defer a.Close()
	b := newMesh(t, reg, "b", testSecret, 1)
	defer b.Close()
	called := make(chan string, 1)
	b.Handle(KindCall, func(s net.Conn, from string, _ int) { called <- from; echo(s) })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pc, err := a.getConn(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	s, err := pc.qc.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(appendHeader(nil, header{kind: KindCall, shard: 0, from: "c"})); err != nil {
		t.Fatal(err)
	}
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = s.Read(make([]byte, 1))
	var serr *quic.StreamError
	if !errors.As(err, &serr) || serr.ErrorCode != streamCodeRejected {
		t.Fatalf("spoofed stream: read err %v, want reset %#x", err, streamCodeRejected)
	}
	select {
	case from := <-called:
		t.Fatalf("handler called with from=%q", from)
	default:
	}
	// Unknown kinds and shards without a raft layer are reset too.
	for _, k := range []Kind{KindSubscribe, KindRaft, 9} {
		c, err := a.Open(ctx, "b", k, 5)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.As(err, &serr) || serr.ErrorCode != streamCodeRejected {
			t.Fatalf("kind %v: read err %v, want reset", k, err)
		}
		c.Close()
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []header{
		{kind: KindRaft, shard: 0, from: "n"},
		{kind: KindCall, shard: 127, from: "node-1"},
		{kind: KindSubscribe, shard: MaxShard, from: string(bytes.Repeat([]byte{'x'}, MaxNodeIDLen))},
		{kind: KindRaftTo, shard: 3, from: "n", to: "0123456789abcdef"},
		{kind: KindRaftTo, shard: 3, from: "n", to: string(bytes.Repeat([]byte{'i'}, MaxIncarnationLen))},
	} {
		b := appendHeader(nil, h)
		b = append(b, "rest"...)
		r := bytes.NewReader(b)
		got, err := readHeader(r)
		if err != nil || got != h {
			t.Fatalf("readHeader(%v) = %v, %v", h, got, err)
		}
		if rest, _ := io.ReadAll(r); string(rest) != "rest" {
			t.Fatalf("header over-read: rest %q", rest)
		}
	}
	bad := [][]byte{
		{},
		{1},
		{1, 0},
		{1, 0, 0},
		append([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f}, 1, 'a'), // shard > MaxShard
		{1, 0, 0xff, 0x03}, // id too long
		{5, 0, 1, 'a'},     // raft-to without an incarnation
		{5, 0, 1, 'a', 0},  // raft-to with an empty one
		{5, 0, 1, 'a', 65}, // raft-to with one too long
	}
	for _, b := range bad {
		if _, err := readHeader(bytes.NewReader(b)); err == nil {
			t.Fatalf("readHeader(%x) accepted", b)
		}
	}
}

func TestCADeterministic(t *testing.T) {
	_, ca1, err := deriveCA(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	_, ca2, _ := deriveCA(testSecret)
	_, ca3, _ := deriveCA(testSecret + "x")
	if !bytes.Equal(ca1.Raw, ca2.Raw) {
		t.Fatal("same secret derived different CA certificates")
	}
	if bytes.Equal(ca1.Raw, ca3.Raw) {
		t.Fatal("different secrets derived the same CA")
	}
}

// TestRaftOverMesh runs real hashicorp/raft groups over the mesh: 3 nodes,
// 2 shards, then kills one node.
func TestRaftOverMesh(t *testing.T) {
	const shards = 2
	ids := []string{"n1", "n2", "n3"}
	reg := newRegistry()
	meshes := make(map[string]*Mesh)
	for _, id := range ids {
		meshes[id] = newMesh(t, reg, id, testSecret, shards)
	}
	var voters []raft.Server
	for _, id := range ids {
		voters = append(voters, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(id)})
	}
	groups := make([][]*raftNode, shards) // [shard][replica]
	for s := range shards {
		for _, id := range ids {
			trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
				Stream:  meshes[id].StreamLayer(s),
				MaxPool: 3,
				Timeout: 5 * time.Second,
				Logger:  raftLogger(id + "/transport"),
			})
			groups[s] = append(groups[s], startRaft(t, testRaftConfig(id, true), s, trans, voters))
		}
	}
	dead := map[string]bool{}
	defer func() {
		// Close meshes first so that dials to the dead node abort at once.
		for id, m := range meshes {
			if !dead[id] {
				m.Close()
			}
		}
		for _, g := range groups {
			for _, n := range g {
				if !dead[n.id] {
					n.shutdown()
				}
			}
		}
	}()

	for s, g := range groups {
		waitFor(t, 20*time.Second, fmt.Sprintf("leader of shard %d", s), func() bool { return leaderOf(g) != nil })
	}
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Go(func() { applyAll(t, g, 0, 500, 60*time.Second) })
	}
	wg.Wait()
	for s, g := range groups {
		waitFor(t, 20*time.Second, fmt.Sprintf("shard %d FSMs converge", s), func() bool {
			for _, n := range g {
				if n.fsm.count() != 500 {
					return false
				}
			}
			return true
		})
	}
	// One connection per pair, once duplicates from simultaneous dials
	// (likely at bootstrap) have drained.
	waitFor(t, 2*drainMax, "one connection per pair", func() bool {
		for _, m := range meshes {
			for _, n := range m.numConns() {
				if n != 1 {
					return false
				}
			}
		}
		return true
	})
	// Raft goes on over the kept connections.
	for _, g := range groups {
		wg.Go(func() { applyAll(t, g, 1000, 50, 60*time.Second) })
	}
	wg.Wait()

	// Kill the leader of shard 0: close its mesh, stop its replicas.
	victim := leaderOf(groups[0]).id
	t.Logf("killing %s", victim)
	killed := time.Now()
	dead[victim] = true
	meshes[victim].Close()
	for _, g := range groups {
		for _, n := range g {
			if n.id == victim {
				n.shutdown()
			}
		}
	}
	alive := make([][]*raftNode, shards)
	for s, g := range groups {
		for _, n := range g {
			if n.id != victim {
				alive[s] = append(alive[s], n)
			}
		}
	}
	for s, g := range alive {
		waitFor(t, 20*time.Second, fmt.Sprintf("new leader of shard %d", s), func() bool { return leaderOf(g) != nil })
	}
	t.Logf("all shards have a leader %v after the kill", time.Since(killed).Round(time.Millisecond))
	for _, g := range alive {
		wg.Go(func() { applyAll(t, g, 500, 100, 60*time.Second) })
	}
	wg.Wait()
	for s, g := range alive {
		waitFor(t, 20*time.Second, fmt.Sprintf("shard %d survivors converge", s), func() bool {
			for _, n := range g {
				if n.fsm.count() != 650 {
					return false
				}
			}
			return true
		})
	}
}

func TestCloseLeaksNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	reg := newRegistry()
	a := newMesh(t, reg, "a", testSecret, 2)
	b := newMesh(t, reg, "b", testSecret, 2)
	a.Handle(KindCall, func(s net.Conn, _ string, _ int) { echo(s) })
	b.Handle(KindSubscribe, func(s net.Conn, _ string, _ int) { echo(s) })
	l := a.StreamLayer(1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go echo(c)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 5 {
		c, err := b.Open(ctx, "a", KindCall, 0)
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c, []byte("hello"))
		c, err = a.Open(ctx, "b", KindSubscribe, 1)
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c, []byte("hello"))
		c, err = b.StreamLayer(1).Dial("a", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c, []byte("hello"))
	}
	// A stream left open, and a handler blocked on it, end with Close too.
	open, err := b.Open(ctx, "a", KindCall, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	// A dial in flight to an address where nobody answers is cancelled.
	reg.set("ghost", "127.0.0.1:9")
	go func() { _, _ = a.Open(context.Background(), "ghost", KindCall, 0) }()

	if err := a.Close(); err != nil {
		t.Errorf("close a: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("close b: %v", err)
	}
	if _, err := a.Open(ctx, "b", KindCall, 0); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Open after Close: %v", err)
	}
	waitFor(t, 10*time.Second, "goroutines to end", func() bool {
		return runtime.NumGoroutine() <= before
	})
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

// TestReconnect: when a peer goes away, its streams fail at once, and the
// next Open dials the peer's new incarnation.
func TestReconnect(t *testing.T) {
	reg := newRegistry()
	a := newMesh(t, reg, "a", testSecret, 1)
	defer a.Close()
	b := newMesh(t, reg, "b", testSecret, 1)
	hold := func(s net.Conn, _ string, _ int) { echo(s) }
	b.Handle(KindSubscribe, hold)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := a.Open(ctx, "b", KindSubscribe, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	b.Close()
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read on a stream to a closed peer: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("stream failed only after %v", d)
	}

	b2 := newMesh(t, reg, "b", testSecret, 1) // new incarnation, new port
	defer b2.Close()
	b2.Handle(KindSubscribe, hold)
	c2, err := a.Open(ctx, "b", KindSubscribe, 0)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c2, []byte("after restart"))
	waitFor(t, 2*drainMax, "one connection", func() bool { return len(a.numConns()) == 1 && a.numConns()["b"] == 1 })
}

// TestRaftRPCAfterPeerRestart: a raft RPC to a peer that restarted since
// the last RPC to it succeeds at the first try. NetworkTransport can pool
// the stream of a finished RPC, and a pooled stream of the old connection
// made the next RPC fail ("Application error 0x100 (remote)"), which in a
// rolling restart cost a shard its leadership election. RaftTransport
// pools no streams (whatever MaxPool a caller asks for).
func TestRaftRPCAfterPeerRestart(t *testing.T) {
	reg := newRegistry()
	a := newMesh(t, reg, "a", testSecret, 1)
	defer a.Close()
	ta := a.RaftTransport(0, "a", raft.NetworkTransportConfig{MaxPool: 3, Timeout: 5 * time.Second, Logger: raftLogger("a/transport")})
	defer ta.Close()

	// serveVotes starts b's mesh and a transport that grants every vote.
	serveVotes := func() (*Mesh, *raft.NetworkTransport) {
		b := newMesh(t, reg, "b", testSecret, 1)
		tb := b.RaftTransport(0, "b", raft.NetworkTransportConfig{MaxPool: 3, Timeout: 5 * time.Second, Logger: raftLogger("b/transport")})
		go func() {
			for rpc := range tb.Consumer() {
				req := rpc.Command.(*raft.RequestVoteRequest)
				rpc.Respond(&raft.RequestVoteResponse{RPCHeader: req.RPCHeader, Term: req.Term, Granted: true}, nil)
			}
		}()
		return b, tb
	}
	vote := func() error {
		var resp raft.RequestVoteResponse
		err := ta.RequestVote("b", "b", &raft.RequestVoteRequest{
			RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("a"), Addr: []byte("a")}, Term: 2,
		}, &resp)
		if err == nil && !resp.Granted {
			err = errors.New("vote not granted")
		}
		return err
	}

	b, tb := serveVotes()
	for i := 0; i < 3; i++ { // leaves streams in a's pool
		if err := vote(); err != nil {
			t.Fatalf("vote %d before the restart: %v", i, err)
		}
	}
	tb.Close()
	b.Close()
	waitFor(t, 5*time.Second, "a to see b's connection end", func() bool { return a.numConns()["b"] == 0 })

	b2, tb2 := serveVotes() // the restarted peer, on a new port
	defer b2.Close()
	defer tb2.Close()
	if err := vote(); err != nil {
		t.Fatalf("first vote after b restarted: %v", err)
	}
}

// TestRaftStreamsAddressAnIncarnation: a raft stream to node-id@incarnation
// reaches the node only while its raft layer is that incarnation; a bare
// node id (configurations of versions before incarnations) reaches any.
func TestRaftStreamsAddressAnIncarnation(t *testing.T) {
	reg := newRegistry()
	a := newMesh(t, reg, "a", testSecret, 2)
	b := newMesh(t, reg, "b", testSecret, 2)
	tb := b.RaftTransport(1, "b@1111", raft.NetworkTransportConfig{MaxPool: 1, Timeout: 5 * time.Second})
	defer tb.Close()
	if got := tb.LocalAddr(); got != "b@1111" {
		t.Fatalf("local address %q, want b@1111", got)
	}
	go func() {
		for rpc := range tb.Consumer() {
			rpc.Respond(&raft.AppendEntriesResponse{Term: 7, Success: true}, nil)
		}
	}()
	ta := a.RaftTransport(1, "a@2222", raft.NetworkTransportConfig{MaxPool: 1, Timeout: 5 * time.Second})
	defer ta.Close()
	call := func(addr raft.ServerAddress) error {
		var resp raft.AppendEntriesResponse
		return ta.AppendEntries("b", addr, &raft.AppendEntriesRequest{Term: 7}, &resp)
	}
	if err := call("b@1111"); err != nil {
		t.Fatalf("to b's incarnation: %v", err)
	}
	if err := call("b"); err != nil {
		t.Fatalf("to b's bare id: %v", err)
	}
	if b.StaleIncarnationStreams() != 0 {
		t.Fatalf("%d streams refused before any went to another incarnation", b.StaleIncarnationStreams())
	}
	if err := call("b@9999"); err == nil {
		t.Fatal("a raft call to another incarnation of b was answered")
	}
	if n := b.StaleIncarnationStreams(); n != 1 {
		t.Fatalf("b refused %d streams for another incarnation, want 1", n)
	}
}

// TestRaftPipelineSurvivesAnotherPeersRestart: a raft pipeline from a to
// b keeps working when b's connection to a third node, c, ends (c
// restarted or died). Dropping raft's stream pools on every ended
// connection (NetworkTransport.CloseStreams) also closed every stream b
// served to healthy peers, a's pipelines among them; the leader learnt it
// from a failed send, and raft then left the entry unsent until its next
// write or its commit timeout (5-10 s): a node that came back with an
// empty data dir waited that long for each configuration change of its
// re-addition.
func TestRaftPipelineSurvivesAnotherPeersRestart(t *testing.T) {
	reg := newRegistry()
	a := newMesh(t, reg, "a", testSecret, 1)
	defer a.Close()
	b := newMesh(t, reg, "b", testSecret, 1)
	defer b.Close()
	c := newMesh(t, reg, "c", testSecret, 1)
	cfg := func(name string) raft.NetworkTransportConfig {
		return raft.NetworkTransportConfig{Timeout: 5 * time.Second, Logger: raftLogger(name)}
	}
	tb := b.RaftTransport(0, "b", cfg("b/transport"))
	defer tb.Close()
	go func() {
		for rpc := range tb.Consumer() {
			rpc.Respond(&raft.AppendEntriesResponse{Term: 3, Success: true}, nil)
		}
	}()
	ta := a.RaftTransport(0, "a", cfg("a/transport"))
	defer ta.Close()
	tc := c.RaftTransport(0, "c", cfg("c/transport"))

	p, err := ta.AppendEntriesPipeline("b", "b")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	go func() { // raft's replication reads the finished appends
		for range p.Consumer() {
		}
	}()
	send := func(i int) error {
		f, err := p.AppendEntries(&raft.AppendEntriesRequest{Term: 3, PrevLogEntry: uint64(i)}, new(raft.AppendEntriesResponse))
		if err != nil {
			return fmt.Errorf("send: %w", err)
		}
		done := make(chan error, 1)
		go func() { done <- f.Error() }()
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("response: %w", err)
			}
			return nil
		case <-time.After(10 * time.Second): // a failure deadline, not a timing
			return errors.New("no response within 10 s")
		}
	}
	if err := send(1); err != nil {
		t.Fatalf("first append on the pipeline: %v", err)
	}

	// c talks to b, then goes away: b's connection to c ends.
	var resp raft.AppendEntriesResponse
	if err := tc.AppendEntries("b", "b", &raft.AppendEntriesRequest{Term: 3}, &resp); err != nil {
		t.Fatalf("c to b: %v", err)
	}
	tc.Close()
	c.Close()
	waitFor(t, 5*time.Second, "b to see c's connection end", func() bool { return b.numConns()["c"] == 0 })

	for i := 2; i <= 4; i++ {
		if err := send(i); err != nil {
			t.Fatalf("append %d on a's pipeline to b after c went away: %v", i, err)
		}
	}
}

package mesh

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// beatLog counts the beats a mesh took, by sender.
type beatLog struct {
	mu sync.Mutex
	n  map[string]int
}

func (l *beatLog) add(from string) {
	l.mu.Lock()
	l.n[from]++
	l.mu.Unlock()
}

func (l *beatLog) count(from string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n[from]
}

// connectedPair is two meshes with a QUIC connection between them (a
// stream opened and answered), each recording the beats it takes.
func connectedPair(t *testing.T) (a, b *Mesh, la, lb *beatLog) {
	t.Helper()
	reg := newRegistry()
	a = newMesh(t, reg, "a", testSecret, 1)
	b = newMesh(t, reg, "b", testSecret, 1)
	t.Cleanup(func() { a.Close(); b.Close() })
	b.Handle(KindCall, func(s net.Conn, _ string, _ int) { echo(s) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := a.Open(ctx, "b", KindCall, 0)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, []byte("hello"))
	c.Close()
	waitFor(t, 5*time.Second, "b to know the connection", func() bool { return b.current("a") != nil })
	la, lb = &beatLog{n: map[string]int{}}, &beatLog{n: map[string]int{}}
	a.HandleBeats(la.add)
	b.HandleBeats(lb.add)
	return a, b, la, lb
}

// TestBeatsReachThePeer: a beat goes both ways over the pair's
// connection path, as one datagram each, outside QUIC.
func TestBeatsReachThePeer(t *testing.T) {
	a, b, la, lb := connectedPair(t)
	// A beat is a datagram: the first may go before the receiver reads
	// (it reads from HandleBeats on), so send until one arrives.
	waitFor(t, 5*time.Second, "a's beats at b", func() bool {
		if err := a.Beat("b"); err != nil {
			t.Fatalf("a.Beat: %v", err)
		}
		return lb.count("a") > 0
	})
	waitFor(t, 5*time.Second, "b's beats at a", func() bool {
		if err := b.Beat("a"); err != nil {
			t.Fatalf("b.Beat: %v", err)
		}
		return la.count("b") > 0
	})
	if _, _, rejected := b.BeatCounts(); rejected != 0 {
		t.Errorf("b dropped %d of a's beats", rejected)
	}
	if err := a.Beat("nobody"); !errors.Is(err, ErrNoConn) {
		t.Errorf("a beat to a node without a connection: %v, want ErrNoConn", err)
	}
}

// TestBadBeatsAreDropped: a datagram that is not a beat signed on a live
// connection to its sender with a fresh counter (garbage, a forged or
// altered MAC, a replay, a sender with no connection, this node's own
// id) is counted and dropped, and the node keeps taking good beats.
func TestBadBeatsAreDropped(t *testing.T) {
	a, b, _, lb := connectedPair(t)
	pc := a.current("b")
	if pc == nil || pc.beatKey().key == nil {
		t.Fatal("a has no beat key for its connection to b")
	}
	// beat builds what a.Beat would send, with counter ctr and sender id.
	beat := func(id string, ctr uint64) []byte {
		p := []byte{beatMagic, beatVersion, byte(len(id))}
		p = append(p, id...)
		p = binary.BigEndian.AppendUint64(p, ctr)
		return pc.beatKey().sum(p, p)
	}
	raw, err := net.DialUDP("udp", nil, b.udp.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	send := func(p []byte) {
		t.Helper()
		if _, err := raw.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	good := beat("a", 1000)
	altered := append([]byte(nil), good...)
	altered[len(altered)-1] ^= 1
	bad := [][]byte{
		{beatMagic},                 // truncated
		{beatMagic, beatVersion, 0}, // no sender
		{beatMagic, 9, 1, 'a'},      // unknown version
		append(beat("a", 1001), 0),  // longer than its sender id says
		altered,                     // MAC altered
		beat("c", 1002),             // a node with no connection
		beat("b", 1003),             // b's own id
		append([]byte{beatMagic, beatVersion, 255}, make([]byte, 255+8+beatMACLen)...), // zero MAC
	}
	for i, p := range bad {
		send(p)
		waitFor(t, 5*time.Second, "bad beat dropped", func() bool {
			_, _, rejected := b.BeatCounts()
			return rejected == int64(i+1)
		})
	}
	if n := lb.count("a") + lb.count("b") + lb.count("c"); n != 0 {
		t.Fatalf("b took %d bad beats", n)
	}
	send(good)
	waitFor(t, 5*time.Second, "a good beat taken", func() bool { return lb.count("a") == 1 })
	send(good)           // replayed
	send(beat("a", 999)) // older than one taken
	waitFor(t, 5*time.Second, "replays dropped", func() bool {
		_, _, rejected := b.BeatCounts()
		return rejected == int64(len(bad)+2)
	})
	send(beat("a", 1001))
	waitFor(t, 5*time.Second, "a newer beat taken", func() bool { return lb.count("a") == 2 })
}

package mesh

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash"
	"sync"
	"sync/atomic"
)

// Beats: one small UDP datagram, outside QUIC, that tells a peer "this node
// is alive" (relaylog's node beats, every 300 ms to each node it shares a
// shard with). As a QUIC stream frame a beat cost a packet for the beat,
// one for its answer and one for QUIC's delayed acknowledgement of the
// answer, and about fourteen goroutine wake-ups on the two nodes (QUIC's
// connection loop, send queue, socket reader and stream reader on each
// side); the beats were the largest part of an idle cluster's cost. A
// datagram beat is one packet and two wake-ups on the receiver (quic-go's
// socket reader hands it to the beat reader), no answer: each node beats
// the other.
//
// A beat travels on the mesh's own UDP socket: its first byte has QUIC's
// two high bits clear, which quic-go hands to Transport.ReadNonQUICPacket
// instead of its connections, so beats need no other port. It is
// authenticated with a key both nodes export from the TLS 1.3 session of
// their QUIC connection (RFC 8446 section 7.5), so it works with the
// derived CA and with an operator's PKI alike and needs no other secret:
//
//	magic 0x0b | version 1 | len(from) | from | counter (8 bytes) | HMAC-SHA256(key, all before)[:16]
//
// The counter rises with every beat a node sends on a connection, and a
// receiver takes only a counter above the last it took on that
// connection: a replayed or reordered beat is dropped. A node without a
// live connection to a peer sends it no beat (Beat returns ErrNoConn).
const (
	beatMagic   = 0x0b
	beatVersion = 1
	beatMACLen  = 16
	beatLabel   = "EXPORTER-edgenode-mesh-beat"
	beatKeyLen  = 32
	// maxBeatLen bounds a beat datagram (the longest node id).
	maxBeatLen = 3 + MaxNodeIDLen + 8 + beatMACLen
)

// ErrNoConn: no live QUIC connection to the peer, so no key to sign a
// beat with.
var ErrNoConn = errors.New("mesh: no connection to the node")

// beatState is a connection's beat key and counters, set up on first use.
type beatState struct {
	once sync.Once
	key  []byte // nil: the TLS session exports no key
	macs sync.Pool
	sent atomic.Uint64 // the last counter sent on this connection
	recv atomic.Uint64 // the last counter taken from it
}

// beatKey is pc's beat state, its key exported from the TLS session.
func (pc *peerConn) beatKey() *beatState {
	b := &pc.beat
	b.once.Do(func() {
		cs := pc.qc.ConnectionState().TLS
		if key, err := cs.ExportKeyingMaterial(beatLabel, nil, beatKeyLen); err == nil {
			b.key = key
			b.macs.New = func() any { return hmac.New(sha256.New, key) }
		}
	})
	return b
}

// sum appends the MAC of msg to dst.
func (b *beatState) sum(dst, msg []byte) []byte {
	h := b.macs.Get().(hash.Hash)
	h.Reset()
	h.Write(msg)
	var full [sha256.Size]byte
	sum := h.Sum(full[:0])
	b.macs.Put(h)
	return append(dst, sum[:beatMACLen]...)
}

// Beat sends node a beat datagram, signed with the key of a live
// connection to it, to that connection's address.
func (m *Mesh) Beat(node string) error {
	// The preferred connection, or while it is gone (the peer restarted
	// and the old one was reset) another live one: the receiver tries
	// the keys of all its live connections to this node.
	pc, others := m.connsOf(node)
	if pc == nil {
		if o := others(); len(o) > 0 {
			pc = o[0]
		}
	}
	if pc == nil {
		return ErrNoConn
	}
	b := pc.beatKey()
	if b.key == nil {
		return ErrNoConn
	}
	self := m.opts.NodeID
	buf := make([]byte, 0, 3+len(self)+8+beatMACLen)
	buf = append(buf, beatMagic, beatVersion, byte(len(self)))
	buf = append(buf, self...)
	buf = binary.BigEndian.AppendUint64(buf, b.sent.Add(1))
	buf = b.sum(buf, buf)
	if _, err := m.tr.WriteTo(buf, pc.qc.RemoteAddr()); err != nil {
		return err
	}
	m.beatsSent.Add(1)
	return nil
}

// HandleBeats calls h with the sender of every valid beat this node
// receives, from now on, on one goroutine (h must not block). Call it
// once.
func (m *Mesh) HandleBeats(h func(from string)) {
	m.mu.Lock()
	if m.closed || m.beatsServed {
		m.mu.Unlock()
		return
	}
	m.beatsServed = true
	m.wg.Add(1)
	m.mu.Unlock()
	go m.readBeats(h)
}

// readBeats reads the socket's non-QUIC datagrams until the mesh closes.
func (m *Mesh) readBeats(h func(from string)) {
	defer m.wg.Done()
	buf := make([]byte, maxBeatLen+1)
	for {
		n, _, err := m.tr.ReadNonQUICPacket(m.ctx, buf)
		if err != nil {
			return // the mesh closed (its context or transport)
		}
		from, ok := m.checkBeat(buf[:n])
		if !ok {
			m.beatsRejected.Add(1)
			continue
		}
		m.beatsReceived.Add(1)
		h(from)
	}
}

// checkBeat returns the sender of a valid beat: well formed, signed with
// the key of a live connection to its sender, and with a counter above
// the last taken on that connection.
func (m *Mesh) checkBeat(p []byte) (string, bool) {
	if len(p) < 3 || len(p) > maxBeatLen || p[0] != beatMagic || p[1] != beatVersion {
		return "", false
	}
	idLen := int(p[2])
	if idLen == 0 || len(p) != 3+idLen+8+beatMACLen {
		return "", false
	}
	from := string(p[3 : 3+idLen])
	if from == m.opts.NodeID {
		return "", false
	}
	body, mac := p[:len(p)-beatMACLen], p[len(p)-beatMACLen:]
	ctr := binary.BigEndian.Uint64(body[3+idLen:])
	pref, others := m.connsOf(from)
	if pref != nil {
		if ok, valid := takeBeat(pref, body, mac, ctr); valid {
			return from, ok
		}
	}
	for _, pc := range others() {
		if ok, valid := takeBeat(pc, body, mac, ctr); valid {
			return from, ok
		}
	}
	return "", false
}

// takeBeat: valid, the beat is signed with pc's key; ok, its counter is
// above the last taken on pc (and is now the last).
func takeBeat(pc *peerConn, body, mac []byte, ctr uint64) (ok, valid bool) {
	b := pc.beatKey()
	if b.key == nil {
		return false, false
	}
	var want [beatMACLen]byte
	if !hmac.Equal(b.sum(want[:0], body), mac) {
		return false, false
	}
	for {
		last := b.recv.Load()
		if ctr <= last {
			return false, true // replayed, or overtaken by a newer beat
		}
		if b.recv.CompareAndSwap(last, ctr) {
			return true, true
		}
	}
}

// connsOf is the preferred live connection to peer (or nil), and a
// function listing the other live ones, for a beat signed on a
// connection the two nodes do not yet agree on.
func (m *Mesh) connsOf(peer string) (*peerConn, func() []*peerConn) {
	m.mu.Lock()
	pref := m.conns[peer]
	m.mu.Unlock()
	if pref != nil && !pref.alive() {
		pref = nil
	}
	return pref, func() []*peerConn {
		m.mu.Lock()
		defer m.mu.Unlock()
		var out []*peerConn
		for pc := range m.all {
			if pc.id == peer && pc != pref && pc.alive() {
				out = append(out, pc)
			}
		}
		return out
	}
}

// BeatCounts: beats this node sent, valid beats it received, and the
// datagrams it dropped as beats (malformed, unsigned or wrongly signed,
// replayed, or from a node it has no connection to).
func (m *Mesh) BeatCounts() (sent, received, rejected int64) {
	return m.beatsSent.Load(), m.beatsReceived.Load(), m.beatsRejected.Load()
}

package mesh

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// Addr is the net.Addr of a mesh endpoint. String returns the node id, which
// is also the raft.ServerAddress of that node; UDP is its mesh socket address
// (nil for StreamLayer.Addr).
type Addr struct {
	NodeID string
	UDP    net.Addr
}

// Network returns "edgenode-mesh".
func (a Addr) Network() string { return "edgenode-mesh" }

// String returns the node id.
func (a Addr) String() string { return a.NodeID }

// header is the preamble of every stream.
type header struct {
	kind  Kind
	shard int
	from  string
	to    string // KindRaftTo: the receiver's incarnation addressed
}

// appendHeader encodes h (see doc.go for the layout).
func appendHeader(b []byte, h header) []byte {
	b = append(b, byte(h.kind))
	b = binary.AppendUvarint(b, uint64(h.shard))
	b = binary.AppendUvarint(b, uint64(len(h.from)))
	b = append(b, h.from...)
	if h.kind == KindRaftTo {
		b = binary.AppendUvarint(b, uint64(len(h.to)))
		b = append(b, h.to...)
	}
	return b
}

// byteReader reads single bytes from a stream without buffering past the
// header (everything after it belongs to the stream's user).
type byteReader struct {
	r   io.Reader
	buf [1]byte
}

func (br *byteReader) ReadByte() (byte, error) {
	if _, err := io.ReadFull(br.r, br.buf[:]); err != nil {
		return 0, err
	}
	return br.buf[0], nil
}

var errBadHeader = errors.New("mesh: malformed stream header")

// readHeader decodes a header from r, reading exactly its bytes.
func readHeader(r io.Reader) (header, error) {
	br := &byteReader{r: r}
	k, err := br.ReadByte()
	if err != nil {
		return header{}, err
	}
	shard, err := binary.ReadUvarint(br)
	if err != nil {
		return header{}, err
	}
	if shard > MaxShard {
		return header{}, fmt.Errorf("%w: shard %d", errBadHeader, shard)
	}
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return header{}, err
	}
	if n == 0 || n > MaxNodeIDLen {
		return header{}, fmt.Errorf("%w: node id length %d", errBadHeader, n)
	}
	id := make([]byte, n)
	if _, err := io.ReadFull(r, id); err != nil {
		return header{}, err
	}
	h := header{kind: Kind(k), shard: int(shard), from: string(id)}
	if h.kind == KindRaftTo {
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return header{}, err
		}
		if n == 0 || n > MaxIncarnationLen {
			return header{}, fmt.Errorf("%w: incarnation length %d", errBadHeader, n)
		}
		to := make([]byte, n)
		if _, err := io.ReadFull(r, to); err != nil {
			return header{}, err
		}
		h.to = string(to)
	}
	return h, nil
}

// Conn is a mesh stream as a net.Conn. It is what Open, Handle and the raft
// StreamLayer hand out.
//
// Close closes both directions: it sends FIN on the send side (data already
// written is still delivered) and stops the receive side (STOP_SENDING), so
// that the stream completes on both ends and its credit returns to the
// peer's stream limit at once. quic-go's Stream.Close alone closes only the
// send side, which would leave half-open streams behind raft's connection
// pool. CloseWrite is the half-close (FIN only) for request/response use.
type Conn struct {
	s      *quic.Stream
	pc     *peerConn
	local  Addr
	remote Addr
	kind   Kind
	shard  int

	writeMu   sync.Mutex // Write vs Close/CloseWrite (quic-go forbids them concurrently)
	closeOnce sync.Once
	closed    bool // guarded by writeMu
}

var _ net.Conn = (*Conn)(nil)

func newConn(pc *peerConn, s *quic.Stream, kind Kind, shard int) *Conn {
	pc.active.Add(1)
	return &Conn{
		s:      s,
		pc:     pc,
		local:  Addr{NodeID: pc.m.opts.NodeID, UDP: pc.qc.LocalAddr()},
		remote: Addr{NodeID: pc.id, UDP: pc.qc.RemoteAddr()},
		kind:   kind,
		shard:  shard,
	}
}

// Read reads from the stream.
func (c *Conn) Read(p []byte) (int, error) { return c.s.Read(p) }

// Write writes to the stream.
func (c *Conn) Write(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.s.Write(p)
}

// CloseWrite sends FIN: the peer reads io.EOF after the data written so far.
// Reading goes on until Close.
func (c *Conn) CloseWrite() error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	return c.s.Close()
}

// Close closes both directions of the stream (see Conn).
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		// Unblocks a pending Read; a no-op if io.EOF was already read.
		c.s.CancelRead(streamCodeClosed)
		if c.writeMu.TryLock() {
			c.closed = true
			_ = c.s.Close() // FIN after the buffered data
			c.writeMu.Unlock()
		} else {
			// A Write is blocked (flow control): abort it, since quic-go's
			// Close must not run concurrently with Write.
			c.s.CancelWrite(streamCodeClosed)
			c.writeMu.Lock()
			c.closed = true
			c.writeMu.Unlock()
		}
		c.pc.streamDone()
	})
	return nil
}

// reset aborts both directions with code.
func (c *Conn) reset(code quic.StreamErrorCode) {
	c.closeOnce.Do(func() {
		c.s.CancelRead(code)
		c.s.CancelWrite(code)
		c.writeMu.Lock()
		c.closed = true
		c.writeMu.Unlock()
		c.pc.streamDone()
	})
}

// LocalAddr returns this node's address (String is the node id).
func (c *Conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr returns the peer's address (String is its node id).
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// PeerID is the peer's node id, verified against its certificate.
func (c *Conn) PeerID() string { return c.pc.id }

// Kind is what the stream carries.
func (c *Conn) Kind() Kind { return c.kind }

// Shard is the shard in the stream header.
func (c *Conn) Shard() int { return c.shard }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error { return c.s.SetDeadline(t) }

// SetReadDeadline sets the read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.s.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.s.SetWriteDeadline(t) }

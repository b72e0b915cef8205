// Package logcodec is the binary encoding of a raft.Log used by the shared
// log stores of relaylog (sharedlog as bolt values, walstore as the payload
// of its log records). The encoding is part of their on-disk formats: it must
// not change, except by a new format version byte that both still decode.
//
// Encoding (the index is not included: both stores keep it in their own key
// or record header and pass it to DecodeLog):
//
//	byte     format version (1)
//	uvarint  Term
//	byte     Type
//	byte     flags: bit0 AppendedAt is non-zero
//	varint   AppendedAt seconds since the Unix epoch   (only if bit0)
//	uvarint  AppendedAt nanoseconds within the second  (only if bit0)
//	uvarint  len(Data)+1, 0 meaning Data == nil; then the bytes
//	uvarint  len(Extensions)+1, 0 meaning nil; then the bytes
//
// (the primitives of internal/varint: Byte, Uvarint, Varint, NilBytes).
//
// A 250-byte command with AppendedAt set encodes to 266 bytes (16 bytes of
// overhead) without reflection or allocation.
// AppendedAt keeps its instant to the nanosecond and decodes in the Local
// location, like time.Now(); its monotonic clock reading cannot be stored (no
// encoding can), so a decoded log equals the original with AppendedAt.Round(0).
package logcodec

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/edgenode/edgenode/internal/varint"
	"github.com/hashicorp/raft"
)

const formatV1 = 1

const flagAppendedAt = 1

// ErrCorrupt is returned by DecodeLog for input that is not a valid encoding.
var ErrCorrupt = errors.New("logcodec: corrupt log entry")

// maxHeader bounds everything but the Data and Extensions bytes.
const maxHeader = 1 + binary.MaxVarintLen64 + 1 + 1 + binary.MaxVarintLen64 + binary.MaxVarintLen32 + 2*binary.MaxVarintLen64

// MaxSize returns an upper bound of the encoded size of l, for sizing buffers.
func MaxSize(l *raft.Log) int {
	return maxHeader + len(l.Data) + len(l.Extensions)
}

// AppendLog appends the encoding of l (all fields but Index) to dst.
func AppendLog(dst []byte, l *raft.Log) []byte {
	e := varint.Encoder{B: dst}
	e.Byte(formatV1)
	e.Uvarint(l.Term)
	e.Byte(byte(l.Type))
	if l.AppendedAt.IsZero() {
		e.Byte(0)
	} else {
		e.Byte(flagAppendedAt)
		e.Varint(l.AppendedAt.Unix())
		e.Uvarint(uint64(l.AppendedAt.Nanosecond()))
	}
	e.NilBytes(l.Data)
	e.NilBytes(l.Extensions)
	return e.B
}

// DecodeLog decodes v, the whole of one encoding, into l with the given
// index. It does not retain v (which may live in an mmap or a reused read
// buffer): Data and Extensions are copied into one new allocation, with
// their capacities clipped so that an append to one cannot overwrite the
// other. Nil and empty Data and Extensions are told apart. It returns
// ErrCorrupt if v is truncated, has trailing bytes or an unknown version.
func DecodeLog(index uint64, v []byte, l *raft.Log) error {
	d := varint.NewDecoder(v, ErrCorrupt)
	if d.Byte() != formatV1 {
		return ErrCorrupt
	}
	term := d.Uvarint()
	typ := raft.LogType(d.Byte())
	flags := d.Byte()
	var at time.Time
	if flags&flagAppendedAt != 0 {
		sec := d.Varint()
		nsec := d.Uvarint()
		if nsec >= 1e9 {
			d.Fail()
		}
		at = time.Unix(sec, int64(nsec))
	}
	data, dataNil := d.NilBytes()
	ext, extNil := d.NilBytes()
	if err := d.End(); err != nil {
		return err
	}

	// One allocation for both byte slices; the capacity of each is clipped
	// so that an append by the caller cannot run into the other.
	var buf []byte
	if len(data)+len(ext) > 0 {
		buf = make([]byte, len(data)+len(ext))
		copy(buf, data)
		copy(buf[len(data):], ext)
	}
	*l = raft.Log{Index: index, Term: term, Type: typ, AppendedAt: at}
	if !dataNil {
		if len(data) == 0 {
			l.Data = []byte{}
		} else {
			l.Data = buf[:len(data):len(data)]
		}
	}
	if !extNil {
		if len(ext) == 0 {
			l.Extensions = []byte{}
		} else {
			l.Extensions = buf[len(data):]
		}
	}
	return nil
}

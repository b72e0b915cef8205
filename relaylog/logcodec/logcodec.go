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
	dst = append(dst, formatV1)
	dst = binary.AppendUvarint(dst, l.Term)
	dst = append(dst, byte(l.Type))
	if l.AppendedAt.IsZero() {
		dst = append(dst, 0)
	} else {
		dst = append(dst, flagAppendedAt)
		dst = binary.AppendVarint(dst, l.AppendedAt.Unix())
		dst = binary.AppendUvarint(dst, uint64(l.AppendedAt.Nanosecond()))
	}
	dst = appendBytes(dst, l.Data)
	dst = appendBytes(dst, l.Extensions)
	return dst
}

func appendBytes(dst, b []byte) []byte {
	if b == nil {
		return append(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(b))+1)
	return append(dst, b...)
}

// DecodeLog decodes v, the whole of one encoding, into l with the given
// index. It does not retain v (which may live in an mmap or a reused read
// buffer): Data and Extensions are copied into one new allocation, with
// their capacities clipped so that an append to one cannot overwrite the
// other. Nil and empty Data and Extensions are told apart. It returns
// ErrCorrupt if v is truncated, has trailing bytes or an unknown version.
func DecodeLog(index uint64, v []byte, l *raft.Log) error {
	if len(v) < 1 || v[0] != formatV1 {
		return ErrCorrupt
	}
	p := 1
	term, n := binary.Uvarint(v[p:])
	if n <= 0 {
		return ErrCorrupt
	}
	p += n
	if len(v) < p+2 {
		return ErrCorrupt
	}
	typ := raft.LogType(v[p])
	flags := v[p+1]
	p += 2
	var at time.Time
	if flags&flagAppendedAt != 0 {
		sec, n := binary.Varint(v[p:])
		if n <= 0 {
			return ErrCorrupt
		}
		p += n
		nsec, n := binary.Uvarint(v[p:])
		if n <= 0 || nsec >= 1e9 {
			return ErrCorrupt
		}
		p += n
		at = time.Unix(sec, int64(nsec))
	}
	data, dataNil, p, ok := readBytes(v, p)
	if !ok {
		return ErrCorrupt
	}
	ext, extNil, p, ok := readBytes(v, p)
	if !ok || p != len(v) {
		return ErrCorrupt
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

func readBytes(v []byte, p int) (b []byte, isNil bool, next int, ok bool) {
	n, k := binary.Uvarint(v[p:])
	if k <= 0 {
		return nil, false, p, false
	}
	p += k
	if n == 0 {
		return nil, true, p, true
	}
	n--
	if n > uint64(len(v)-p) {
		return nil, false, p, false
	}
	return v[p : p+int(n)], false, p + int(n), true
}

package walstore

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/hashicorp/raft"
)

// Log value encoding, copied from relaylog/sharedlog (the index is in the
// record header, not repeated here):
//
//	byte     format version (logFormatV1)
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
const logFormatV1 = 1

const flagAppendedAt = 1

var errCorrupt = errors.New("walstore: corrupt log entry")

// maxEncodedHeader bounds everything but the Data and Extensions bytes.
const maxEncodedHeader = 1 + binary.MaxVarintLen64 + 1 + 1 + binary.MaxVarintLen64 + binary.MaxVarintLen32 + 2*binary.MaxVarintLen64

func encodedLogSize(l *raft.Log) int {
	return maxEncodedHeader + len(l.Data) + len(l.Extensions)
}

// appendLog appends the encoding of l to dst.
func appendLog(dst []byte, l *raft.Log) []byte {
	dst = append(dst, logFormatV1)
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

// decodeLog decodes v (which may be a reused read buffer) into l, copying Data
// and Extensions into one new allocation.
func decodeLog(index uint64, v []byte, l *raft.Log) error {
	if len(v) < 1 || v[0] != logFormatV1 {
		return errCorrupt
	}
	p := 1
	term, n := binary.Uvarint(v[p:])
	if n <= 0 {
		return errCorrupt
	}
	p += n
	if len(v) < p+2 {
		return errCorrupt
	}
	typ := raft.LogType(v[p])
	flags := v[p+1]
	p += 2
	var at time.Time
	if flags&flagAppendedAt != 0 {
		sec, n := binary.Varint(v[p:])
		if n <= 0 {
			return errCorrupt
		}
		p += n
		nsec, n := binary.Uvarint(v[p:])
		if n <= 0 || nsec >= 1e9 {
			return errCorrupt
		}
		p += n
		at = time.Unix(sec, int64(nsec))
	}
	data, dataNil, p, ok := readBytes(v, p)
	if !ok {
		return errCorrupt
	}
	ext, extNil, p, ok := readBytes(v, p)
	if !ok || p != len(v) {
		return errCorrupt
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

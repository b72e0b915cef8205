package walstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Record framing. Every record is
//
//	u32 little-endian  len(body)
//	u32 little-endian  CRC-32C (Castagnoli) of body
//	body:
//	  byte     type
//	  varint   shard id (zigzag, shard ids may be negative)
//	  ...      type-specific fields:
//	    recLog:    uvarint index, then the raft.Log encoding of logcodec.AppendLog
//	    recDelete: uvarint min, uvarint max (inclusive)
//	    recSet:    uvarint len(key), key, value (the rest of the body)
//	    recSeal:   nothing (shard 0); the segment ends here
//
// A length of 0 cannot start a valid record (a body has at least a type and
// a shard byte), so the zeros of the preallocated, never written part of a
// segment read as "no more records".
const hdrLen = 8

const (
	recLog    byte = 1
	recDelete byte = 2
	recSet    byte = 3
	recSeal   byte = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	// errEnd: no record here (zeros, or too few bytes for a header).
	errEnd = errors.New("end of records")
	// errTorn: the record runs past the end of the data, or its checksum or
	// contents are wrong.
	errTorn = errors.New("torn or corrupt record")
)

// maxRecordOverhead bounds header, type, shard and index of a log record.
const maxRecordOverhead = hdrLen + 1 + 2*binary.MaxVarintLen64

// beginRecord appends the header placeholder, type and shard of a record and
// returns where the record starts; finishRecord fills the header in.
func beginRecord(dst []byte, typ byte, shard int) ([]byte, int) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0, typ)
	dst = binary.AppendVarint(dst, int64(shard))
	return dst, start
}

func finishRecord(dst []byte, start int) {
	body := dst[start+hdrLen:]
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(body)))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(body, castagnoli))
}

func appendDeleteRecord(dst []byte, shard int, min, max uint64) []byte {
	dst, st := beginRecord(dst, recDelete, shard)
	dst = binary.AppendUvarint(dst, min)
	dst = binary.AppendUvarint(dst, max)
	finishRecord(dst, st)
	return dst
}

func appendSetRecord(dst []byte, shard int, key, val []byte) []byte {
	dst, st := beginRecord(dst, recSet, shard)
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	dst = append(dst, val...)
	finishRecord(dst, st)
	return dst
}

func appendSealRecord(dst []byte) []byte {
	dst, st := beginRecord(dst, recSeal, 0)
	finishRecord(dst, st)
	return dst
}

// record is a parsed record; its slices point into the parsed buffer.
type record struct {
	typ      byte
	shard    int
	index    uint64 // recLog
	payload  []byte // recLog: encoded raft.Log; recSet: value
	key      []byte // recSet
	min, max uint64 // recDelete
}

// parseRecord parses the record at the start of b and returns it with its
// total size. It returns errEnd if b starts with a zero length or is shorter
// than a header and all zero, errTorn for anything else that is not a whole
// valid record.
func parseRecord(b []byte) (record, int, error) {
	var r record
	if len(b) < hdrLen {
		if allZero(b) {
			return r, 0, errEnd
		}
		return r, 0, errTorn
	}
	n := binary.LittleEndian.Uint32(b)
	if n == 0 {
		return r, 0, errEnd
	}
	if uint64(n) > uint64(len(b)-hdrLen) {
		return r, 0, errTorn
	}
	body := b[hdrLen : hdrLen+int(n)]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return r, 0, errTorn
	}
	size := hdrLen + int(n)
	r.typ = body[0]
	shard, k := binary.Varint(body[1:])
	if k <= 0 {
		return r, 0, errTorn
	}
	r.shard = int(shard)
	p := 1 + k
	switch r.typ {
	case recLog:
		idx, k := binary.Uvarint(body[p:])
		if k <= 0 {
			return r, 0, errTorn
		}
		r.index = idx
		r.payload = body[p+k:]
	case recDelete:
		min, k := binary.Uvarint(body[p:])
		if k <= 0 {
			return r, 0, errTorn
		}
		p += k
		max, k := binary.Uvarint(body[p:])
		if k <= 0 || p+k != len(body) {
			return r, 0, errTorn
		}
		r.min, r.max = min, max
	case recSet:
		kl, k := binary.Uvarint(body[p:])
		if k <= 0 || kl > uint64(len(body)-p-k) {
			return r, 0, errTorn
		}
		p += k
		r.key = body[p : p+int(kl)]
		r.payload = body[p+int(kl):]
	case recSeal:
		if p != len(body) {
			return r, 0, errTorn
		}
	default:
		return r, 0, errTorn
	}
	return r, size, nil
}

// sectorSize is the unit a disk writes atomically (or not at all) that the
// torn-write rule assumes, as etcd's WAL does.
const sectorSize = 512

// torn decides whether the unreadable record at data[off:] (data is the
// whole last segment, written its length up to its last non-zero byte) can
// be the end of a write cut short by a crash, and says why or why not. A
// commit is one pwrite of at most maxBatch bytes (or one larger request)
// at the end of the log, into a preallocated, zero-filled file; a crash may
// persist any subset of its sectors. So the record is a torn tail when
//   - nothing non-zero follows it (the clean end of the log), or
//   - everything written after it lies within one batch, and the record
//     shows a part that never reached the disk: a zero header, a header
//     or body cut by the end of the file, an end in the zeros after the
//     last written byte, or a sector of it that is all zeros from the
//     record's bytes in it to the sector's end (etcd's WAL checks
//     sector-aligned pieces of the record the same way).
//
// Otherwise (a bad checksum on a record whose every sector was written, or
// written data beyond one batch) it is corruption: later records may be
// acknowledged. As in etcd, a flipped length field within the last batch
// can still pass for a torn write.
func torn(data []byte, off, written, maxBatch int) (string, bool) {
	rest := data[off:]
	if written <= off {
		return "end of the log", true
	}
	if written-off > maxBatch {
		return fmt.Sprintf("%d bytes of log follow it, more than one write", written-off), false
	}
	if len(rest) < hdrLen {
		return "header cut by the end of the file", true
	}
	n := binary.LittleEndian.Uint32(rest)
	if n == 0 {
		return "zero header with written data after it (a sector of the last write is missing)", true
	}
	if uint64(n) > uint64(len(rest)-hdrLen) {
		return "record runs past the end of the file", true
	}
	end := off + hdrLen + int(n)
	if end > written {
		return "the record's end was never written", true
	}
	// A sector that never reached the disk is zero to its end: a piece of
	// the record that is zero up to the end of its sector (past the record,
	// where the next records would be) is such a sector. A piece that is
	// zero but followed by written bytes in the same sector is just data.
	for s := off - off%sectorSize; s < end; s += sectorSize {
		if allZero(data[max(s, off):min(s+sectorSize, len(data))]) {
			return "a sector of the record is all zeros (never written)", true
		}
	}
	if crc32.Checksum(data[off+hdrLen:end], castagnoli) != binary.LittleEndian.Uint32(rest[4:]) {
		return "checksum mismatch in a record whose every sector was written", false
	}
	return "malformed record with a valid checksum", false
}

// nonZeroLen is len(b) without its trailing zeros.
func nonZeroLen(b []byte) int {
	i := len(b)
	for i > 0 && b[i-1] == 0 {
		i--
	}
	return i
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

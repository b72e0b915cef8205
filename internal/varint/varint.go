// Package varint is the one binary codec of the project's own formats: the
// raft entries and snapshots of relaylog, the raft.Log encoding of
// relaylog/logcodec (the shared log stores' on-disk values and WAL records)
// and the node frames of wire/nodewire. Each of those formats is made of the
// primitives below and nothing else:
//
//	Byte       one byte
//	Bool       one byte, 0 or 1 (decoding anything else is an error)
//	Uvarint    encoding/binary's unsigned varint
//	Varint     encoding/binary's zigzag varint
//	Str        uvarint length, then the bytes
//	NilBytes   uvarint length+1 (0: nil), then the bytes
//	IDs        uvarint count, then each id as a varint
//	DeltaIDs   uvarint count, then each id's difference from the one before
//	           (the first from 0) as a varint: small for increasing ids
//
// An Encoder appends to a caller's buffer and never fails. A Decoder never
// panics on bad input: the first malformed field records the error its
// owner gave it (each format keeps its own error value), empties what is
// left, and every read after it returns a zero value, so that a decoder
// reads a whole structure and checks Err once. Counts are checked against
// what is left before anything is allocated for them, so a corrupt length
// cannot make a decoder allocate more than its input could hold.
//
// Neither type allocates, except Str, IDs and DeltaIDs decoding their
// result; both are meant to live on the caller's stack.
package varint

import "encoding/binary"

// Encoder appends encodings to B.
type Encoder struct{ B []byte }

// Byte appends v.
func (e *Encoder) Byte(v byte) { e.B = append(e.B, v) }

// Bool appends 1 for true, 0 for false.
func (e *Encoder) Bool(v bool) {
	if v {
		e.B = append(e.B, 1)
	} else {
		e.B = append(e.B, 0)
	}
}

// Uvarint appends v as an unsigned varint.
func (e *Encoder) Uvarint(v uint64) { e.B = binary.AppendUvarint(e.B, v) }

// Varint appends v as a zigzag varint.
func (e *Encoder) Varint(v int64) { e.B = binary.AppendVarint(e.B, v) }

// Str appends the length of s and its bytes.
func (e *Encoder) Str(s string) {
	e.B = binary.AppendUvarint(e.B, uint64(len(s)))
	e.B = append(e.B, s...)
}

// NilBytes appends len(b)+1 and the bytes of b, or 0 if b is nil: nil and
// empty are told apart.
func (e *Encoder) NilBytes(b []byte) {
	if b == nil {
		e.B = append(e.B, 0)
		return
	}
	e.B = binary.AppendUvarint(e.B, uint64(len(b))+1)
	e.B = append(e.B, b...)
}

// IDs appends the count of v and each id as a varint.
func (e *Encoder) IDs(v []int64) {
	e.B = binary.AppendUvarint(e.B, uint64(len(v)))
	for _, x := range v {
		e.B = binary.AppendVarint(e.B, x)
	}
}

// DeltaIDs appends the count of v and each id as its difference from the
// one before it (the first from 0).
func (e *Encoder) DeltaIDs(v []int64) {
	e.B = binary.AppendUvarint(e.B, uint64(len(v)))
	var prev int64
	for _, x := range v {
		e.B = binary.AppendVarint(e.B, x-prev)
		prev = x
	}
}

// Decoder reads encodings from the front of B.
type Decoder struct {
	B   []byte // what is left to read
	Err error  // the first error, nil while everything read was well formed
	bad error  // what Err becomes on malformed input
}

// NewDecoder returns a Decoder of b that records bad on malformed input.
func NewDecoder(b []byte, bad error) Decoder { return Decoder{B: b, bad: bad} }

// Fail records the decoder's error (if none is recorded yet) and drops what
// is left, so that every read after it returns a zero value. Formats call
// it for a field that decodes but is out of range.
func (d *Decoder) Fail() {
	if d.Err == nil {
		d.Err = d.bad
	}
	d.B = nil
}

// End returns Err, or the decoder's error if bytes are left over: it checks
// that the input was decoded whole.
func (d *Decoder) End() error {
	if d.Err == nil && len(d.B) != 0 {
		d.Err = d.bad
	}
	return d.Err
}

// Byte reads one byte.
func (d *Decoder) Byte() byte {
	if len(d.B) < 1 {
		d.Fail()
		return 0
	}
	v := d.B[0]
	d.B = d.B[1:]
	return v
}

// Bool reads one byte that must be 0 or 1.
func (d *Decoder) Bool() bool {
	if len(d.B) < 1 {
		d.Fail()
		return false
	}
	v := d.B[0]
	d.B = d.B[1:]
	if v > 1 {
		d.Fail()
	}
	return v == 1
}

// Uvarint reads an unsigned varint.
func (d *Decoder) Uvarint() uint64 {
	v, n := binary.Uvarint(d.B)
	if n <= 0 {
		d.Fail()
		return 0
	}
	d.B = d.B[n:]
	return v
}

// Varint reads a zigzag varint.
func (d *Decoder) Varint() int64 {
	v, n := binary.Varint(d.B)
	if n <= 0 {
		d.Fail()
		return 0
	}
	d.B = d.B[n:]
	return v
}

// Str reads a length and that many bytes, as a new string.
func (d *Decoder) Str() string {
	n := d.Uvarint()
	if n > uint64(len(d.B)) {
		d.Fail()
		return ""
	}
	s := string(d.B[:n])
	d.B = d.B[n:]
	return s
}

// NilBytes reads what Encoder.NilBytes wrote. The bytes are not copied: b
// points into the decoder's input. isNil tells a nil slice from an empty
// one.
func (d *Decoder) NilBytes() (b []byte, isNil bool) {
	n := d.Uvarint()
	if n == 0 {
		return nil, d.Err == nil
	}
	n--
	if n > uint64(len(d.B)) {
		d.Fail()
		return nil, false
	}
	b = d.B[:n]
	d.B = d.B[n:]
	return b, false
}

// Count reads a count of items that must fit in what is left, each taking
// at least min (>= 1) bytes; for anything larger it fails and returns 0.
func (d *Decoder) Count(min int) int {
	n := d.Uvarint()
	if n > uint64(len(d.B)/min) {
		d.Fail()
		return 0
	}
	return int(n)
}

// IDs reads what Encoder.IDs wrote; no ids read as nil.
func (d *Decoder) IDs() []int64 {
	n := d.Count(1)
	if n == 0 {
		return nil
	}
	out := make([]int64, n)
	for i := range out {
		out[i] = d.Varint()
	}
	return out
}

// DeltaIDs reads what Encoder.DeltaIDs wrote; no ids read as nil.
func (d *Decoder) DeltaIDs() []int64 {
	n := d.Count(1)
	if n == 0 {
		return nil
	}
	out := make([]int64, n)
	var prev int64
	for i := range out {
		prev += d.Varint()
		out[i] = prev
	}
	return out
}

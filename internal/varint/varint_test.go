package varint

import (
	"errors"
	"math"
	"reflect"
	"testing"
)

var errBad = errors.New("bad")

func encodeAll() []byte {
	e := Encoder{B: []byte("prefix")}
	e.Byte(7)
	e.Bool(true)
	e.Bool(false)
	e.Uvarint(math.MaxUint64)
	e.Varint(math.MinInt64)
	e.Str("héllo")
	e.Str("")
	e.NilBytes(nil)
	e.NilBytes([]byte{})
	e.NilBytes([]byte("xy"))
	e.IDs([]int64{3, -1, 1 << 52})
	e.IDs(nil)
	e.DeltaIDs([]int64{100, 101, 99, math.MaxInt64})
	return e.B[len("prefix"):]
}

// decodeAll reads what encodeAll wrote, discarding the values.
func decodeAll(d *Decoder) {
	d.Byte()
	d.Bool()
	d.Bool()
	d.Uvarint()
	d.Varint()
	d.Str()
	d.Str()
	d.NilBytes()
	d.NilBytes()
	d.NilBytes()
	d.IDs()
	d.IDs()
	d.DeltaIDs()
}

func TestRoundTrip(t *testing.T) {
	d := NewDecoder(encodeAll(), errBad)
	if v := d.Byte(); v != 7 {
		t.Fatalf("Byte %d", v)
	}
	if !d.Bool() || d.Bool() {
		t.Fatal("Bool")
	}
	if v := d.Uvarint(); v != math.MaxUint64 {
		t.Fatalf("Uvarint %d", v)
	}
	if v := d.Varint(); v != math.MinInt64 {
		t.Fatalf("Varint %d", v)
	}
	if s, s2 := d.Str(), d.Str(); s != "héllo" || s2 != "" {
		t.Fatalf("Str %q %q", s, s2)
	}
	if b, isNil := d.NilBytes(); b != nil || !isNil {
		t.Fatalf("NilBytes(nil) %v %v", b, isNil)
	}
	if b, isNil := d.NilBytes(); b == nil || len(b) != 0 || isNil {
		t.Fatalf("NilBytes(empty) %v %v", b, isNil)
	}
	if b, isNil := d.NilBytes(); string(b) != "xy" || isNil {
		t.Fatalf("NilBytes %q %v", b, isNil)
	}
	if ids := d.IDs(); !reflect.DeepEqual(ids, []int64{3, -1, 1 << 52}) {
		t.Fatalf("IDs %v", ids)
	}
	if ids := d.IDs(); ids != nil {
		t.Fatalf("IDs(nil) %v", ids)
	}
	if ids := d.DeltaIDs(); !reflect.DeepEqual(ids, []int64{100, 101, 99, math.MaxInt64}) {
		t.Fatalf("DeltaIDs %v", ids)
	}
	if err := d.End(); err != nil {
		t.Fatal(err)
	}
}

// Bytes pinned: the formats built on these primitives are on disk and on
// the network.
func TestGolden(t *testing.T) {
	e := Encoder{}
	e.Uvarint(300)
	e.Varint(-3)
	e.Str("ab")
	e.NilBytes(nil)
	e.NilBytes([]byte("c"))
	e.IDs([]int64{1, -1})
	e.DeltaIDs([]int64{5, 4})
	want := []byte{0xac, 0x02, 0x05, 2, 'a', 'b', 0, 2, 'c', 2, 2, 1, 2, 10, 1}
	if !reflect.DeepEqual(e.B, want) {
		t.Fatalf("got % x, want % x", e.B, want)
	}
}

// Every truncation of a valid input fails with the decoder's error, and
// the first error sticks.
func TestTruncated(t *testing.T) {
	b := encodeAll()
	for cut := 0; cut < len(b); cut++ {
		d := NewDecoder(b[:cut], errBad)
		decodeAll(&d)
		if err := d.End(); err != errBad {
			t.Fatalf("cut to %d: %v", cut, err)
		}
	}
	d := NewDecoder(append(b, 0), errBad)
	for d.Err == nil && len(d.B) > 1 {
		d.Byte()
	}
	d.Byte()
	if d.End() != nil {
		t.Fatal("reading every byte is not whole")
	}
	d = NewDecoder([]byte{1, 2}, errBad)
	d.Byte()
	if d.End() != errBad {
		t.Fatal("trailing byte accepted")
	}
}

func TestBounds(t *testing.T) {
	// A count larger than what is left cannot allocate.
	e := Encoder{}
	e.Uvarint(1 << 40)
	d := NewDecoder(e.B, errBad)
	if ids := d.IDs(); ids != nil || d.Err != errBad || d.B != nil {
		t.Fatalf("huge count: %v %v", ids, d.Err)
	}
	// Count checks min bytes per item.
	d = NewDecoder([]byte{3, 0, 0, 0, 0, 0, 0}, errBad)
	if n := d.Count(2); n != 3 || d.Err != nil {
		t.Fatalf("Count(2) of 3 in 6 bytes: %d %v", n, d.Err)
	}
	d = NewDecoder([]byte{3, 0, 0, 0, 0}, errBad)
	if n := d.Count(2); n != 0 || d.Err != errBad {
		t.Fatalf("Count(2) of 3 in 4 bytes: %d %v", n, d.Err)
	}
	// A string longer than what is left.
	d = NewDecoder([]byte{5, 'a'}, errBad)
	if s := d.Str(); s != "" || d.Err != errBad {
		t.Fatalf("long Str: %q %v", s, d.Err)
	}
	// Bool is 0 or 1; Byte takes anything.
	d = NewDecoder([]byte{2}, errBad)
	if d.Bool(); d.Err != errBad {
		t.Fatal("Bool(2) accepted")
	}
	d = NewDecoder([]byte{2}, errBad)
	if d.Byte() != 2 || d.End() != nil {
		t.Fatal("Byte(2)")
	}
	// Overlong varint.
	d = NewDecoder([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, errBad)
	if d.Uvarint(); d.Err != errBad {
		t.Fatal("overflowing uvarint accepted")
	}
	// After an error, reads return zero values; Fail keeps the first error.
	d = NewDecoder([]byte{0x80}, errBad)
	d.Varint()
	d.bad = errors.New("other")
	d.Fail()
	if d.Err != errBad || d.Varint() != 0 || d.Str() != "" {
		t.Fatal("error not sticky")
	}
}

func BenchmarkDecode(b *testing.B) {
	enc := encodeAll()
	b.ReportAllocs()
	for b.Loop() {
		d := NewDecoder(enc, errBad)
		decodeAll(&d)
		if d.End() != nil {
			b.Fatal(d.Err)
		}
	}
}

package edge

import (
	"strings"
	"testing"
)

// Hand-built frames use every length encoding (7-bit, 16-bit, 64-bit)
// correctly; TestSocketBatchesAndLargeContent reads them through gorilla.
func TestFrameHeaders(t *testing.T) {
	sizes := []int{0, 1, 125, 126, 127, 65535, 65536, 200000}
	var stream []byte
	for _, n := range sizes {
		stream = frame(stream, func(b []byte) []byte { return append(b, strings.Repeat("x", n)...) })
	}
	parseFrames(t, stream, sizes)
}

func parseFrames(t *testing.T, b []byte, sizes []int) {
	for i, want := range sizes {
		if len(b) < 2 || b[0] != 0x81 {
			t.Fatalf("frame %d: bad header %x", i, b[:2])
		}
		n, hl := int(b[1]&0x7f), 2
		switch n {
		case 126:
			n, hl = int(b[2])<<8|int(b[3]), 4
		case 127:
			n = 0
			for j := 0; j < 8; j++ {
				n = n<<8 | int(b[2+j])
			}
			hl = 10
		}
		if b[1]&0x80 != 0 {
			t.Fatalf("frame %d is masked", i)
		}
		if n != want {
			t.Fatalf("frame %d: length %d, want %d", i, n, want)
		}
		if n < want || strings.Trim(string(b[hl:hl+n]), "x") != "" {
			t.Fatalf("frame %d: payload corrupted", i)
		}
		b = b[hl+n:]
	}
	if len(b) != 0 {
		t.Fatalf("%d bytes left over", len(b))
	}
}

// clientBytes is a masked client frame.
func clientBytes(fin bool, op byte, payload string) []byte {
	b0 := op
	if fin {
		b0 |= finBit
	}
	mask := [4]byte{1, 2, 3, 4}
	b := []byte{b0, 0x80 | byte(len(payload))}
	b = append(b, mask[:]...)
	for i := range len(payload) {
		b = append(b, payload[i]^mask[i&3])
	}
	return b
}

// The codec alone: a message split over three frames parses, unmasks and
// reassembles; partial input asks for more; bad sequences are protocol
// errors; decodeMessage tells error events from closes.
func TestClientFrameCodec(t *testing.T) {
	stream := append(clientBytes(false, opText, `{"type":"ack",`), clientBytes(false, opContinuation, `"payload":{"upTo"`)...)
	stream = append(stream, clientBytes(true, opContinuation, `:7}}`)...)
	var a assembler
	var got []byte
	for len(stream) > 0 {
		if _, n, perr := parseFrame(stream[:1]); n != 0 || perr != nil {
			t.Fatalf("one byte: n=%d perr=%v", n, perr)
		}
		f, n, perr := parseFrame(stream)
		if perr != nil || n == 0 {
			t.Fatalf("parse: n=%d perr=%v", n, perr)
		}
		stream = stream[n:]
		op, msg, done, perr := a.add(f)
		if perr != nil {
			t.Fatal(perr)
		}
		if done {
			if op != opText || len(stream) != 0 {
				t.Fatalf("done early: op %x, %d bytes left", op, len(stream))
			}
			got = msg
		}
	}
	cf, werr, perr := decodeMessage(opText, got)
	if werr != nil || perr != nil || cf.Ack == nil || cf.Ack.UpTo != 7 {
		t.Fatalf("decoded %+v %v %v from %s", cf, werr, perr, got)
	}

	var b assembler
	if _, _, _, perr := b.add(clientFrame{fin: true, op: opContinuation}); perr == nil || perr.code != closeProtocolError {
		t.Fatalf("continuation without a message: %v", perr)
	}
	if _, _, _, perr := b.add(clientFrame{op: opText}); perr != nil {
		t.Fatal(perr)
	}
	if _, _, _, perr := b.add(clientFrame{fin: true, op: opText}); perr == nil || perr.code != closeProtocolError {
		t.Fatalf("message inside a message: %v", perr)
	}
	if _, _, perr := parseFrame([]byte{0x81, 0x00}); perr == nil || perr.code != closeProtocolError {
		t.Fatalf("unmasked frame: %v", perr)
	}
	if _, werr, perr := decodeMessage(opBinary, []byte(`{}`)); werr == nil || perr != nil {
		t.Fatalf("binary: %v %v", werr, perr)
	}
	if _, werr, perr := decodeMessage(opText, []byte{0xff}); werr != nil || perr == nil || perr.code != closeInvalidData {
		t.Fatalf("invalid UTF-8: %v %v", werr, perr)
	}
	if _, werr, perr := decodeMessage(opText, []byte(`nope`)); werr == nil || perr != nil {
		t.Fatalf("not JSON: %v %v", werr, perr)
	}
}

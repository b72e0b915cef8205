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

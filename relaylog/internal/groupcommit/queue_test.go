package groupcommit

import "testing"

// Batches take everything queued up to the byte budget, at least one
// request each, in order; Close hands back what was still queued.
func TestBatchesAndClose(t *testing.T) {
	q := New(10, func(n int) int { return n })
	for _, n := range []int{4, 4, 4, 20, 1} {
		if !q.Put(n) {
			t.Fatal("put refused")
		}
	}
	var batch []int
	want := [][]int{{4, 4}, {4}, {20}}
	for _, w := range want {
		var ok bool
		var size int
		batch, size, ok = q.Next(batch)
		if !ok || len(batch) != len(w) {
			t.Fatalf("batch %v (size %d, ok %v), want %v", batch, size, ok, w)
		}
		sum := 0
		for i := range w {
			if batch[i] != w[i] {
				t.Fatalf("batch %v, want %v", batch, w)
			}
			sum += w[i]
		}
		if size != sum {
			t.Fatalf("size %d, want %d", size, sum)
		}
	}
	queued, already := q.Close()
	if already || len(queued) != 1 || queued[0] != 1 {
		t.Fatalf("close returned %v %v", queued, already)
	}
	if q.Put(2) {
		t.Fatal("put after close accepted")
	}
	if _, _, ok := q.Next(batch); ok {
		t.Fatal("next after close")
	}
	if _, already := q.Close(); !already {
		t.Fatal("second close not reported")
	}
}

// A waiting committer wakes for the first request.
func TestNextWaits(t *testing.T) {
	q := New(10, func(n int) int { return n })
	got := make(chan []int)
	go func() {
		b, _, _ := q.Next(nil)
		got <- b
	}()
	q.Put(7)
	if b := <-got; len(b) != 1 || b[0] != 7 {
		t.Fatalf("got %v", b)
	}
}

package walstore

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func openSeg(t testing.TB, dir string, segBytes int64, noSync bool) *DB {
	t.Helper()
	db, err := Open(Options{Path: dir, NoSync: noSync, segmentBytes: segBytes})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// segFiles returns the segment files of dir in sequence order.
func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

// waitSegFiles polls the segment files until ok holds of them (at most 10
// s) and returns the last listing.
func waitSegFiles(t testing.TB, dir string, ok func([]string) bool) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	segs := segFiles(t, dir)
	for !ok(segs) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		segs = segFiles(t, dir)
	}
	return segs
}

type recPos struct {
	rec        record
	start, end int
}

// scan parses the records of a segment file up to its seal or end.
func scan(t testing.TB, path string) []recPos {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []recPos
	off := 0
	for {
		rec, n, err := parseRecord(data[off:])
		if err != nil || rec.typ == recSeal {
			return out
		}
		out = append(out, recPos{rec, off, off + n})
		off += n
	}
}

func copyDir(t testing.TB, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, p := range segFiles(t, from) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, filepath.Base(p)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func entry(i uint64, term uint64) *raft.Log {
	return &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("entry-%d-term-%d", i, term))}
}

func checkRange(t testing.TB, s *Store, first, last uint64, term func(uint64) uint64) {
	t.Helper()
	f, err := s.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	if f != first || l != last {
		t.Fatalf("shard %d: first %d last %d, want %d %d", s.id, f, l, first, last)
	}
	for i := first; i <= last && last != 0; i++ {
		var got raft.Log
		if err := s.GetLog(i, &got); err != nil {
			t.Fatalf("shard %d GetLog(%d): %v", s.id, i, err)
		}
		if want := entry(i, term(i)); got.Term != want.Term || !bytes.Equal(got.Data, want.Data) {
			t.Fatalf("shard %d index %d: term %d data %q, want term %d", s.id, i, got.Term, got.Data, want.Term)
		}
	}
	var got raft.Log
	if err := s.GetLog(last+1, &got); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("shard %d GetLog(last+1): %v", s.id, err)
	}
}

func term1(uint64) uint64 { return 1 }

// TestTornTail cuts the last record of the last segment at every byte, as a
// crash in the middle of its write would, either by truncating the file or
// by leaving the preallocated zeros in place: Open must succeed and lose
// exactly that record, and the log must then work and survive a reopen.
func TestTornTail(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	db := openSeg(t, src, 1<<16, false)
	s := db.Shard(2)
	if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 5; i++ {
		if err := s.StoreLog(entry(i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	segs := segFiles(t, src)
	last := segs[len(segs)-1]
	recs := scan(t, last)
	lr := recs[len(recs)-1]
	if lr.rec.typ != recLog || lr.rec.index != 5 {
		t.Fatalf("last record is %+v, want entry 5", lr.rec)
	}
	for _, mode := range []string{"truncate", "zero"} {
		for cut := lr.start; cut < lr.end; cut++ {
			dir := filepath.Join(t.TempDir(), fmt.Sprintf("%s-%d", mode, cut))
			copyDir(t, src, dir)
			p := filepath.Join(dir, filepath.Base(last))
			if mode == "truncate" {
				if err := os.Truncate(p, int64(cut)); err != nil {
					t.Fatal(err)
				}
			} else {
				b, _ := os.ReadFile(p)
				if allZero(b[cut:lr.end]) {
					continue // the record's last bytes are zeros: not torn
				}
				clear(b[cut:lr.end])
				if err := os.WriteFile(p, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			db := openSeg(t, dir, 1<<16, true)
			s := db.Shard(2)
			if l, _ := s.LastIndex(); l != 4 {
				t.Fatalf("%s at byte %d of the record at %d..%d: last index %d, want 4", mode, cut, lr.start, lr.end, l)
			}
			checkRange(t, s, 1, 4, term1)
			if n, err := s.GetUint64([]byte("CurrentTerm")); err != nil || n != 7 {
				t.Fatalf("%s at %d: term %d %v", mode, cut, n, err)
			}
			if err := s.StoreLog(entry(5, 2)); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			db = openSeg(t, dir, 1<<16, true)
			checkRange(t, db.Shard(2), 1, 5, func(i uint64) uint64 { return 1 + i/5 })
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Garbage (not zeros) after the last whole record is a torn write too.
	dir := filepath.Join(t.TempDir(), "garbage")
	copyDir(t, src, dir)
	p := filepath.Join(dir, filepath.Base(last))
	b, _ := os.ReadFile(p)
	copy(b[lr.end:], "\xff\x00\x00\x00garbage")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	db = openSeg(t, dir, 1<<16, true)
	defer db.Close()
	checkRange(t, db.Shard(2), 1, 5, term1)
}

// TestCorruptEarlierSegment: damage in a segment that is not the last one is
// not a torn write and must fail Open, not silently drop entries.
func TestCorruptEarlierSegment(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	db := openSeg(t, src, 1024, true)
	s := db.Shard(0)
	for i := uint64(1); i <= 200; i++ {
		if err := s.StoreLog(entry(i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	segs := segFiles(t, src)
	if len(segs) < 3 {
		t.Fatalf("%d segments, want several", len(segs))
	}
	recs := scan(t, segs[0])
	mid := recs[len(recs)/2]
	for _, how := range []string{"flip payload byte", "zero header"} {
		dir := filepath.Join(t.TempDir(), strings.ReplaceAll(how, " ", "-"))
		copyDir(t, src, dir)
		p := filepath.Join(dir, filepath.Base(segs[0]))
		b, _ := os.ReadFile(p)
		if how == "zero header" {
			clear(b[mid.start : mid.start+hdrLen])
		} else {
			b[mid.end-2] ^= 0x40
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		db, err := Open(Options{Path: dir, NoSync: true, segmentBytes: 1024})
		if err == nil {
			db.Close()
			t.Fatalf("%s in the middle of %s: Open succeeded", how, filepath.Base(segs[0]))
		}
		t.Logf("%s: %v", how, err)
	}
	// Repair cuts the damaged segment there and removes every later one.
	dir := filepath.Join(t.TempDir(), "repair")
	copyDir(t, src, dir)
	p := filepath.Join(dir, filepath.Base(segs[0]))
	b, _ := os.ReadFile(p)
	b[mid.end-2] ^= 0x40
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := Open(Options{Path: dir, NoSync: true, segmentBytes: 1024, Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	if r := db.Repaired; r == nil || r.Segment != p || r.Offset != int64(mid.start) || len(r.Segments) != len(segs)-1 {
		t.Fatalf("Repaired %+v, want %s at %d and %d later segments", r, p, mid.start, len(segs)-1)
	}
	if mid.rec.typ != recLog {
		t.Fatalf("the damaged record is %+v, not a log entry", mid.rec)
	}
	checkRange(t, db.Shard(0), 1, mid.rec.index-1, term1)
	db.Close()
	// Left: the cut segment and the one Open started after it (the next
	// sequence number, holding only the state records).
	if left := segFiles(t, dir); len(left) != 2 || filepath.Base(left[0]) != filepath.Base(segs[0]) || filepath.Base(left[1]) != segName(1) {
		t.Errorf("segments after the repair: %v", left)
	}
	db = openSeg(t, dir, 1024, true)
	checkRange(t, db.Shard(0), 1, mid.rec.index-1, term1)
	db.Close()

	// The untouched copy opens fine.
	db = openSeg(t, src, 1024, true)
	defer db.Close()
	checkRange(t, db.Shard(0), 1, 200, term1)
}

// TestCorruptLastSegment: damage inside the last segment that a crash
// cannot have made (a flipped byte in a record whose every sector was
// written, or a zeroed sector with more than one batch of log after it)
// fails Open with a *CorruptError naming the segment and offset; Open with
// Repair cuts the log there, and the cut log opens and takes writes.
func TestCorruptLastSegment(t *testing.T) {
	const maxBatch = 1024
	src := filepath.Join(t.TempDir(), "src")
	db, err := Open(Options{Path: src, NoSync: true, MaxBatchBytes: maxBatch})
	if err != nil {
		t.Fatal(err)
	}
	s := db.Shard(3)
	if err := s.SetUint64([]byte("CurrentTerm"), 4); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 300; i++ {
		if err := s.StoreLog(entry(i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	segs := segFiles(t, src)
	last := segs[len(segs)-1]
	recs := scan(t, last)
	var mid recPos
	for _, r := range recs[len(recs)/3:] {
		if r.rec.typ == recLog {
			mid = r
			break
		}
	}
	if mid.rec.typ != recLog || recs[len(recs)-1].end-mid.end < 2*maxBatch {
		t.Fatalf("want a log record with more than two batches after it; records %d, mid %+v", len(recs), mid)
	}
	// Each damage with the batch bound Open is given: the default (8 MiB,
	// more than the whole log here), so that only the record's own bytes
	// decide, or maxBatch, so that the written data after the damage does.
	damage := map[string]struct {
		batch int
		do    func(b []byte)
	}{
		"flip payload byte": {0, func(b []byte) { b[mid.end-3] ^= 0x40 }},
		"flip length byte":  {0, func(b []byte) { b[mid.start] ^= 0x01 }},
		// A sector gone to zeros (a lost write of the disk) with more
		// than one batch of acknowledged records after it.
		"zero sector": {maxBatch, func(b []byte) { clear(b[mid.start : mid.start+sectorSize]) }},
	}
	for _, how := range slices.Sorted(maps.Keys(damage)) {
		t.Run(strings.ReplaceAll(how, " ", "-"), func(t *testing.T) {
			dir := t.TempDir()
			copyDir(t, src, dir)
			p := filepath.Join(dir, filepath.Base(last))
			b, _ := os.ReadFile(p)
			damage[how].do(b)
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			maxBatch := damage[how].batch
			_, err := Open(Options{Path: dir, NoSync: true, MaxBatchBytes: maxBatch})
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("Open: %v, want a *CorruptError", err)
			}
			if ce.Segment != p || ce.Offset != int64(mid.start) || ce.After <= 0 {
				t.Fatalf("CorruptError %+v, want segment %s offset %d", ce, p, mid.start)
			}
			t.Logf("%s: %v", how, err)

			db, err := Open(Options{Path: dir, NoSync: true, MaxBatchBytes: maxBatch, Repair: true})
			if err != nil {
				t.Fatal(err)
			}
			r := db.Repaired
			if r == nil || r.Segment != p || r.Offset != int64(mid.start) || r.Bytes != ce.After || len(r.Segments) != 0 {
				t.Fatalf("Repaired %+v", r)
			}
			keep := mid.rec.index - 1
			checkRange(t, db.Shard(3), 1, keep, term1)
			if v, err := db.Shard(3).GetUint64([]byte("CurrentTerm")); err != nil || v != 4 {
				t.Fatalf("term %d %v", v, err)
			}
			if err := db.Shard(3).StoreLog(entry(keep+1, 2)); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			// The cut log opens without Repair, with the new entry.
			db = openSeg(t, dir, 0, true)
			defer db.Close()
			if db.Repaired != nil {
				t.Fatalf("a clean Open repaired %+v", db.Repaired)
			}
			checkRange(t, db.Shard(3), 1, keep+1, func(i uint64) uint64 { return 1 + i/(keep+1) })
		})
	}
	// A zeroed sector within the last batch's reach is taken for a torn
	// write, as etcd does: the records from it on are dropped silently.
	t.Run("zero sector in the last batch", func(t *testing.T) {
		dir := t.TempDir()
		copyDir(t, src, dir)
		p := filepath.Join(dir, filepath.Base(last))
		b, _ := os.ReadFile(p)
		lr := recs[len(recs)-2]
		clear(b[lr.start:lr.end])
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		db, err := Open(Options{Path: dir, NoSync: true, MaxBatchBytes: maxBatch})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		checkRange(t, db.Shard(3), 1, lr.rec.index-1, term1)
	})
}

// TestSegmentRotationAndDeletion writes many small segments from three
// shards, compacts two of them, and checks that dead segments are removed
// from disk, including segments in the middle while an idle shard pins the
// first one, and that after reopening no deleted entry comes back and the
// stable values (written only into the first segments) survive.
func TestSegmentRotationAndDeletion(t *testing.T) {
	dir := t.TempDir()
	db := openSeg(t, dir, 8192, true)
	a, b, idle := db.Shard(1), db.Shard(2), db.Shard(3)
	if err := idle.StoreLogs([]*raft.Log{entry(1, 1), entry(2, 1)}); err != nil {
		t.Fatal(err)
	}
	if err := a.SetUint64([]byte("CurrentTerm"), 11); err != nil {
		t.Fatal(err)
	}
	if err := b.Set([]byte("LastVoteCand"), []byte("n2")); err != nil {
		t.Fatal(err)
	}
	const n = 2000
	for i := uint64(1); i <= n; i += 10 {
		for _, s := range []*Store{a, b} {
			var logs []*raft.Log
			for j := i; j < i+10; j++ {
				logs = append(logs, entry(j, 1))
			}
			if err := s.StoreLogs(logs); err != nil {
				t.Fatal(err)
			}
		}
	}
	before := segFiles(t, dir)
	if len(before) < 10 {
		t.Fatalf("only %d segments after %d entries", len(before), 2*n)
	}
	if err := a.DeleteRange(1, n-10); err != nil {
		t.Fatal(err)
	}
	if got := len(segFiles(t, dir)); got != len(before) {
		t.Fatalf("segments went from %d to %d while shard 2 still holds them", len(before), got)
	}
	if err := b.DeleteRange(0, n-10); err != nil {
		t.Fatal(err)
	}
	// Left: the first segment (shard 3's two entries), the one or two
	// segments with the last 10 entries of each shard, and the active one.
	// Dead segments are removed in the background, off the commit path.
	after := waitSegFiles(t, dir, func(segs []string) bool { return len(segs) <= 4 })
	if len(after) > 4 || after[0] != before[0] {
		t.Fatalf("segments before %d, after %d: %v", len(before), len(after), after)
	}
	t.Logf("%d segments before compaction, %d after", len(before), len(after))
	check := func(db *DB) {
		t.Helper()
		checkRange(t, db.Shard(1), n-9, n, term1)
		checkRange(t, db.Shard(2), n-9, n, term1)
		checkRange(t, db.Shard(3), 1, 2, term1)
		if v, err := db.Shard(1).GetUint64([]byte("CurrentTerm")); err != nil || v != 11 {
			t.Fatalf("CurrentTerm %d %v", v, err)
		}
		if v, err := db.Shard(2).Get([]byte("LastVoteCand")); err != nil || string(v) != "n2" {
			t.Fatalf("LastVoteCand %q %v", v, err)
		}
	}
	check(db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openSeg(t, dir, 8192, true)
	check(db)
	// Once the idle shard is compacted too, only live segments remain.
	if err := db.Shard(3).DeleteRange(1, 2); err != nil {
		t.Fatal(err)
	}
	if segs := waitSegFiles(t, dir, func(segs []string) bool { return !slices.Contains(segs, before[0]) }); slices.Contains(segs, before[0]) {
		t.Fatalf("first segment not deleted: %v", segs)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openSeg(t, dir, 8192, true)
	defer db.Close()
	checkRange(t, db.Shard(3), 0, 0, term1)
	checkRange(t, db.Shard(1), n-9, n, term1)
	if v, err := db.Shard(2).Get([]byte("LastVoteCand")); err != nil || string(v) != "n2" {
		t.Fatalf("LastVoteCand %q %v", v, err)
	}
}

// TestOverwriteSuffixAfterLeaderChange: a follower's conflicting suffix is
// deleted and rewritten with entries of a newer term (raft's appendEntries
// does DeleteRange then StoreLogs), also across segments and a reopen.
func TestOverwriteSuffixAfterLeaderChange(t *testing.T) {
	dir := t.TempDir()
	db := openSeg(t, dir, 2048, true)
	s := db.Shard(4)
	for i := uint64(1); i <= 60; i++ {
		if err := s.StoreLog(entry(i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	// New leader in term 2 disagrees from index 41 on and has only 45.
	if err := s.DeleteRange(41, 60); err != nil {
		t.Fatal(err)
	}
	var logs []*raft.Log
	for i := uint64(41); i <= 45; i++ {
		logs = append(logs, entry(i, 2))
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	termOf := func(i uint64) uint64 {
		if i > 40 {
			return 2
		}
		return 1
	}
	checkRange(t, s, 1, 45, termOf)
	// A StoreLogs over existing indexes without DeleteRange replaces them
	// (raft-boltdb semantics) and leaves the rest.
	if err := s.StoreLogs([]*raft.Log{entry(44, 3)}); err != nil {
		t.Fatal(err)
	}
	termOf2 := func(i uint64) uint64 {
		if i == 44 {
			return 3
		}
		return termOf(i)
	}
	checkRange(t, s, 1, 45, termOf2)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openSeg(t, dir, 2048, true)
	defer db.Close()
	checkRange(t, db.Shard(4), 1, 45, termOf2)
}

// TestReadsDuringCompaction reads entries (from the files, past the cache)
// while another goroutine appends and compacts with tiny segments, so that
// segment files are deleted under the readers (run with -race).
func TestReadsDuringCompaction(t *testing.T) {
	db := openSeg(t, t.TempDir(), 4096, true)
	defer db.Close()
	s := db.Shard(0)
	const n = 3000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				first, _ := s.FirstIndex()
				last, _ := s.LastIndex()
				for i := first; i <= last && i != 0; i += 7 {
					var got raft.Log
					err := s.GetLog(i, &got)
					if errors.Is(err, raft.ErrLogNotFound) {
						continue // compacted meanwhile
					}
					if err != nil || got.Index != i || !bytes.Equal(got.Data, entry(i, 1).Data) {
						t.Errorf("GetLog(%d): %+v %v", i, got, err)
						return
					}
				}
			}
		}()
	}
	for i := uint64(1); i <= n; i++ {
		if err := s.StoreLog(entry(i, 1)); err != nil {
			t.Fatal(err)
		}
		if i%100 == 0 && i > 1000 {
			if err := s.DeleteRange(0, i-1000); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	wg.Wait()
	checkRange(t, s, n-999, n, term1)
	if segs := len(segFiles(t, db.dir)); segs > 40 {
		t.Fatalf("%d segments left", segs)
	}
}

// The next segment is prepared in the background and renamed into place
// at rotation; a spare left by a crash is neither replayed nor kept.
func TestSpareSegment(t *testing.T) {
	dir := t.TempDir()
	spare := filepath.Join(dir, spareName)
	// A crash left a spare full of junk: Open must not read it.
	if err := os.WriteFile(spare, []byte("not a segment at all"), 0o600); err != nil {
		t.Fatal(err)
	}
	db := openSeg(t, dir, 8192, false)
	s := db.Shard(1)
	waitSpare := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if fi, err := os.Stat(spare); err == nil && fi.Size() == 8192 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("no spare segment prepared")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitSpare()
	before := len(segFiles(t, dir))
	for i := uint64(1); i <= 1000; i++ {
		if err := s.StoreLogs([]*raft.Log{entry(i, 1)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(segFiles(t, dir)); got <= before {
		t.Fatalf("no rotation: %d segments, %d before", got, before)
	}
	waitSpare()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(spare); !os.IsNotExist(err) {
		t.Fatalf("spare left after Close: %v", err)
	}
	db = openSeg(t, dir, 8192, false)
	defer db.Close()
	checkRange(t, db.Shard(1), 1, 1000, term1)
}

package walstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/edgenode/edgenode/relaylog/logcodec"
)

// cacheSize is the number of most recently written entries per shard whose
// encoding GetLog finds in memory (raft reads just-written entries again to
// replicate them and to apply them).
const cacheSize = 512

// maxKeySize bounds stable store keys (as bolt's MaxKeySize for sharedlog).
const maxKeySize = 32768

// loc is where a log entry's record is.
type loc struct {
	seg *segment
	off int64  // record start in seg
	n   uint32 // record size, header included
}

// run is a maximal range of consecutive live indexes, start..start+len-1.
// A raft log is one run; holes only come from DeleteRange in the middle or
// from storing an index beyond LastIndex+1.
type run struct {
	start uint64
	locs  []loc
}

func (r *run) end() uint64 { return r.start + uint64(len(r.locs)) }

type cacheEnt struct {
	index uint64
	data  []byte // the raft.Log encoding; never modified
}

// Store is one shard's raft.LogStore and raft.StableStore inside a DB. Writes
// block until written and fdatasynced with whatever the other shards wrote
// meanwhile (see the package comment); reads are served from memory (index,
// stable map, recent entries) and pread of the segment files.
type Store struct {
	db *DB
	id int

	mu     sync.RWMutex
	runs   []run // sorted by start, disjoint, none empty
	stable map[string][]byte
	cache  [cacheSize]cacheEnt
}

var (
	_ raft.LogStore    = (*Store)(nil)
	_ raft.StableStore = (*Store)(nil)
)

// ID returns the shard id given to DB.Shard.
func (s *Store) ID() int { return s.id }

// find returns the run containing idx, or the index of the last run starting
// before idx (-1 if none) and false.
func (s *Store) find(idx uint64) (int, bool) {
	i := sort.Search(len(s.runs), func(i int) bool { return s.runs[i].start > idx }) - 1
	if i >= 0 && idx < s.runs[i].end() {
		return i, true
	}
	return i, false
}

// set points idx at l (s.mu held for writing) and keeps the segments' live
// counts. It reports whether an older entry at idx was replaced.
func (s *Store) set(idx uint64, l loc) bool {
	l.seg.live++
	i, ok := s.find(idx)
	if ok {
		r := &s.runs[i]
		old := r.locs[idx-r.start]
		old.seg.live--
		r.locs[idx-r.start] = l
		return true
	}
	if i >= 0 && s.runs[i].end() == idx { // append: the common case
		r := &s.runs[i]
		r.locs = append(r.locs, l)
		if i+1 < len(s.runs) && s.runs[i+1].start == idx+1 {
			r.locs = append(r.locs, s.runs[i+1].locs...)
			s.runs = slices.Delete(s.runs, i+1, i+2)
		}
		return false
	}
	if i+1 < len(s.runs) && s.runs[i+1].start == idx+1 {
		r := &s.runs[i+1]
		r.locs = slices.Insert(r.locs, 0, l)
		r.start = idx
		return false
	}
	s.runs = slices.Insert(s.runs, i+1, run{start: idx, locs: []loc{l}})
	return false
}

// deleteRange drops min..max from the index (s.mu held for writing).
func (s *Store) deleteRange(min, max uint64) {
	if min > max || len(s.runs) == 0 {
		return
	}
	var out []run
	changed := false
	for _, r := range s.runs {
		rs, re := r.start, r.end()-1
		if re < min || rs > max {
			out = append(out, r)
			continue
		}
		changed = true
		lo, hi := maxU(rs, min), minU(re, max)
		for _, l := range r.locs[lo-rs : hi-rs+1] {
			l.seg.live--
		}
		if rs < lo {
			out = append(out, run{start: rs, locs: r.locs[: lo-rs : lo-rs]})
		}
		if hi < re {
			out = append(out, run{start: hi + 1, locs: r.locs[hi+1-rs:]})
		}
	}
	if changed {
		s.runs = out
	}
}

func maxU(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

func minU(a, b uint64) uint64 {
	if a < b {
		return a
	}
	return b
}

// FirstIndex returns the lowest stored log index, 0 if there is none.
func (s *Store) FirstIndex() (uint64, error) {
	if s.db.isClosed.Load() {
		return 0, ErrClosed
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.runs) == 0 {
		return 0, nil
	}
	return s.runs[0].start, nil
}

// LastIndex returns the highest stored log index, 0 if there is none.
func (s *Store) LastIndex() (uint64, error) {
	if s.db.isClosed.Load() {
		return 0, ErrClosed
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.runs) == 0 {
		return 0, nil
	}
	return s.runs[len(s.runs)-1].end() - 1, nil
}

var readBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// GetLog reads the entry at index into log; raft.ErrLogNotFound if absent.
func (s *Store) GetLog(index uint64, log *raft.Log) error {
	if s.db.isClosed.Load() {
		return ErrClosed
	}
	s.mu.RLock()
	i, ok := s.find(index)
	if !ok {
		s.mu.RUnlock()
		return raft.ErrLogNotFound
	}
	l := s.runs[i].locs[index-s.runs[i].start]
	if c := s.cache[index%cacheSize]; c.index == index && c.data != nil {
		s.mu.RUnlock()
		if err := logcodec.DecodeLog(index, c.data, log); err != nil {
			return fmt.Errorf("walstore: shard %d index %d: %w", s.id, index, err)
		}
		return nil
	}
	// Taken before the index lock is released: the segment cannot be
	// deleted (nor the DB closed) until the read is done.
	s.db.segMu.RLock()
	s.mu.RUnlock()
	defer s.db.segMu.RUnlock()
	if s.db.isClosed.Load() {
		return ErrClosed
	}
	bp := readBufPool.Get().(*[]byte)
	defer readBufPool.Put(bp)
	buf := slices.Grow((*bp)[:0], int(l.n))[:l.n]
	*bp = buf
	if _, err := l.seg.f.ReadAt(buf, l.off); err != nil {
		return fmt.Errorf("walstore: read shard %d index %d from %s: %w", s.id, index, l.seg.path, err)
	}
	rec, _, err := parseRecord(buf)
	if err != nil || rec.typ != recLog || rec.shard != s.id || rec.index != index {
		return fmt.Errorf("walstore: corrupt record for shard %d index %d in %s at offset %d", s.id, index, l.seg.path, l.off)
	}
	if err := logcodec.DecodeLog(index, rec.payload, log); err != nil {
		return fmt.Errorf("walstore: shard %d index %d: %w", s.id, index, err)
	}
	return nil
}

// StoreLog stores one entry; see StoreLogs.
func (s *Store) StoreLog(log *raft.Log) error {
	return s.StoreLogs([]*raft.Log{log})
}

// StoreLogs stores the entries, returning once they are written and
// fdatasynced together with whatever other shards wrote meanwhile. Storing an
// index that exists replaces that entry (as raft-boltdb does; raft itself
// calls DeleteRange on a conflicting suffix before storing the new one).
func (s *Store) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	r := getRequest(s, opLogs)
	n := 0
	for _, l := range logs {
		n += maxRecordOverhead + logcodec.MaxSize(l)
	}
	// A fresh buffer: after the commit the shard's cache points into it.
	buf := make([]byte, 0, n)
	for _, l := range logs {
		var st int
		buf, st = beginRecord(buf, recLog, s.id)
		buf = binary.AppendUvarint(buf, l.Index)
		p := len(buf)
		buf = logcodec.AppendLog(buf, l)
		finishRecord(buf, st)
		r.ents = append(r.ents, entRef{index: l.Index, start: st, end: len(buf), payloadStart: p})
	}
	r.buf = buf
	return s.db.do(r)
}

// DeleteRange deletes the entries with min <= index <= max.
func (s *Store) DeleteRange(min, max uint64) error {
	if min > max {
		return nil
	}
	r := getRequest(s, opDelete)
	r.min, r.max = min, max
	r.buf = appendDeleteRecord(r.buf[:0], s.id, min, max)
	return s.db.do(r)
}

// Set stores key = val durably.
func (s *Store) Set(key []byte, val []byte) error {
	if len(key) == 0 {
		return errors.New("walstore: empty key")
	}
	if len(key) > maxKeySize {
		return errors.New("walstore: key too large")
	}
	r := getRequest(s, opSet)
	r.buf = appendSetRecord(r.buf[:0], s.id, key, val)
	end := len(r.buf)
	r.val = r.buf[end-len(val) : end]
	r.key = r.buf[end-len(val)-len(key) : end-len(val)]
	return s.db.do(r)
}

// Get returns a copy of the value of key, or ErrKeyNotFound (message "not
// found", which raft requires).
func (s *Store) Get(key []byte) ([]byte, error) {
	if s.db.isClosed.Load() {
		return nil, ErrClosed
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.stable[string(key)]
	if !ok {
		return nil, ErrKeyNotFound
	}
	return append([]byte{}, v...), nil
}

// SetUint64 stores val as 8 big-endian bytes (as raft-boltdb does).
func (s *Store) SetUint64(key []byte, val uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], val)
	return s.Set(key, b[:])
}

// GetUint64 returns the value stored by SetUint64, or ErrKeyNotFound.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("walstore: value of %q is %d bytes, not a uint64", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

package walstore

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgenode/edgenode/datadir"
	"github.com/edgenode/edgenode/relaylog/internal/groupcommit"
)

// ErrClosed is returned by every call on a closed DB, and by writes that were
// still queued when Close was called.
var ErrClosed = errors.New("walstore: closed")

// ErrKeyNotFound is returned by Get and GetUint64 for a key never Set. Its
// message is exactly "not found" because hashicorp/raft (v1.8.0 api.go
// HasExistingState and NewRaft, raft.go requestVote) compares
// err.Error() == "not found" instead of using errors.Is.
var ErrKeyNotFound = errors.New("not found")

// DefaultMaxBatchBytes bounds the bytes of one group commit (one write and
// one fdatasync) when Options.MaxBatchBytes is 0.
const DefaultMaxBatchBytes = 8 << 20

// DefaultSegmentBytes is the preallocated size of a segment file. A batch
// that does not fit in the rest of the active segment goes to a new one.
const DefaultSegmentBytes = 64 << 20

// Options configures Open.
type Options struct {
	// Path of the log directory; required. Created if missing. It holds
	// the segment files (<seq>.wal) and a LOCK file.
	Path string
	// Logger for write errors and recovery notes; nil discards.
	Logger *slog.Logger
	// NoSync skips fdatasync. Tests and benchmarks only: a crash can then
	// lose acknowledged raft entries and votes.
	NoSync bool
	// MaxBatchBytes bounds the encoded bytes of one group commit; 0 means
	// DefaultMaxBatchBytes. A single request larger than this is still
	// written, in a commit of its own.
	MaxBatchBytes int
	// Repair makes Open cut the log at a corrupt record instead of failing
	// with a *CorruptError: the segment is truncated there and sealed, and
	// every later segment is removed. What it drops is logged (Warn) and
	// kept in DB.Repaired. Raft entries and votes in the dropped part are
	// gone from this node; see edgenode repair-wal.
	Repair bool
	// Pace, when positive, lets batches grow under load: after a commit
	// that held two or more requests, the committer waits until Pace after
	// that commit began before it takes the next batch. A commit of a
	// single request (a quiet log) is followed by no wait, so at low load
	// nothing is delayed; the wait ends early when the log closes.
	Pace time.Duration

	// segmentBytes overrides DefaultSegmentBytes (tests).
	segmentBytes int64
}

// Stats are cumulative counters since Open. Entries/Commits is the number of
// raft log entries per fdatasync.
type Stats struct {
	Commits   uint64 // group commits (one write(2) and one fdatasync each)
	Entries   uint64 // raft log entries written
	Requests  uint64 // StoreLogs/StoreLog/DeleteRange/Set/SetUint64 calls committed
	SyncNanos uint64 // total time in the write and the fdatasync of commits
}

// segment is one file of the log. Its file stays open (for GetLog) until the
// segment is deleted or the DB is closed.
type segment struct {
	seq  uint64
	path string
	f    *os.File
	// live counts the index entries of all shards that point into this
	// segment. Only the committer (or Open, before it starts) touches it.
	live int64
}

// DB is the write-ahead log shared by the stores of all shards of a node, with
// the goroutine that commits their writes.
type DB struct {
	dir      string
	log      *slog.Logger
	maxBatch int
	segBytes int64
	noSync   bool
	lockFile *os.File

	queue    *groupcommit.Queue[*request]
	isClosed atomic.Bool   // closed, for readers that do not take mu
	stopped  chan struct{} // closed when the committer has exited

	shards sync.Map // int -> *Store

	// segMu guards the lifetime of segment files: GetLog holds it shared
	// while it reads a file; deleting a segment or Close takes it
	// exclusively before closing files. segs is written only by the
	// committer (and Open), under segMu.
	segMu sync.RWMutex
	segs  map[uint64]*segment

	// Committer state (Open before the committer starts).
	active  *segment
	off     int64 // write offset in active
	hasData bool  // active holds a batch beyond its rotation records
	nextSeq uint64
	wbuf    []byte
	failed  error // sticky: after a failed write or sync nothing more is written
	dirty   bool  // index entries were dropped: some segment may be dead

	repair   bool
	Repaired *Repaired // what Open with Options.Repair cut; nil if nothing

	commits, entries, requests, syncNanos atomic.Uint64

	// Housekeeping off the commit path (see housekeep): the committer
	// hands dead segments to it and takes the next segment file from it,
	// created and preallocated ahead of time.
	dead      chan *segment
	spare     chan spareFile
	wantSpare chan struct{}
	hkDone    chan struct{} // closed when housekeep has exited; nil until it runs
	zeros     []byte        // housekeep's buffer for zeroFill

	// testHookBeforeCommit, when set (only by tests, before the committer
	// starts), runs inside the committer after a batch is assembled and
	// before it is written.
	testHookBeforeCommit func()

	pace    time.Duration // Options.Pace
	closing chan struct{} // closed by Close: ends the committer's pace wait
}

func segName(seq uint64) string { return fmt.Sprintf("%016x.wal", seq) }

// spareName is the next segment's file while it is prepared; recovery
// ignores (and Open removes) it, and a rotation renames it into place.
const spareName = "next.wal.tmp"

type spareFile struct {
	f   *os.File
	err error
}

// Open opens (or creates) the log directory, recovers every shard's log and
// stable store from its segments, starts a new segment and starts the
// committer.
func Open(opts Options) (*DB, error) {
	return open(opts, nil)
}

func open(opts Options, hook func()) (*DB, error) {
	if opts.Path == "" {
		return nil, errors.New("walstore: Options.Path is required")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	maxBatch := opts.MaxBatchBytes
	if maxBatch <= 0 {
		maxBatch = DefaultMaxBatchBytes
	}
	segBytes := opts.segmentBytes
	if segBytes <= 0 {
		segBytes = DefaultSegmentBytes
	}
	if err := os.MkdirAll(opts.Path, 0o700); err != nil {
		return nil, fmt.Errorf("walstore: %w", err)
	}
	lf, err := lockDir(filepath.Join(opts.Path, "LOCK"))
	if err != nil {
		return nil, fmt.Errorf("walstore: lock %s: %w", opts.Path, err)
	}
	db := &DB{
		dir:                  opts.Path,
		log:                  logger,
		maxBatch:             maxBatch,
		segBytes:             segBytes,
		noSync:               opts.NoSync,
		lockFile:             lf,
		stopped:              make(chan struct{}),
		queue:                groupcommit.New(maxBatch, func(r *request) int { return len(r.buf) }),
		segs:                 make(map[uint64]*segment),
		testHookBeforeCommit: hook,
		dead:                 make(chan *segment, 64),
		spare:                make(chan spareFile, 1),
		wantSpare:            make(chan struct{}, 1),
		repair:               opts.Repair,
		pace:                 opts.Pace,
		closing:              make(chan struct{}),
	}
	// A spare left by a crash is just preallocated zeros.
	if err := os.Remove(filepath.Join(opts.Path, spareName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		lf.Close()
		return nil, fmt.Errorf("walstore: %w", err)
	}
	if err := db.recover(); err != nil {
		db.closeFiles()
		return nil, err
	}
	// Every Open writes into a fresh segment that starts with the full
	// state records (see rotate), so the recovered segments are all sealed
	// and never written again.
	if err := db.rotate(); err != nil {
		db.closeFiles()
		return nil, fmt.Errorf("walstore: start segment: %w", err)
	}
	db.hkDone = make(chan struct{})
	go db.housekeep()
	db.wantSpare <- struct{}{}
	db.compact()
	go db.run()
	return db, nil
}

// zeroFill writes size bytes of zeros to f, a megabyte at a time, each
// followed by fdatasync (unless NoSync), so that the writes reach the disk
// in small pieces instead of one burst of dirty pages beside the
// committer's.
func (db *DB) zeroFill(f *os.File, size int64) error {
	if db.zeros == nil {
		db.zeros = make([]byte, 1<<20)
	}
	for off := int64(0); off < size; off += int64(len(db.zeros)) {
		n := min(int64(len(db.zeros)), size-off)
		if _, err := f.WriteAt(db.zeros[:n], off); err != nil {
			return err
		}
		if !db.noSync {
			if err := fdatasync(f); err != nil {
				return err
			}
		}
	}
	return nil
}

// housekeep removes dead segments and prepares the next segment file, so
// that the committer, which every shard's writes wait for, neither unlinks
// a 64 MiB file (25-45 ms measured on this project's VM disk) nor creates,
// preallocates and fsyncs one when it rotates (like etcd's WAL file
// pipeline). It exits when dead is closed, after the committer stopped.
func (db *DB) housekeep() {
	defer close(db.hkDone)
	for {
		select {
		case sg, ok := <-db.dead:
			if !ok {
				return
			}
			db.remove(sg)
		case <-db.wantSpare:
			f, err := db.createFile(filepath.Join(db.dir, spareName), true)
			db.spare <- spareFile{f, err}
		}
	}
}

func (db *DB) remove(sg *segment) {
	if err := sg.f.Close(); err != nil {
		db.log.Warn("walstore: close dead segment", "segment", sg.path, "err", err)
	}
	// No directory sync needed: a dead segment that reappears after a
	// crash holds only records that later segments supersede.
	if err := os.Remove(sg.path); err != nil {
		db.log.Warn("walstore: remove dead segment", "segment", sg.path, "err", err)
	}
}

// createFile creates path with the segment size and syncs it, so that
// appends inside it never change the file's size and each commit's
// fdatasync need not write the inode. With zero (the housekeeper's
// spares), every block is written with zeros first, in 1 MiB writes each
// followed by fdatasync, like PostgreSQL's wal_init_zero: the commits then
// overwrite blocks that exist on disk, with no extent to convert from
// "unwritten" to "written" (a journalled metadata change, which the
// committer's fdatasync otherwise waits for) and no large fallocate
// transaction in the journal beside them. Measured on this project's VM
// (scripts/fsyncbench, a single writer of 2 KiB commits, alternating
// runs): p50 188-194 µs, p99 446-463 µs, max 47-51 ms into fallocated
// segments; p50 140-147 µs, p99 266-334 µs, max 23-27 ms into zero-filled
// ones. Without zero (Open's first segment, or a rotation that found no
// spare ready), the file is only preallocated: fast to create, since a
// writer waits for it.
func (db *DB) createFile(path string, zero bool) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	fill := preallocate
	if zero {
		fill = db.zeroFill
	}
	if err := fill(f, db.segBytes); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	if !db.noSync {
		// fsync, not fdatasync: the new size and allocation once.
		if err := f.Sync(); err != nil {
			f.Close()
			os.Remove(path)
			return nil, err
		}
	}
	return f, nil
}

// recover replays all segments in sequence order.
func (db *DB) recover() error {
	ents, err := os.ReadDir(db.dir)
	if err != nil {
		return fmt.Errorf("walstore: %w", err)
	}
	var seqs []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".wal")
		if !ok || e.IsDir() {
			continue
		}
		seq, err := strconv.ParseUint(name, 16, 64)
		if err != nil || segName(seq) != e.Name() {
			continue
		}
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	for i, seq := range seqs {
		if err := db.replay(seq, i == len(seqs)-1); err != nil {
			return err
		}
		db.nextSeq = seq + 1
		if db.Repaired != nil {
			// Cut here: the later segments follow the corrupt record.
			for _, later := range seqs[i+1:] {
				path := filepath.Join(db.dir, segName(later))
				if info, err := os.Stat(path); err == nil {
					db.Repaired.Bytes += info.Size()
				}
				if err := os.Remove(path); err != nil {
					return fmt.Errorf("walstore: repair: %w", err)
				}
				db.Repaired.Segments = append(db.Repaired.Segments, path)
			}
			if !db.noSync {
				if err := syncDir(db.dir); err != nil {
					return fmt.Errorf("walstore: repair: %w", err)
				}
			}
			db.log.Warn("walstore: repaired the log: dropped everything from the corrupt record on",
				"segment", db.Repaired.Segment, "offset", db.Repaired.Offset, "reason", db.Repaired.Reason,
				"bytes_dropped", db.Repaired.Bytes, "later_segments_removed", len(db.Repaired.Segments))
			return nil
		}
	}
	return nil
}

// CorruptError is Open's error for a record that cannot be read and cannot
// be the torn end of a write cut short by a crash (see replay): a later
// part of the log may hold acknowledged entries and votes, so the log is
// not opened. Open with Options.Repair cuts the log there instead.
type CorruptError struct {
	Segment string // path of the segment file
	Offset  int64  // of the corrupt record in it
	Reason  string // what is wrong with it
	After   int64  // bytes that follow it in the segment (up to its last non-zero byte)
	Later   int    // segments after this one
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("walstore: corrupt record in %s at offset %d (%s), followed by %d bytes of log in that segment and %d later segments: "+
		"this is not a write cut short by a crash, and what follows may hold acknowledged entries, so the log is not opened",
		e.Segment, e.Offset, e.Reason, e.After, e.Later)
}

// Repaired is what Open with Options.Repair cut from the log.
type Repaired struct {
	Segment  string   // the segment cut at Offset
	Offset   int64    //
	Reason   string   // what was wrong with the record at Offset
	Bytes    int64    // dropped: the rest of that segment and the later segments
	Segments []string // later segments removed
}

// replay applies the records of one segment. Every segment but the last must
// end with a seal record; anything unreadable before it is corruption. In the
// last segment an unreadable record is the end of the log only if it can be
// a write cut short by a crash (see torn): the segment is truncated there and
// sealed. Anything else is a *CorruptError, unless Options.Repair.
func (db *DB) replay(seq uint64, last bool) error {
	path := filepath.Join(db.dir, segName(seq))
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("walstore: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("walstore: %w", err)
	}
	sg := &segment{seq: seq, path: path, f: f}
	db.segs[seq] = sg
	off := 0
	for {
		rec, n, err := parseRecord(data[off:])
		if err != nil {
			end := off + nonZeroLen(data[off:])
			reason, isTorn := "", false
			if last {
				reason, isTorn = torn(data, off, end, db.maxBatch)
			} else {
				reason = "unreadable record before the seal of a segment that is not the last"
			}
			switch {
			case isTorn:
				if end > off {
					db.log.Warn("walstore: dropping the torn tail of the last segment (a write cut short by a crash, never acknowledged)",
						"segment", path, "offset", off, "bytes", end-off, "why", reason)
				}
			case db.repair:
				db.Repaired = &Repaired{Segment: path, Offset: int64(off), Reason: reason, Bytes: int64(end - off)}
			default:
				return &CorruptError{Segment: path, Offset: int64(off), Reason: reason, After: int64(end - off), Later: db.laterSegments(seq)}
			}
			// Cut the tail (zeros, a partial write, or what repair drops)
			// and seal here, so that nothing after this point can ever be
			// read as records.
			if err := f.Truncate(int64(off)); err != nil {
				return fmt.Errorf("walstore: truncate %s: %w", path, err)
			}
			if _, err := f.WriteAt(appendSealRecord(nil), int64(off)); err != nil {
				return fmt.Errorf("walstore: seal %s: %w", path, err)
			}
			if !db.noSync {
				if err := f.Sync(); err != nil {
					return fmt.Errorf("walstore: sync %s: %w", path, err)
				}
			}
			return nil
		}
		if rec.typ == recSeal {
			return nil
		}
		db.applyRecord(&rec, sg, int64(off), n)
		off += n
	}
}

// laterSegments counts the segment files after seq.
func (db *DB) laterSegments(seq uint64) int {
	ents, _ := os.ReadDir(db.dir)
	n := 0
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".wal")
		if !ok {
			continue
		}
		if v, err := strconv.ParseUint(name, 16, 64); err == nil && segName(v) == e.Name() && v > seq {
			n++
		}
	}
	return n
}

// applyRecord applies a replayed record to the in-memory state.
func (db *DB) applyRecord(rec *record, sg *segment, off int64, n int) {
	s := db.Shard(rec.shard)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch rec.typ {
	case recLog:
		s.set(rec.index, loc{seg: sg, off: off, n: uint32(n)})
	case recDelete:
		s.deleteRange(rec.min, rec.max)
	case recSet:
		s.stable[string(rec.key)] = append([]byte{}, rec.payload...)
	}
}

// Shard returns the store of shard id, creating it on first use. Safe for
// concurrent use; the same id always yields the same *Store.
func (db *DB) Shard(id int) *Store {
	if s, ok := db.shards.Load(id); ok {
		return s.(*Store)
	}
	s, _ := db.shards.LoadOrStore(id, &Store{db: db, id: id, stable: make(map[string][]byte)})
	return s.(*Store)
}

// Close stops the committer and closes the files. Writes still queued fail
// with ErrClosed; a batch already being committed completes first and its
// callers get its result. Later calls on the DB or its stores return
// ErrClosed. Close is idempotent.
func (db *DB) Close() error {
	queued, already := db.queue.Close()
	if already {
		<-db.stopped
		return nil
	}
	close(db.closing)
	db.isClosed.Store(true)
	for _, r := range queued {
		r.done <- ErrClosed
	}
	<-db.stopped
	return db.closeFiles()
}

func (db *DB) closeFiles() error {
	db.isClosed.Store(true)
	var errs []error
	if db.hkDone != nil {
		close(db.dead)
		<-db.hkDone
		select {
		case sp := <-db.spare:
			if sp.err == nil {
				errs = append(errs, sp.f.Close(), os.Remove(filepath.Join(db.dir, spareName)))
			}
		default:
		}
	}
	db.segMu.Lock()
	for _, sg := range db.segs {
		errs = append(errs, sg.f.Close())
	}
	db.segs = nil
	db.segMu.Unlock()
	errs = append(errs, db.lockFile.Close())
	return errors.Join(errs...)
}

// Stats returns the cumulative counters.
func (db *DB) Stats() Stats {
	return Stats{
		Commits:   db.commits.Load(),
		Entries:   db.entries.Load(),
		Requests:  db.requests.Load(),
		SyncNanos: db.syncNanos.Load(),
	}
}

type opKind uint8

const (
	opLogs opKind = iota
	opDelete
	opSet
)

// request is one write waiting for the committer. The caller frames its
// records (header, CRC and all) into buf before enqueueing, in parallel and
// outside the committer, which only copies buf into its write buffer.
type request struct {
	st   *Store
	kind opKind
	buf  []byte
	// opLogs: one per entry; buf is freshly allocated and, after the
	// commit, referenced by the shard's cache, so it is never reused.
	ents     []entRef
	key, val []byte // opSet, into buf
	min, max uint64 // opDelete
	base     int    // offset of buf in the committer's write buffer
	done     chan error
}

// entRef locates one log entry's record in request.buf.
type entRef struct {
	index        uint64
	start, end   int // the whole record
	payloadStart int // the raft.Log encoding, which runs to end
}

var requestPool = sync.Pool{New: func() any { return &request{done: make(chan error, 1)} }}

func getRequest(st *Store, kind opKind) *request {
	r := requestPool.Get().(*request)
	r.st, r.kind = st, kind
	return r
}

func putRequest(r *request) {
	if r.kind == opLogs || cap(r.buf) > 1<<16 {
		r.buf = nil
	}
	r.st, r.key, r.val = nil, nil, nil
	r.buf, r.ents = r.buf[:0], r.ents[:0]
	requestPool.Put(r)
}

// do enqueues r, waits for the commit that contains it and recycles r.
func (db *DB) do(r *request) error {
	if !db.queue.Put(r) {
		putRequest(r)
		return ErrClosed
	}
	err := <-r.done
	putRequest(r)
	return err
}

// run is the committer: it takes every queued request (up to maxBatch
// bytes), writes them with one write and one fdatasync, and answers them all.
// New requests queue up meanwhile and form the next batch; after a batch of
// two or more, the next waits for Options.Pace since that batch began.
func (db *DB) run() {
	defer close(db.stopped)
	var batch []*request
	var began time.Time
	var pace *time.Timer
	for {
		if db.pace > 0 && len(batch) >= 2 {
			if d := time.Until(began.Add(db.pace)); d > 0 {
				if pace == nil {
					pace = time.NewTimer(d)
				} else {
					pace.Reset(d)
				}
				select {
				case <-pace.C:
				case <-db.closing:
				}
			}
		}
		var size int
		var ok bool
		if batch, size, ok = db.queue.Next(batch); !ok {
			return // Close has failed the queue
		}
		began = time.Now()

		err := db.commit(batch, size)
		for i, r := range batch {
			r.done <- err
			batch[i] = nil
		}
	}
}

func (db *DB) fail(what string, err error) error {
	db.failed = fmt.Errorf("walstore: %s failed, the log accepts no more writes until reopened: %w", what, err)
	db.log.Error("walstore: write path failed", "op", what, "err", err)
	return db.failed
}

func (db *DB) commit(batch []*request, size int) error {
	if db.failed != nil {
		return db.failed
	}
	if db.hasData && db.off+int64(size) > db.segBytes {
		if err := db.rotate(); err != nil {
			return db.fail("segment rotation", err)
		}
	}
	wbuf := db.wbuf[:0]
	for _, r := range batch {
		r.base = len(wbuf)
		wbuf = append(wbuf, r.buf...)
	}
	if db.testHookBeforeCommit != nil {
		db.testHookBeforeCommit()
	}
	base := db.off
	start := time.Now()
	if _, err := db.active.f.WriteAt(wbuf, base); err != nil {
		return db.fail("write", err)
	}
	if !db.noSync {
		if err := fdatasync(db.active.f); err != nil {
			return db.fail("fdatasync", err)
		}
	}
	db.syncNanos.Add(uint64(time.Since(start)))
	db.off += int64(len(wbuf))
	db.hasData = true
	entries := 0
	for _, r := range batch {
		entries += db.apply(r, base+int64(r.base))
	}
	if db.dirty {
		db.compact()
	}
	db.commits.Add(1)
	db.entries.Add(uint64(entries))
	db.requests.Add(uint64(len(batch)))
	if cap(wbuf) > 2*db.maxBatch {
		wbuf = nil
	}
	db.wbuf = wbuf
	return nil
}

// apply updates the in-memory state for a request whose records are durable
// at offset base of the active segment. It returns the log entries written.
func (db *DB) apply(r *request, base int64) int {
	s := r.st
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.kind {
	case opLogs:
		for _, e := range r.ents {
			l := loc{seg: db.active, off: base + int64(e.start), n: uint32(e.end - e.start)}
			if s.set(e.index, l) {
				db.dirty = true
			}
			s.cache[e.index%cacheSize] = cacheEnt{index: e.index, data: r.buf[e.payloadStart:e.end:e.end]}
		}
		return len(r.ents)
	case opDelete:
		s.deleteRange(r.min, r.max)
		db.dirty = true
	case opSet:
		s.stable[string(r.key)] = append([]byte{}, r.val...)
	}
	return 0
}

// rotate seals the active segment (if any) and starts a new one whose first
// records restate the whole state that is not log entries: every shard's
// stable keys, and delete-range records covering every index that is not
// live (below the first index, holes, above the last index). After that no
// record of an older segment is needed except the log entries still indexed
// into it, so a segment can be deleted as soon as its live count is 0, in any
// order, without bringing back a deleted entry or an old stable value on
// replay. (A delete-range record in a deleted segment may be what hid an
// entry of an older segment still on disk; the restated ranges of every
// later rotation hide it too.)
func (db *DB) rotate() error {
	if db.active != nil {
		// Sealed and synced before the next segment exists, so that on
		// recovery only the last segment can lack its seal.
		if _, err := db.active.f.WriteAt(appendSealRecord(nil), db.off); err != nil {
			return err
		}
		if !db.noSync {
			if err := fdatasync(db.active.f); err != nil {
				return err
			}
		}
	}
	seq := db.nextSeq
	path := filepath.Join(db.dir, segName(seq))
	var f *os.File
	select {
	case sp := <-db.spare:
		if sp.err == nil {
			if err := os.Rename(filepath.Join(db.dir, spareName), path); err != nil {
				sp.f.Close()
				return err
			}
			f = sp.f
		} else {
			db.log.Warn("walstore: preparing the next segment failed; creating it now", "err", sp.err)
		}
		db.wantSpare <- struct{}{}
	default:
		// Not ready (Open's first rotation, or rotations faster than the
		// disk prepares files).
	}
	if f == nil {
		var err error
		if f, err = db.createFile(path, false); err != nil {
			return err
		}
	}
	if !db.noSync {
		// The directory entry, before anything in the file counts.
		if err := syncDir(db.dir); err != nil {
			f.Close()
			return err
		}
	}
	sg := &segment{seq: seq, path: path, f: f}
	db.segMu.Lock()
	db.segs[seq] = sg
	db.segMu.Unlock()
	db.nextSeq = seq + 1
	db.active, db.off, db.hasData = sg, 0, false

	buf := db.stateRecords(nil)
	if len(buf) > 0 {
		if _, err := f.WriteAt(buf, 0); err != nil {
			return err
		}
		if !db.noSync {
			if err := fdatasync(f); err != nil {
				return err
			}
		}
		db.off = int64(len(buf))
	}
	db.dirty = true // older segments may be deletable now
	return nil
}

// stateRecords appends, for every shard, its stable keys and delete records
// for the complement of its live indexes.
func (db *DB) stateRecords(dst []byte) []byte {
	db.shards.Range(func(_, v any) bool {
		s := v.(*Store)
		s.mu.RLock()
		defer s.mu.RUnlock()
		keys := make([]string, 0, len(s.stable))
		for k := range s.stable {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			dst = appendSetRecord(dst, s.id, []byte(k), s.stable[k])
		}
		next := uint64(0) // lowest index not yet accounted for
		for _, r := range s.runs {
			if r.start > next {
				dst = appendDeleteRecord(dst, s.id, next, r.start-1)
			}
			next = r.end()
		}
		if next != 0 || len(s.runs) == 0 {
			dst = appendDeleteRecord(dst, s.id, next, ^uint64(0))
		}
		return true
	})
	return dst
}

// compact deletes every segment other than the active one that no index
// entry points into any more.
func (db *DB) compact() {
	db.dirty = false
	var dead []*segment
	for _, sg := range db.segs {
		if sg != db.active && sg.live == 0 {
			dead = append(dead, sg)
		}
	}
	if len(dead) == 0 {
		return
	}
	db.segMu.Lock() // waits for reads of these files in progress
	for _, sg := range dead {
		delete(db.segs, sg.seq)
	}
	db.segMu.Unlock()
	for _, sg := range dead {
		select {
		case db.dead <- sg:
		default:
			db.remove(sg) // housekeeping is behind: do it here
		}
	}
}

// syncDir fsyncs a directory (its entries' creation, renaming, removal).
var syncDir = datadir.SyncDir

package sharedlog

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/edgenode/edgenode/relaylog/internal/groupcommit"
)

// ErrClosed is returned by every call on a closed DB, and by writes that were
// still queued when Close was called.
var ErrClosed = errors.New("sharedlog: closed")

// ErrKeyNotFound is returned by Get and GetUint64 for a key never Set. Its
// message is exactly "not found" because hashicorp/raft (v1.8.0 api.go
// HasExistingState and NewRaft, raft.go requestVote) compares
// err.Error() == "not found" instead of using errors.Is.
var ErrKeyNotFound = errors.New("not found")

// DefaultMaxBatchBytes bounds one bolt transaction when Options.MaxBatchBytes
// is 0. Bolt keeps every dirty page of a transaction in memory until commit,
// and a huge transaction delays every waiter in it; 8 MiB is about 30,000
// 250-byte entries, far more than a node's in-flight applies, so in practice
// the bound only splits follower catch-up bursts.
const DefaultMaxBatchBytes = 8 << 20

// Options configures Open.
type Options struct {
	// Path of the bolt file; required. Created if missing.
	Path string
	// Logger for commit errors; nil discards.
	Logger *slog.Logger
	// NoSync skips fsync on commit. Tests and benchmarks only: a crash can
	// then lose acknowledged raft entries and votes.
	NoSync bool
	// MaxBatchBytes bounds the encoded bytes written by one bolt
	// transaction; 0 means DefaultMaxBatchBytes. A single request larger
	// than this is still written, in a transaction of its own.
	MaxBatchBytes int
}

// Stats are cumulative counters since Open. Entries/Commits is the number of
// raft log entries per fsync pair.
type Stats struct {
	Commits   uint64 // bolt transactions committed
	Entries   uint64 // raft log entries written
	Requests  uint64 // StoreLogs/StoreLog/DeleteRange/Set/SetUint64 calls committed
	SyncNanos uint64 // total time spent in bolt's Commit (page writes and both fsyncs)
}

// DB is one bolt file shared by the stores of all shards of a node, with the
// goroutine that commits their writes.
type DB struct {
	bolt *bolt.DB
	log  *slog.Logger

	queue   *groupcommit.Queue[*request]
	stopped chan struct{} // closed when the committer has exited

	shards sync.Map // int -> *Store

	commits, entries, requests, syncNanos atomic.Uint64

	// testHookBeforeCommit, when set (only by tests, before the committer
	// starts), runs inside the committer after a batch is written and
	// before it is committed.
	testHookBeforeCommit func()
}

// Open opens (or creates) the bolt file and starts the committer.
func Open(opts Options) (*DB, error) {
	return open(opts, nil)
}

func open(opts Options, hook func()) (*DB, error) {
	if opts.Path == "" {
		return nil, errors.New("sharedlog: Options.Path is required")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	maxBatch := opts.MaxBatchBytes
	if maxBatch <= 0 {
		maxBatch = DefaultMaxBatchBytes
	}
	bdb, err := bolt.Open(opts.Path, 0o600, &bolt.Options{
		// Fail instead of hanging forever if another process holds the file.
		Timeout: 10 * time.Second,
		// The freelist is not written at every commit: one page write (and,
		// with a raft log's constant append-and-truncate churn, often
		// several) less per transaction. It is rebuilt by scanning the file
		// at Open instead, which costs time proportional to the file size
		// once per start. Durability is unaffected: the committed tree is
		// reached from the meta page, the freelist is derived from it.
		NoFreelistSync: true,
		// The hashmap freelist allocates and frees pages in O(1); the
		// default array freelist scans and sorts, which degrades when
		// truncation after snapshots leaves many free page runs.
		FreelistType: bolt.FreelistMapType,
		// A read transaction holds bolt's mmap lock, and a write that needs
		// to grow the mapping must wait for all readers (and stalls new
		// ones). Mapping 256 MiB up front means that does not happen until
		// the file passes 256 MiB (64 shards x 8k-16k trailing entries of
		// ~300 bytes is 150-300 MiB). It is address space only: the file
		// itself grows with the data.
		InitialMmapSize: 256 << 20,
		NoSync:          opts.NoSync,
	})
	if err != nil {
		return nil, fmt.Errorf("sharedlog: open %s: %w", opts.Path, err)
	}
	db := &DB{
		bolt:                 bdb,
		log:                  logger,
		stopped:              make(chan struct{}),
		queue:                groupcommit.New(maxBatch, func(r *request) int { return r.size() }),
		testHookBeforeCommit: hook,
	}
	go db.run()
	return db, nil
}

// Shard returns the store of shard id, creating it on first use. Safe for
// concurrent use; the same id always yields the same *Store. Its buckets are
// created in the file by its first write.
func (db *DB) Shard(id int) *Store {
	if s, ok := db.shards.Load(id); ok {
		return s.(*Store)
	}
	suffix := strconv.Itoa(id)
	s, _ := db.shards.LoadOrStore(id, &Store{
		db:         db,
		id:         id,
		logsName:   []byte("logs/" + suffix),
		stableName: []byte("stable/" + suffix),
	})
	return s.(*Store)
}

// Close stops the committer and closes the file. Writes still queued fail
// with ErrClosed; a transaction already being committed completes first and
// its callers get its result. Later calls on the DB or its stores return
// ErrClosed. Close is idempotent.
func (db *DB) Close() error {
	queued, already := db.queue.Close()
	if already {
		<-db.stopped
		return nil
	}
	for _, r := range queued {
		r.done <- ErrClosed
	}
	<-db.stopped // the committer finishes its transaction, if any, and exits
	// bolt.Close waits for read transactions in flight.
	return db.bolt.Close()
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

// logsFillPercent is the bolt fill percent of log buckets (see apply).
const logsFillPercent = 0.95

type opKind uint8

const (
	opLogs opKind = iota
	opDelete
	opSet
)

// request is one write waiting for the committer. Callers encode their
// writes into buf before enqueueing (in parallel, outside the committer);
// the committer only Puts. bolt keeps references to the values until the
// transaction commits, so buf must not change before done is signalled.
type request struct {
	st   *Store
	kind opKind
	buf  []byte
	// opLogs: entry i's key is buf[start_i:start_i+8] and its value runs to
	// ends[i], with start_0 = 0 and start_i = ends[i-1]. opSet: buf is key
	// then value, split at ends[0].
	ends     []int
	min, max uint64 // opDelete
	done     chan error
}

var requestPool = sync.Pool{New: func() any { return &request{done: make(chan error, 1)} }}

func getRequest(st *Store, kind opKind) *request {
	r := requestPool.Get().(*request)
	r.st, r.kind = st, kind
	return r
}

func putRequest(r *request) {
	r.st = nil
	// Do not keep a large buffer alive in the pool.
	if cap(r.buf) > 1<<20 {
		r.buf = nil
	}
	r.buf, r.ends = r.buf[:0], r.ends[:0]
	requestPool.Put(r)
}

// size is the request's weight against MaxBatchBytes.
func (r *request) size() int {
	if r.kind == opDelete {
		return 64
	}
	return len(r.buf)
}

// do enqueues r, waits for the transaction that contains it and recycles r.
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
// bytes), writes them in one transaction and answers them all. New requests
// queue up while a commit is in progress and form the next batch.
func (db *DB) run() {
	defer close(db.stopped)
	var batch []*request
	for {
		var ok bool
		if batch, _, ok = db.queue.Next(batch); !ok {
			return // Close has failed the queue
		}

		err := db.commit(batch)
		for i, r := range batch {
			r.done <- err
			batch[i] = nil
		}
	}
}

func (db *DB) commit(batch []*request) error {
	tx, err := db.bolt.Begin(true)
	if err != nil {
		db.log.Error("sharedlog: begin transaction", "err", err)
		return err
	}
	entries := 0
	for _, r := range batch {
		n, err := r.apply(tx)
		if err != nil {
			_ = tx.Rollback()
			db.log.Error("sharedlog: write failed, transaction rolled back",
				"shard", r.st.id, "requests", len(batch), "err", err)
			return err
		}
		entries += n
	}
	if db.testHookBeforeCommit != nil {
		db.testHookBeforeCommit()
	}
	start := time.Now()
	if err := tx.Commit(); err != nil {
		db.log.Error("sharedlog: commit failed", "requests", len(batch), "err", err)
		return err
	}
	db.syncNanos.Add(uint64(time.Since(start)))
	db.commits.Add(1)
	db.entries.Add(uint64(entries))
	db.requests.Add(uint64(len(batch)))
	return nil
}

// apply writes r into tx and returns the number of log entries written.
func (r *request) apply(tx *bolt.Tx) (int, error) {
	switch r.kind {
	case opLogs:
		b, err := writeBucket(tx, r.st.logsName)
		if err != nil {
			return 0, err
		}
		// Keys arrive in increasing order (appends), so a leaf that splits
		// never gets more keys: split it nearly full instead of at bolt's
		// default half. Half as many pages to allocate, split, write and
		// sync per entry; the setting lasts for this transaction only.
		b.FillPercent = logsFillPercent
		start := 0
		for _, end := range r.ends {
			if err := b.Put(r.buf[start:start+8], r.buf[start+8:end]); err != nil {
				return 0, err
			}
			start = end
		}
		return len(r.ends), nil
	case opSet:
		b, err := writeBucket(tx, r.st.stableName)
		if err != nil {
			return 0, err
		}
		k := r.ends[0]
		return 0, b.Put(r.buf[:k], r.buf[k:])
	case opDelete:
		b := tx.Bucket(r.st.logsName)
		if b == nil {
			return 0, nil
		}
		var minKey, cur [8]byte
		putUint64(minKey[:], r.min)
		c := b.Cursor()
		// Seek past each deleted key instead of calling Next. Next after
		// Delete is only right while the cursor walks an unmodified page
		// (raft-boltdb relies on that); here an earlier Put of the same
		// transaction may have turned the leaf into a node, whose elements
		// shift left on Delete so that Next would skip one. Seeking from
		// minKey instead would walk every emptied leaf again each time
		// (quadratic); seeking the key just deleted lands on its successor.
		for k, _ := c.Seek(minKey[:]); k != nil && getUint64(k) <= r.max; k, _ = c.Seek(cur[:]) {
			copy(cur[:], k)
			if err := c.Delete(); err != nil {
				return 0, err
			}
		}
		return 0, nil
	}
	return 0, fmt.Errorf("sharedlog: unknown request kind %d", r.kind)
}

func writeBucket(tx *bolt.Tx, name []byte) (*bolt.Bucket, error) {
	if b := tx.Bucket(name); b != nil {
		return b, nil
	}
	return tx.CreateBucket(name)
}

// begin starts a read transaction, mapping a closed bolt to ErrClosed.
func (db *DB) begin() (*bolt.Tx, error) {
	tx, err := db.bolt.Begin(false)
	if err != nil && errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return nil, ErrClosed
	}
	return tx, err
}

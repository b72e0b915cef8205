package sharedlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/edgenode/edgenode/relaylog/logcodec"
)

// Store is one shard's raft.LogStore and raft.StableStore inside a DB. Writes
// block until committed (see the package comment); reads run in their own
// bolt read transactions, concurrently with the committer.
type Store struct {
	db         *DB
	id         int
	logsName   []byte
	stableName []byte
}

var (
	_ raft.LogStore    = (*Store)(nil)
	_ raft.StableStore = (*Store)(nil)
)

// ID returns the shard id given to DB.Shard.
func (s *Store) ID() int { return s.id }

// FirstIndex returns the lowest stored log index, 0 if there is none.
func (s *Store) FirstIndex() (uint64, error) {
	return s.edge(true)
}

// LastIndex returns the highest stored log index, 0 if there is none.
func (s *Store) LastIndex() (uint64, error) {
	return s.edge(false)
}

func (s *Store) edge(first bool) (uint64, error) {
	tx, err := s.db.begin()
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback() }()
	b := tx.Bucket(s.logsName)
	if b == nil {
		return 0, nil
	}
	var k []byte
	if first {
		k, _ = b.Cursor().First()
	} else {
		k, _ = b.Cursor().Last()
	}
	if k == nil {
		return 0, nil
	}
	return getUint64(k), nil
}

// GetLog reads the entry at index into log; raft.ErrLogNotFound if absent.
func (s *Store) GetLog(index uint64, log *raft.Log) error {
	tx, err := s.db.begin()
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	b := tx.Bucket(s.logsName)
	if b == nil {
		return raft.ErrLogNotFound
	}
	var key [8]byte
	putUint64(key[:], index)
	v := b.Get(key[:])
	if v == nil {
		return raft.ErrLogNotFound
	}
	if err := logcodec.DecodeLog(index, v, log); err != nil {
		return fmt.Errorf("sharedlog: shard %d index %d: %w", s.id, index, err)
	}
	return nil
}

// StoreLog stores one entry; see StoreLogs.
func (s *Store) StoreLog(log *raft.Log) error {
	return s.StoreLogs([]*raft.Log{log})
}

// StoreLogs stores the entries, returning once they are committed (fsynced)
// together with whatever other shards wrote meanwhile. The entries of one
// call are in one transaction: after a crash all or none of them are there.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	r := getRequest(s, opLogs)
	n := 0
	for _, l := range logs {
		n += 8 + logcodec.MaxSize(l)
	}
	r.buf = slices.Grow(r.buf[:0], n)
	for _, l := range logs {
		var key [8]byte
		putUint64(key[:], l.Index)
		r.buf = append(r.buf, key[:]...)
		r.buf = logcodec.AppendLog(r.buf, l)
		r.ends = append(r.ends, len(r.buf))
	}
	return s.db.do(r)
}

// DeleteRange deletes the entries with min <= index <= max.
func (s *Store) DeleteRange(min, max uint64) error {
	if min > max {
		return nil
	}
	r := getRequest(s, opDelete)
	r.min, r.max = min, max
	return s.db.do(r)
}

// Set stores key = val durably.
func (s *Store) Set(key []byte, val []byte) error {
	// Checked here so that a bad key cannot fail the other requests that
	// would share its transaction.
	if len(key) == 0 {
		return errors.New("sharedlog: empty key")
	}
	if len(key) > bolt.MaxKeySize {
		return errors.New("sharedlog: key too large")
	}
	r := getRequest(s, opSet)
	r.buf = append(append(r.buf[:0], key...), val...)
	r.ends = append(r.ends, len(key))
	return s.db.do(r)
}

// Get returns a copy of the value of key, or ErrKeyNotFound (message "not
// found", which raft requires).
func (s *Store) Get(key []byte) ([]byte, error) {
	tx, err := s.db.begin()
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()
	b := tx.Bucket(s.stableName)
	if b == nil {
		return nil, ErrKeyNotFound
	}
	v := b.Get(key)
	if v == nil {
		return nil, ErrKeyNotFound
	}
	return append([]byte{}, v...), nil
}

// SetUint64 stores val as 8 big-endian bytes (as raft-boltdb does).
func (s *Store) SetUint64(key []byte, val uint64) error {
	var b [8]byte
	putUint64(b[:], val)
	return s.Set(key, b[:])
}

// GetUint64 returns the value stored by SetUint64, or ErrKeyNotFound.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("sharedlog: value of %q is %d bytes, not a uint64", key, len(v))
	}
	return getUint64(v), nil
}

// Log keys are big-endian, so that bolt's key order is index order.
func putUint64(b []byte, v uint64) { binary.BigEndian.PutUint64(b, v) }

func getUint64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

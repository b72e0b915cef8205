// Package walstore is a raft.LogStore and raft.StableStore for many raft
// groups ("shards") in one process, built as ONE append-only write-ahead log
// shared by all shards, with group commit. It has the API of
// relaylog/sharedlog (Options, Open, DB.Shard, Close, Stats, ErrClosed) and
// replaces its bbolt file: a bolt commit of a batch from 16 shards writes a
// tail leaf and a bucket root page per shard plus a meta page and needs two
// fdatasyncs; here a batch is one write(2) of the framed records and one
// fdatasync.
//
// # Layout
//
// Options.Path is a directory of segment files named by a hex sequence
// number (0000000000000000.wal, ...), preallocated to DefaultSegmentBytes
// (see preallocate for why), and a LOCK file (flock) against a second
// process. Records are framed as [len u32][crc32c u32][type u8][shard
// varint][payload] (see record.go): a raft log entry (index, then the
// relaylog/logcodec binary encoding of raft.Log, as sharedlog), a delete-range (min, max) or a
// stable-store set (key, value). A segment that is not the last ends with a
// seal record.
//
// In memory each shard keeps its stable map and an index from raft index to
// (segment, offset, size): a sorted list of runs of consecutive indexes, which
// for a raft log is one slice offset by FirstIndex. GetLog decodes the entry
// from a per-shard ring of the last 512 written entries (raft reads entries it
// has just written, to apply and replicate them) or preads the record from its
// segment file, checking its CRC. Storing an existing index replaces it, as in
// raft-boltdb (raft itself deletes a conflicting suffix before rewriting it).
//
// # Group commit
//
// StoreLogs/DeleteRange/Set frame their records (CRC included) in the calling
// goroutine and enqueue a request; one committer goroutine takes everything
// queued (up to Options.MaxBatchBytes), copies it into one buffer, writes it
// with one pwrite at the end of the active segment, calls fdatasync once,
// updates the in-memory indexes and then answers all waiters. No timer: the
// requests that arrive during one fdatasync form the next batch.
//
// # Durability
//
// A request is answered nil only after its bytes were written and the
// fdatasync that followed returned (unless Options.NoSync). Preallocation
// means the records' blocks and the file size are already durable (fsynced
// when the segment file was created, and its name with the directory when
// it became a segment), so fdatasync's promise
// that the written data can be read back after a crash covers every
// acknowledged record.
//
// Recovery replays all segments in sequence order and verifies every CRC.
// Only the last segment can have been being written at a crash (a segment is
// sealed and synced before the next one gets its name), so there the first
// incomplete, zero or corrupt record is taken as the end of the log: it and
// everything after it belong to a write whose fdatasync never returned, i.e. a
// request never acknowledged. Open truncates the segment there and seals it,
// so bytes of that lost write can never be read later. A write can reach disk
// partially and out of order, so after a crash a StoreLogs call may leave a
// prefix of its entries (never a gap, since replay stops at the first bad
// record); raft only relies on acknowledged entries, and a prefix of an
// unacknowledged append is a valid log. A bad record anywhere in an earlier
// segment cannot be a torn write and fails Open. If a write or fdatasync
// fails, its requests get the error and the log refuses all later writes
// (the state of the file is unknown) until reopened, when recovery decides.
//
// # Housekeeping
//
// A background goroutine prepares the next segment (created as
// next.wal.tmp, filled with zeros a megabyte at a time, fsynced; see
// createFile for why zeros rather than fallocate) and removes dead
// segments, so that
// the committer neither unlinks a 64 MiB file (25-45 ms measured) nor
// creates one in the middle of everyone's commits: a rotation renames the
// prepared file into place and syncs the directory. Recovery ignores, and
// Open removes, a next.wal.tmp left by a crash.
//
// # Compaction
//
// Every Open and every rotation to a new segment first writes, for every
// shard, its stable keys and delete-range records for every index that is
// not live (below the first, holes, above the last). From then on the older
// segments are needed only for the log entries that the index still points
// into, which a per-segment live count tracks; a segment other than the
// active one whose count drops to 0 (entries deleted by DeleteRange or
// replaced) is closed and deleted, in any order: a replay without it cannot
// bring back a deleted entry or an old stable value, since the state records
// of the newest rotation, or later records, supersede everything in it.
// (One idle shard can keep one old segment alive, but not the ones after it.)
package walstore

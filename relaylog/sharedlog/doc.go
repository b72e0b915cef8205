// Package sharedlog is a raft.LogStore and raft.StableStore for many raft
// groups ("shards") living in one process: all shards of a node share ONE bbolt
// file, and concurrent writes from different shards are coalesced into one bolt
// transaction (group commit).
//
// # Why
//
// hashicorp/raft with raft-boltdb gives every shard its own bolt file, and
// every StoreLogs call is one bolt transaction, i.e. two fdatasyncs. A raft
// leader batches the applies that queued while its previous write was on disk,
// so entries per fsync come out near (in-flight applies / shards). Measured on
// this machine (docs/BASELINE.md: raft v1.8.0, raft-boltdb v2, fsync
// on, 250-byte entries, 256-1024 concurrent applies): one shard committed
// 90,000-100,000 applies/s with 100-340 entries per fsync, but 32 and 64 shards
// only 1-9 entries per fsync and 10,000-53,000 applies/s; with GOMAXPROCS equal
// to the 2 cores the many threads blocked in fsync starved the scheduler and it
// got 2-5x worse. The disk does a roughly fixed number of fsyncs per second no
// matter how many files they are spread over, so many shards on one disk just
// divide the batch.
//
// Here every shard's StoreLogs/DeleteRange/Set enqueues a request for a single
// committer goroutine and blocks. The committer takes every request queued (up
// to Options.MaxBatchBytes), writes them all in one bolt read-write
// transaction, commits (one fsync pair for the whole node) and then answers all
// waiters. There is no timer: while one transaction is being synced the next
// requests pile up and form the next batch, so batches grow exactly with the
// load and an idle node commits a lone request at once. Only one thread sits in
// fsync at a time, whatever the shard count. BENCH.md has the measured
// comparison with per-shard raft-boltdb (1.6-3.9x the applies/s with 8-64
// shards, 11x in the worst case, about 50-200 entries per fsync pair regardless
// of shards).
//
// # Durability
//
// A call returns nil only after the bolt transaction that contains its writes
// has committed, and bolt's commit fdatasyncs the data pages and then the meta
// page (unless Options.NoSync). That is exactly the promise raft-boltdb makes
// per call, which is the promise raft needs: an entry acknowledged by
// StoreLogs, and the term/vote written by Set, survive a crash. Grouping does
// not weaken it: a request is answered after its own transaction, never before,
// and a transaction is atomic, so after a crash a shard has either all or none
// of the entries of one StoreLogs call. Requests are applied in the order they
// were enqueued, so each caller's write order is kept (raft issues a shard's
// StoreLogs and Set calls from its main goroutine; DeleteRange comes from the
// snapshot goroutine and only removes indexes below the snapshot). If a
// transaction fails, every request in it (and only those) gets the error and
// nothing of it is on disk; raft treats a failed StoreLogs like raft-boltdb's.
// Close fails requests still queued with ErrClosed (they were not written); the
// transaction being committed at that moment completes and its callers get its
// real result.
//
// # Layout
//
// Shard n has two top-level buckets: "logs/n" with keys the big-endian uint64
// log index (so cursor order is index order and FirstIndex/LastIndex are one
// cursor step) and values in a compact binary encoding of raft.Log (see
// relaylog/logcodec), and "stable/n" for the raft.StableStore keys. Buckets are created
// by the first write of a shard; reads of a shard never written see an empty
// store.
package sharedlog

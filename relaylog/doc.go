// Package relaylog is the replicated store of undelivered chat events: one
// queue per user, kept in S raft groups (shards) chosen by a stable hash of
// the user id (ShardOf), on hashicorp/raft.
//
// # What the state machine holds
//
// Per shard: the queues of its users (new messages and DELIVERED/READ
// receipts, in id order); per sender, the 8 newest sends to its users
// (recipient, requestId → message id, a fingerprint of content and
// createdAt, and createdAt), written in the same log entry as the message
// and each kept for at most the idempotency window (24 h by default); push
// devices; the last time each user was connected; and the read marks of
// conversations whose sender lives in the shard. Everything is in memory,
// made durable by raft's log and snapshots, and bounded by users rather
// than traffic (see fsm). The relay forgets an event once its recipient
// acknowledges it.
//
// A retry of a remembered (sender, recipient, requestId) whose content and
// createdAt match answers the original message; one that does not match is
// a client bug and answers ErrRequestIDReused. A request that is not
// remembered but is not newer, by createdAt, than the sender's requests the
// shard has forgotten may be a retry of one of them: it answers
// ErrRequestExpired and stores nothing.
//
// # Ids
//
// Message and receipt ids are positive integers below 2^53 (JavaScript-safe):
//
//	bit 52 ........................ 12 | 11 ........ b | b-1 ..... 0
//	milliseconds since 2026-01-01 UTC   | sequence     | shard
//	(41 bits, until 2095)               | (12-b bits)  | (b = ceil(log2 S) bits)
//
// The leader of a shard assigns ids when it proposes, from one clock for the
// whole node, so an id assigned after another on the same node is larger
// whatever the shards (a reply sorts after the message it answers). The
// shard bits make ids unique across the cluster. The state machine makes ids
// strictly increasing within a shard whatever the clocks do (a smaller
// proposed id is raised past the shard's last), so a user's queue cursor is
// monotonic. When a node needs more than 2^(12-b) ids in one millisecond it
// borrows the next millisecond: ids run ahead of the wall clock only under
// such sustained load (with 16 shards, 256 ids/ms = 256,000 ids/s).
// IDTime recovers the commit time, which is also the event's age for
// retention.
//
// # Writes
//
// Each shard has a proposer goroutine that packs every call waiting for it
// into one raft entry (up to 2048 commands), with at most two entries in
// flight, so batches grow with load and not with a timer. With the default
// StoreShared, the raft logs of all shards live in one bbolt file whose
// concurrent writes are committed in one transaction (package sharedlog): a
// node pays one fsync pair for all its shards' entries at a time instead of
// one per shard. A call returns only after its entry was fsynced and applied.
//
// # Acknowledgements and receipts
//
// Ack writes the DELIVERED receipts to the senders' shards first and removes
// the delivered events second, so a crash in between repeats a receipt
// (clients treat receipts idempotently) but never loses one.
package relaylog

// Package edgechat is the edgenode client SDK: the data layer of the chat app
// designed in the seed (steps 3 and 4), for 1:1 chat against any edgenode
// edge. It owns chats.db, the local SQLite database that is the source of
// truth on the device, the repositories over it, the message scheduler and
// the real-time connection. It does not own the UI, the login (the app
// passes a token) or the platform's push client (the app passes push tokens).
//
// # Using it
//
//	c, err := edgechat.Open(&edgechat.Config{ServerURL: url, Token: jwt, DBPath: dir + "/chats.db"})
//	c.SetListener(ui)       // called after every commit that changes what a screen shows
//	c.Start()               // scheduler, timeout controller, WebSocket, sync
//	m, _ := c.Send(42, "hi")    // stored as PENDING and shown at once
//	page, _ := c.History(42, 0, 50) // offline, oldest first, pending last
//	chats, _ := c.Chats()       // ConversationPreviews, newest first, unread counts
//	c.MarkRead(42)              // local at once, READ receipt to the sender
//	defer c.Close()
//
// A short-lived program (cmd/edgechat) skips Start and calls Flush and Sync.
//
// # Bindable surface (gomobile)
//
// Open, Config's string/int fields, Client's methods whose parameters and
// results are strings, integers, bools, errors and pointers to this
// package's structs, the Listener interface, and the list types
// (MessageList, ConversationList, UsageList, EdgeList) with Len and Get(i)
// can be bound with `gomobile bind` for Android and iOS. The rest is a Go
// layer that gomobile skips: Config.Logger, Config.HTTPClient and Config.Now,
// the *Context variants of calls, WatchIDs, and the Messages(),
// Conversations() and Usage() slice accessors. Struct fields of struct type
// are not bound; ConversationPreview.GetContact returns the contact.
// Listener callbacks arrive on a goroutine of the SDK, never the UI thread.
//
// # The seed's decisions, point by point
//
// Requirements and API (steps 1 and 2)
//
//   - HTTP REST for what the client starts (send, sync, read marks, typing,
//     devices, status, edges); one WebSocket (/v1/socket/updates) for what
//     the server pushes. The socket carries only real-time traffic; the
//     client sends messages over REST.
//   - requestId is the idempotency key, per sender and recipient: a random
//     53-bit id made when the message is stored, sent unchanged (with the
//     same toUserId and createdAt) on every retry, so a retry after a lost
//     answer gets the same message. fromMessageRequestId matches the
//     answer to the request. The server remembers a key for at most 24 h,
//     and only the sender's 8 newest accepted sends to each shard's
//     recipients; a request it can no longer check gets 409
//     request_expired (see Deep dive, Expired).
//   - GET /v1/messages syncs on start and after every reconnect.
//   - Message statuses SYNCED, DELIVERED, READ come from the server and its
//     receipts; PENDING (and FAILED) exist only on the device, for requests.
//   - Presence and typing: contact_status_update events for the users set
//     with Watch (kept across reconnects) and for anyone typing to me. The
//     server shows presence only between users who share a conversation (a
//     message either way within its retention): a watched stranger looks
//     never connected until the first message between the two.
//
// Client architecture (step 3)
//
//   - A relational database persists everything: SQLite through the pure-Go
//     modernc.org/sqlite (no cgo), file chats.db, WAL, synchronous=FULL so
//     that a commit is durable before it is acknowledged.
//   - Unidirectional, reactive flow: every write commits first, then the
//     Listener is told (coalesced, from one goroutine); screens re-read the
//     repositories. Nothing is shown that is not in chats.db, except live
//     presence and typing.
//   - Repositories: the messages repository (Send, History, Resend,
//     DeleteRequest, MarkRead) merges Messages and MessageRequests; the
//     conversations repository (Chats, UnreadCount) builds
//     ConversationPreviews; the users repository (PutUser, User,
//     ContactInfo). Messages Remote DataSource is the REST client, Real-time
//     Updates Remote DataSource the socket loop.
//   - Eviction is the user's: Usage shows per-conversation storage,
//     DeleteConversation and DeleteMessagesBefore free it, Vacuum returns
//     the space. Nothing is deleted automatically. Alerting on low device
//     storage is the app's job (it knows the platform's free space).
//
// Deep dive (step 4)
//
//   - Ordering: accepted messages by the server's messageId; requests not
//     accepted yet after them, by createdAt (then by the order they were
//     written, for equal timestamps). The chat list orders conversations by
//     the server commit time in the latest id, or the local time of a newer
//     pending message, never by another device's clock.
//   - Lifecycle: Send stores a MessageRequest (PENDING; SaveDraft stores a
//     DRAFT, SendDraft queues it) and returns it for display at once. The
//     Messages Scheduler sends it from a background goroutine; on 201 one
//     transaction deletes the request and inserts the Message (there is no
//     SUCCEEDED status). A receipt that overtook the 201 is not lost: the
//     contact's delivered/read marks are kept and applied on insert.
//   - MessageRequest statuses DRAFT, PENDING, SENT (on the wire), FAILED.
//     The Messages Timeout Controller turns a request still SENT after the
//     send timeout (a crash, a hung call) into FAILED so it is retried.
//   - Failures: each failed attempt sets FAILED and increments failCount;
//     the next attempt waits base·2^(failCount−1), capped, with equal jitter
//     (default 1 s doubling to 5 min), and at least the server's
//     Retry-After. After MaxAttempts (default 10), or at once for answers
//     retrying cannot fix (400, 403, 404, 413, and an expired request that
//     may have been accepted), the request stays FAILED for good: the
//     conversation shows it with status FAILED and the app offers Resend or
//     DeleteRequest. While a retry is scheduled the conversation still shows
//     PENDING with failCount. When the socket reconnects, scheduled retries
//     are made due at once.
//   - Per recipient the scheduler sends one request at a time in written
//     order and holds later ones behind an earlier one that waits for a
//     retry, so ids follow the order the user typed. The Pending Messages
//     Provider is the query of scheduled requests.
//   - Maybe accepted: each request records whether an attempt with its
//     current key may have reached the server. No answer, a timeout, a
//     5xx, or a crash or shutdown while SENT (which the timeout controller
//     turns to FAILED) sets it; answers proving that nothing was stored
//     (400, 401, 403, 404, 405, 409, 413, 429) leave it as it was.
//   - Expired: on 409 request_expired a request that cannot have been
//     accepted is re-stamped (a fresh requestId, createdAt now) and sent
//     again at once; it stays PENDING, and no copy is possible. (If the
//     fresh key is refused too, e.g. a clock far behind, that counts as a
//     failed attempt with backoff.) A maybe-accepted request becomes FAILED
//     for good with Expired set: it may have been delivered already, and
//     the server will not risk a second copy. The app shows that and asks
//     the user before Resend, which re-stamps it and sends it as a new
//     message, so it may show twice at the recipient. Resend of any other
//     FAILED request keeps its requestId and createdAt. A re-stamp changes
//     only the key on the wire: Message.RequestID, the local handle of
//     Request, Resend and DeleteRequest, stays, and so do the request's
//     created_at and seq, which order it, so it keeps its place before the
//     recipient's later requests. The accepted message carries the new
//     createdAt.
//   - Receiving: new_message, message_delivered and message_read events are
//     batched into one transaction, then acknowledged (ack upTo) only after
//     the commit; a sync page is acknowledged by the next call's cursor,
//     after its commit. Duplicates are dropped by id (INSERT OR IGNORE), and
//     statuses only move forward (SYNCED < DELIVERED < READ).
//   - Reconnection: exponential backoff with equal jitter (500 ms to 30 s);
//     a 1012 close (the node drains) reconnects at once to the next edge. A
//     socket silent for 2.5 heartbeats is treated as dead (half-open TCP).
//   - Nearest edge: GET /v1/edges, round trip to each edge's /healthz
//     measured concurrently, best first; a failed call or connection moves
//     to the next edge, and the list is re-measured after repeated failures.
//     The configured server URL stays a candidate.
//   - Read receipts: MarkRead sets the local read mark and READ status in
//     one transaction, then sends the mark; a mark the server has not
//     confirmed is resent by the scheduler, so it survives being offline.
//   - Schema: Users, Messages and MessageRequests in one chats.db, created by
//     one script (schema.sql) in dependency order, foreign keys on.
//     Migrations are versioned with PRAGMA user_version (version 2,
//     schema_v2.sql, adds the re-stampable key; a version 1 request that
//     was ever put on the wire counts as maybe accepted). Additions to the
//     seed's columns are bookkeeping: Messages.contact_id (the other party,
//     for one index serving conversation and chat list),
//     MessageRequests.created_at (when written), next_attempt_at and seq,
//     wire_request_id and wire_created_at (the key sent, resent unchanged
//     until a re-stamp), maybe_accepted and expired, and per-user
//     read/delivered marks; SyncState holds the sync cursor.
//   - Size and performance: indexes for the hot queries
//     (Messages(contact_id, id) for keyset pages, the latest message per
//     conversation and unread counts; MessageRequests(to_user_id,
//     created_at, seq); the scheduler's due index); writes batched in
//     transactions; a small connection pool with one writer at a time (WAL
//     readers run alongside); all work off the caller's UI thread is the
//     app's choice, the SDK's own work runs on its goroutines.
//   - Push: RegisterAPNs, RegisterFCM and UnregisterDevice register the
//     platform's token; a notification in the foreground should call Sync.
//     Push is only an alert: messages always come through sync or socket.
//
// # Not covered
//
// Group chats, media, encryption at rest and multi-device echo of one's own
// sent messages are out of scope, as in the seed.
package edgechat

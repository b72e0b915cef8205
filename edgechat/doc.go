// Package edgechat is the edgenode client SDK: the data layer of a 1:1 chat
// app, against any edgenode edge. "The seed" in this package's comments is
// the chat app's original design, which is not part of this repository; its
// decisions are listed below, point by point, with what the SDK does for
// each. It owns chats.db, the local SQLite database that is the source of
// truth on the device, the repositories over it, the message scheduler and
// the real-time connection. It does not own the UI, the login (the app
// passes a token) or the platform's push client (the app passes push tokens).
//
// # An app's lifecycle, as code
//
// One Client per logged-in account, kept for as long as the account is
// logged in. Every call may be made from any thread; those that reach the
// server block up to their timeout, so the UI calls them off its thread.
// Listener methods arrive on an SDK goroutine: post them to the UI thread.
//
//	// Start: log in (the app's login service), open the account's database.
//	cfg := &edgechat.Config{ServerURL: "https://chat.example.com", DBPath: dir + "/chats.db",
//		Token: login.Token(), TokenSource: login} // login.Token(reason) (string, error)
//	c, err := edgechat.Open(cfg)
//	if edgechat.ErrorCode(err) == edgechat.CodeOtherAccount {
//		// chats.db is another account's (a log-out without cleanup): empty
//		// it for this one, or give each account its own DBPath.
//		cfg.WipeOtherAccount = true
//		c, err = edgechat.Open(cfg)
//	}
//	c.SetListener(ui) // OnChanges, OnContactStatus, OnConnectionChanged, OnAuthFailed
//	c.Start()         // token, scheduler, socket (which replays what waits)
//
//	// Use: everything reads and writes chats.db first, works offline.
//	m, _ := c.Send(42, "hi")        // PENDING at once: OnChanges message_added
//	page, _ := c.History(42, 0, 50) // oldest first, pending last
//	chats, _ := c.Chats()           // newest first, unread counts
//	c.MarkRead(42)                  // local at once, READ receipt to 42
//	c.WatchIDs([]int64{42})         // presence and typing of 42 (Watch("42") from Java/Swift)
//	c.RegisterFCM(fcmToken)         // or RegisterAPNs(token, topic, sandbox)
//
//	// Background: the socket closes, presence becomes unknown, messages
//	// written meanwhile wait in chats.db; the platform's push takes over.
//	c.Pause()
//	// Foreground: a fresh token, the socket at once (it replays what came
//	// meanwhile), queued messages without waiting out their backoff.
//	c.Resume()
//	// The network changed (Wi-Fi to cellular, back online): redial now.
//	c.NetworkChanged()
//
//	// Push arrival: the notification is only an alert. In the foreground
//	// the socket brings the message; from a background task, fetch it:
//	c.Sync() // stores and acknowledges what waits, then OnChanges
//
//	// Token refresh happens by itself: the TokenSource is asked on Start
//	// and Resume, before the token expires, and when the server answers
//	// 401. A 401 is never retried as a transient failure: if no token is
//	// had, OnAuthFailed(code, message) fires once, nothing is sent and the
//	// socket waits; messages stay PENDING until
//	c.SetToken(newToken) // after the user logs in again
//
//	// Failures: "retry all" for messages that failed for good.
//	n, _ := c.RetryFailed()
//	_, err = c.Send(42, "")
//	switch edgechat.ErrorCode(err) { // docs/API.md's codes, and the SDK's
//	case "rate_limited", "unauthenticated", edgechat.CodeEmpty: // ...
//	}
//
//	// Account switch: log out, log in as someone else.
//	c.UnregisterDevice(fcmToken)
//	c.Close()
//	cfg = &edgechat.Config{ServerURL: url, DBPath: dir + "/chats.db", Token: other.Token(),
//		TokenSource: other, WipeOtherAccount: true} // or another DBPath, keeping both
//	c, _ = edgechat.Open(cfg)
//
// Change events (OnChanges) say what changed: message_added (a request
// written here, or a message received), message_accepted (a request became
// message MessageID), message_status (DELIVERED, READ, EXPIRED; PENDING or
// FAILED for requests), message_removed, conversation_removed and, for
// changes to many messages at once, conversation_changed (re-read that
// conversation). A message of mine the server dropped undelivered at the
// end of its retention period shows status EXPIRED.
//
// A short-lived program (cmd/edgechat) skips Start and calls Flush and Sync.
//
// # Bindable surface (gomobile)
//
// The package is named for its bindings: Java gets edgechat.Client and
// Edgechat.open(config); Objective-C EdgechatClient and EdgechatOpen.
// Open, Config's string/int/bool fields, Client's methods whose parameters
// and results are strings, integers, bools, errors and pointers to this
// package's structs, the Listener and TokenSource interfaces (which Java
// and Swift implement), ErrorCode, ErrorStatus and IsTransient, and the
// list types (MessageList, ConversationList, UsageList, EdgeList,
// ChangeList) with Len and Get(i) are bound by `gomobile bind` for Android
// and iOS; CI generates the bindings (make bindings). The rest is a Go
// layer that gomobile skips: Config.Logger, Config.HTTPClient, Config.Now,
// APIError.RetryAfter (ErrorRetryAfterMillis gives it), the *Context
// variants of calls, WatchIDs, and the Messages(), Conversations(),
// Usage() and Changes() slice accessors. Config.TokenSource binds too;
// SetTokenSource sets it on an open Client. Struct fields of struct type are not bound;
// ConversationPreview.GetContact returns the contact. Errors reach Java
// and Swift as exceptions with the message; ErrorCode(err) gives the code.
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
//   - Catch-up: every new socket replays the user's queue from its head,
//     so a started client catches up through the socket alone (one copy
//     of each waiting message: 1,000 waiting messages cost 219 kB instead
//     of 368 kB when a REST sync also ran after each connect). Sync (GET
//     /v1/messages) is for programs without a socket and for push arrival
//     in the background.
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
//     Listener is told what changed (OnChanges, in commit order, from one
//     goroutine); screens apply the changes or re-read the repositories.
//     Nothing is shown that is not in chats.db, except live presence and
//     typing.
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
//   - Receiving: new_message, message_delivered, message_read and
//     message_expired events are batched into one transaction, then
//     acknowledged (ack upTo) only after the commit; a sync page is acknowledged by the next call's cursor,
//     after its commit. Duplicates are dropped by id (INSERT OR IGNORE), and
//     statuses only move forward (SYNCED < DELIVERED < READ; an EXPIRED
//     receipt marks only messages still SYNCED, and later receipts leave
//     an EXPIRED message as it is).
//   - Reconnection: exponential backoff with equal jitter (500 ms to 30 s);
//     a 1012 close (the node drains) reconnects at once to the next edge. A
//     socket silent for 2.5 heartbeats is treated as dead (half-open TCP).
//     When the socket closes, or misses a ping by a tenth of the interval
//     (half-open), every contact's presence and typing become unknown:
//     offline and not typing, last seen kept, and OnContactStatus says so;
//     when pings come again the watch is sent again and its answer
//     restores them. A 401 at the handshake asks the TokenSource once; without a
//     token the socket waits for one instead of redialling.
//   - Accounts: chats.db records its owner (the Account table: user id and
//     Config.ServerURL); Open refuses another account with ErrOtherAccount
//     unless Config.WipeOtherAccount, so one user's sync cursor never
//     acknowledges another user's queue. A database of version 2 (no
//     owner) is adopted unless it holds a message neither from nor to the
//     user opening it.
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
//     was ever put on the wire counts as maybe accepted; version 3,
//     schema_v3.sql, the Account owner and Messages.expired_at; version 4,
//     schema_v4.sql, the installation's device id). Additions to the
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
//     platform's token, as this installation's (its device id goes with
//     the call): the server alerts it of what it has not acknowledged
//     while it has no socket, with its own unread count, so a tablet is
//     alerted while the phone is in use and the phone is not; a
//     notification while the client is paused (app in the background)
//     calls Sync; in the foreground the socket delivers.
//     Push is only an alert: messages always come through sync or socket.
//   - Several devices per user: each database is one installation, with a
//     device id made at its first Open (Account.device_id, 128 random bits;
//     DeviceID) and sent with every call and socket (the Device-Id
//     header). The server keeps each installation's place in the user's
//     queue apart, so a phone and a tablet of one user each get every
//     message, receipt and read mark, and each acknowledges only what it
//     stored; a new installation gets what arrives from its first call on
//     (no history from the server). LinkedDevices lists the user's
//     installations, UnlinkDevice revokes a lost one: that installation,
//     if it still runs, gets OnAuthFailed("device_revoked") and stays
//     offline (the app signs out and starts a new database, which is a new
//     installation). A database opened for
//     another account gets a new id. Messages the user sends from another
//     installation (message_sent, sync's sentMessages) are stored as the
//     user's own, so each conversation is whole on every device; a
//     conversation read on another installation (conversation_read) is
//     marked read here, without sending the mark again.
//
// # Not covered
//
// Group chats, media and encryption at rest are out of scope, as in the
// seed.
package edgechat

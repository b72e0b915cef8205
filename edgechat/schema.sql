-- chats.db: the client's source of truth (seed, step 4, "SQLite statements").
-- One script creates every table, Users first because the others refer to it.
-- Columns beyond the seed's are client bookkeeping and are marked as such.

CREATE TABLE Users (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  avatar_url TEXT,
  last_connected_at TEXT,
  -- bookkeeping: how far I have read this contact's messages, how far the
  -- server knows it, and how far the contact received and read mine.
  read_up_to INTEGER NOT NULL DEFAULT 0,
  read_sent_up_to INTEGER NOT NULL DEFAULT 0,
  their_delivered_up_to INTEGER NOT NULL DEFAULT 0,
  their_read_up_to INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE Messages (
  id INTEGER PRIMARY KEY,
  from_user_id INTEGER NOT NULL,
  to_user_id INTEGER NOT NULL,
  content TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('SYNCED', 'DELIVERED', 'READ')),
  created_at TEXT NOT NULL,
  -- bookkeeping: the other party of the conversation, so that one index
  -- serves the conversation screen and the chat list.
  contact_id INTEGER NOT NULL,
  FOREIGN KEY (from_user_id) REFERENCES Users(id),
  FOREIGN KEY (to_user_id) REFERENCES Users(id),
  FOREIGN KEY (contact_id) REFERENCES Users(id)
);

CREATE TABLE MessageRequests (
  request_id INTEGER PRIMARY KEY,
  to_user_id INTEGER NOT NULL,
  content TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('DRAFT', 'PENDING', 'SENT', 'FAILED')),
  last_modified_at TEXT NOT NULL,
  last_sent_at TEXT,
  fail_count INTEGER NOT NULL DEFAULT 0,
  -- bookkeeping: created_at is when the user wrote it (it orders the
  -- requests; what is sent as createdAt is wire_created_at, added by
  -- schema_v2.sql); next_attempt_at (Unix ms) is when the scheduler may
  -- send it, NULL for drafts and for requests that failed for good.
  created_at TEXT NOT NULL,
  next_attempt_at INTEGER,
  -- bookkeeping: the order the user wrote them, for equal createdAt.
  seq INTEGER NOT NULL,
  FOREIGN KEY (to_user_id) REFERENCES Users(id)
);

-- Conversation screen (keyset pages by id), chat list (latest id per
-- contact) and unread counts (ids above read_up_to) all use this one.
CREATE INDEX Messages_contact_id ON Messages(contact_id, id);
CREATE INDEX Messages_to_user ON Messages(to_user_id);
CREATE INDEX Messages_from_user ON Messages(from_user_id);
-- Pending messages of a conversation, in createdAt order.
CREATE INDEX MessageRequests_to_user ON MessageRequests(to_user_id, created_at, seq);
-- The scheduler's "what is due" query.
CREATE INDEX MessageRequests_due ON MessageRequests(next_attempt_at) WHERE next_attempt_at IS NOT NULL;

-- The sync cursor and other single values.
CREATE TABLE SyncState (
  key TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;

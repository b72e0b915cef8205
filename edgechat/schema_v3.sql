-- chats.db version 3: the database records whose it is, and which of my
-- messages the server dropped undelivered.
--
-- Account holds one row: the user this database belongs to and the server
-- (Config.ServerURL, normalised) it syncs with. Open refuses another
-- identity (ErrOtherAccount) unless told to wipe the database first, so
-- that one user's sync cursor never acknowledges another user's queue.
CREATE TABLE Account (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  user_id INTEGER NOT NULL,
  server TEXT NOT NULL
);
-- expired_at: the server dropped this message of mine undelivered at the
-- end of its retention period (an EXPIRED receipt); shown as EXPIRED.
ALTER TABLE Messages ADD COLUMN expired_at TEXT;

-- chats.db version 2: the server forgets idempotency keys (409
-- request_expired), so a request's key can be replaced, and the client
-- tracks whether an attempt may have been accepted.
--
-- request_id stays the request's local handle (Message.RequestID, Request,
-- Resend, DeleteRequest), and created_at the time it was written, which
-- orders it among the conversation's requests (with seq). What goes on the
-- wire is wire_request_id and wire_created_at: equal to them until the
-- request is re-stamped (a fresh key, createdAt = now).
ALTER TABLE MessageRequests ADD COLUMN wire_request_id INTEGER NOT NULL DEFAULT 0;
ALTER TABLE MessageRequests ADD COLUMN wire_created_at TEXT NOT NULL DEFAULT '';
-- maybe_accepted: an attempt with the current key had an unknown outcome
-- (network error, timeout, 5xx, left SENT by a crash), so the server may
-- hold the message. expired: the server answered 409 request_expired to
-- such a request; it is FAILED for good, and Resend re-stamps it.
ALTER TABLE MessageRequests ADD COLUMN maybe_accepted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE MessageRequests ADD COLUMN expired INTEGER NOT NULL DEFAULT 0;

-- Requests of version 1 kept no outcomes: any that was ever put on the wire
-- may have been accepted. That is every SENT request, every FAILED one with
-- fail_count > 0, and a PENDING one that Resend queued again (Resend resets
-- fail_count but not last_sent_at).
UPDATE MessageRequests SET wire_request_id = request_id, wire_created_at = created_at,
  maybe_accepted = (last_sent_at IS NOT NULL OR status = 'SENT' OR fail_count > 0);

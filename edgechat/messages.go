package edgechat

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/edgenode/edgenode/wire"
)

func formatTime(t time.Time) string { return wire.FormatTime(t) }

// newRequestID is a random id in [1, 2^53-1]: unique per device without
// coordination, and a valid idempotency key for the server.
func newRequestID() int64 {
	var b [8]byte
	rand.Read(b[:])
	return int64(binary.LittleEndian.Uint64(b[:])%wire.MaxID) + 1
}

// Send stores a message to toUserID as a PENDING request and returns it at
// once, as the conversation shows it; the scheduler delivers it in the
// background (or Flush does). The returned Message has RequestID set and
// MessageID 0.
func (c *Client) Send(toUserID int64, content string) (*Message, error) {
	return c.store1(context.Background(), toUserID, content, RequestPending)
}

// SaveDraft stores a message that is not to be sent yet; SendDraft queues it.
func (c *Client) SaveDraft(toUserID int64, content string) (*Message, error) {
	return c.store1(context.Background(), toUserID, content, RequestDraft)
}

func (c *Client) store1(ctx context.Context, to int64, content, status string) (*Message, error) {
	if strings.TrimSpace(content) == "" {
		return nil, ErrEmptyContent
	}
	if to <= 0 || to > wire.MaxID {
		return nil, fmt.Errorf("client: invalid user id %d", to)
	}
	now := c.now()
	m := &Message{FromUserID: c.me, ToUserID: to, Content: content, Status: StatusPending, CreatedAt: formatTime(now), RequestID: newRequestID()}
	var next any
	if status == RequestPending {
		next = now.UnixMilli()
	}
	err := c.store.write(ctx, func(tx *sql.Tx) error {
		if err := ensureUser(ctx, tx, to); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO MessageRequests(request_id, to_user_id, content, status, last_modified_at, fail_count, created_at, next_attempt_at, seq,
				wire_request_id, wire_created_at)
			VALUES (?, ?, ?, ?, ?, 0, ?, ?, (SELECT coalesce(max(seq), 0) + 1 FROM MessageRequests), ?, ?)`,
			m.RequestID, to, content, status, m.CreatedAt, m.CreatedAt, next, m.RequestID, m.CreatedAt)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("client: store message: %w", err)
	}
	c.notify.change(Change{Kind: ChangeMessageAdded, ContactID: to, RequestID: m.RequestID, Status: m.Status})
	if status == RequestPending {
		c.wake()
	}
	return m, nil
}

// SendDraft queues a draft for sending.
func (c *Client) SendDraft(requestID int64) error {
	return c.requeue(requestID, RequestDraft)
}

// Resend queues a message that failed for good again, with a fresh retry
// budget.
//
// A request that is not Expired keeps its idempotency key (wire requestId
// and createdAt), so that the server answers with the original message if
// an earlier attempt did reach it and the server still remembers it.
//
// An Expired request is re-stamped: a fresh key and createdAt now, which
// the server accepts as a new message. An earlier attempt may have been
// accepted, so the recipient may then see the message twice; the app
// should ask the user before calling Resend on it. Its RequestID (the
// local handle) does not change.
func (c *Client) Resend(requestID int64) error {
	return c.requeue(requestID, RequestFailed)
}

func (c *Client) requeue(requestID int64, from string) error {
	ctx := context.Background()
	var to int64
	err := c.store.write(ctx, func(tx *sql.Tx) error {
		// SET expressions read the row as it was before the update.
		err := tx.QueryRowContext(ctx, `UPDATE MessageRequests SET status = 'PENDING', fail_count = 0, next_attempt_at = ?, last_modified_at = ?,
				wire_request_id = CASE WHEN expired THEN ? ELSE wire_request_id END,
				wire_created_at = CASE WHEN expired THEN ? ELSE wire_created_at END,
				maybe_accepted = CASE WHEN expired THEN 0 ELSE maybe_accepted END,
				expired = 0
			WHERE request_id = ? AND status = ? RETURNING to_user_id`,
			c.now().UnixMilli(), c.nowString(), newRequestID(), c.nowString(), requestID, from).Scan(&to)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotRetryable
		}
		return err
	})
	if err != nil {
		return err
	}
	c.notify.change(Change{Kind: ChangeMessageStatus, ContactID: to, RequestID: requestID, Status: StatusPending})
	c.wake()
	return nil
}

// DeleteRequest removes a message the server has not accepted (a draft, or
// a failed one the user gives up on). A request in flight may still reach
// the recipient.
func (c *Client) DeleteRequest(requestID int64) error {
	ctx := context.Background()
	var to int64
	err := c.store.write(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `DELETE FROM MessageRequests WHERE request_id = ? RETURNING to_user_id`, requestID).Scan(&to)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		return err
	})
	if err != nil {
		return err
	}
	c.notify.change(Change{Kind: ChangeMessageRemoved, ContactID: to, RequestID: requestID})
	return nil
}

// History returns a page of the conversation with contactID, oldest first,
// from the local database only (it works offline). beforeID 0 gives the
// newest page: the last limit accepted messages followed by every request
// not accepted yet; pass the page's NextBefore to get the page before it.
// limit <= 0 means 50.
func (c *Client) History(contactID, beforeID int64, limit int) (*MessageList, error) {
	return c.history(context.Background(), contactID, beforeID, limit)
}

func (c *Client) history(ctx context.Context, contact, before int64, limit int) (*MessageList, error) {
	if limit <= 0 {
		limit = 50
	}
	if before <= 0 {
		before = wire.MaxID + 1
	}
	rows, err := c.store.db.QueryContext(ctx, `SELECT id, from_user_id, to_user_id, content, `+messageStatus("")+`, created_at
		FROM Messages WHERE contact_id = ? AND id < ? ORDER BY id DESC LIMIT ?`, contact, before, limit+1)
	if err != nil {
		return nil, fmt.Errorf("client: history: %w", err)
	}
	out := &MessageList{items: make([]Message, 0, limit)}
	for rows.Next() {
		var m Message
		if err := rows.Scan(&m.MessageID, &m.FromUserID, &m.ToUserID, &m.Content, &m.Status, &m.CreatedAt); err != nil {
			rows.Close()
			return nil, err
		}
		out.items = append(out.items, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out.items) > limit {
		out.items, out.HasMore = out.items[:limit], true
	}
	slices.Reverse(out.items)
	if len(out.items) > 0 {
		out.NextBefore = out.items[0].MessageID
	}
	if before > wire.MaxID {
		reqs, err := c.requests(ctx, contact)
		if err != nil {
			return nil, err
		}
		out.items = append(out.items, reqs...)
	}
	return out, nil
}

// requests are the conversation's requests not accepted yet, as Messages,
// by createdAt (seed: pending messages come last, by createdAt). CreatedAt
// is when the request was written, which a re-stamp does not change.
func (c *Client) requests(ctx context.Context, contact int64) ([]Message, error) {
	rows, err := c.store.db.QueryContext(ctx, `SELECT request_id, content, status, created_at, fail_count, next_attempt_at IS NULL, expired
		FROM MessageRequests WHERE to_user_id = ? ORDER BY created_at, seq`, contact)
	if err != nil {
		return nil, fmt.Errorf("client: pending: %w", err)
	}
	defer rows.Close()
	var out []Message
	for rows.Next() {
		m := Message{FromUserID: c.me, ToUserID: contact}
		var status string
		var stopped bool
		if err := rows.Scan(&m.RequestID, &m.Content, &status, &m.CreatedAt, &m.FailCount, &stopped, &m.Expired); err != nil {
			return nil, err
		}
		m.Status = viewStatus(status, stopped)
		out = append(out, m)
	}
	return out, rows.Err()
}

// messageStatus is the SQL expression of a Messages row's status as the
// UI sees it: EXPIRED once the server dropped it undelivered (expired_at,
// set by an EXPIRED receipt), else the status column. alias is the table's
// alias ("" for none).
func messageStatus(alias string) string {
	if alias != "" {
		alias += "."
	}
	return "CASE WHEN " + alias + "expired_at IS NOT NULL THEN '" + StatusExpired + "' ELSE " + alias + "status END"
}

// viewStatus maps a request's status to the Message status the UI shows:
// FAILED only when no retry is scheduled (the app offers resend and
// delete); a request that waits for its next retry is still PENDING.
func viewStatus(reqStatus string, stopped bool) string {
	if reqStatus == RequestFailed && stopped {
		return StatusFailed
	}
	return StatusPending
}

// MessageRequest is a message the server has not accepted yet, with the
// scheduler's bookkeeping (seed, "Sending messages").
type MessageRequest struct {
	// RequestID is the request's local handle, for Request, Resend and
	// DeleteRequest; it never changes.
	RequestID int64  `json:"requestId"`
	ToUserID  int64  `json:"toUserId"`
	Content   string `json:"content"`
	Status    string `json:"status"`
	// CreatedAt is when the request was written.
	CreatedAt      string `json:"createdAt"`
	LastModifiedAt string `json:"lastModifiedAt"`
	LastSentAt     string `json:"lastSentAt"`
	FailCount      int    `json:"failCount"`
	// WireRequestID and WireCreatedAt are the idempotency key sent as
	// requestId and createdAt: RequestID and CreatedAt until the request
	// is re-stamped after a 409 request_expired.
	WireRequestID int64  `json:"wireRequestId"`
	WireCreatedAt string `json:"wireCreatedAt"`
	// MaybeAccepted: an attempt with the current key had an unknown
	// outcome (no answer, a timeout, a 5xx, a crash while SENT), so the
	// server may hold the message.
	MaybeAccepted bool `json:"maybeAccepted"`
	// Expired: FAILED for good because the server answered 409
	// request_expired to a MaybeAccepted request. It may have been
	// delivered already; Resend re-stamps it (see Resend).
	Expired bool `json:"expired"`
}

// Request returns the stored request with that id.
func (c *Client) Request(requestID int64) (*MessageRequest, error) {
	var r MessageRequest
	var sent sql.NullString
	err := c.store.db.QueryRow(`SELECT request_id, to_user_id, content, status, created_at, last_modified_at, last_sent_at, fail_count,
			wire_request_id, wire_created_at, maybe_accepted, expired
		FROM MessageRequests WHERE request_id = ?`, requestID).Scan(&r.RequestID, &r.ToUserID, &r.Content, &r.Status, &r.CreatedAt, &r.LastModifiedAt, &sent, &r.FailCount,
		&r.WireRequestID, &r.WireCreatedAt, &r.MaybeAccepted, &r.Expired)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	r.LastSentAt = sent.String
	return &r, nil
}

// MarkRead marks every message received from contactID as read, locally at
// once, and sends the READ receipt: in the background on a started client,
// before returning otherwise; a mark the server did not get is sent again
// by the scheduler, or by the next Flush.
func (c *Client) MarkRead(contactID int64) error {
	ctx := context.Background()
	changed := false
	err := c.store.write(ctx, func(tx *sql.Tx) error {
		var upTo sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT max(id) FROM Messages WHERE contact_id = ? AND from_user_id = ?`, contactID, contactID).Scan(&upTo); err != nil {
			return err
		}
		if !upTo.Valid {
			return nil
		}
		res, err := tx.ExecContext(ctx, `UPDATE Users SET read_up_to = ? WHERE id = ? AND read_up_to < ?`, upTo.Int64, contactID, upTo.Int64)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			changed = true
		}
		_, err = tx.ExecContext(ctx, `UPDATE Messages SET status = 'READ' WHERE contact_id = ? AND from_user_id = ? AND id <= ? AND status != 'READ'`, contactID, contactID, upTo.Int64)
		return err
	})
	if err != nil {
		return fmt.Errorf("client: mark read: %w", err)
	}
	if changed {
		c.notify.conversation(contactID)
	}
	c.mu.Lock()
	started := c.started
	c.mu.Unlock()
	if started {
		// The scheduler sends it off the caller's thread, and again
		// until the server has it.
		c.wake()
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(c.cfg.SendTimeoutMillis)*time.Millisecond)
	defer cancel()
	if err := c.flushReadMarks(ctx); err != nil {
		c.log.Debug("read mark not sent yet", "contact", contactID, "err", err)
	}
	return nil
}

// flushReadMarks sends every READ mark the server does not have yet.
func (c *Client) flushReadMarks(ctx context.Context) error {
	rows, err := c.store.db.QueryContext(ctx, `SELECT id, read_up_to FROM Users WHERE read_up_to > read_sent_up_to`)
	if err != nil {
		return err
	}
	type mark struct{ contact, upTo int64 }
	var marks []mark
	for rows.Next() {
		var m mark
		if err := rows.Scan(&m.contact, &m.upTo); err != nil {
			rows.Close()
			return err
		}
		marks = append(marks, m)
	}
	rows.Close()
	for _, m := range marks {
		if err := c.remote.markRead(ctx, m.contact, m.upTo); err != nil {
			return err
		}
		err := c.store.write(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `UPDATE Users SET read_sent_up_to = max(read_sent_up_to, ?) WHERE id = ?`, m.upTo, m.contact)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// applied is what a batch of server events changed.
type applied struct {
	// changes are the changes to tell the listener once the batch is
	// committed (notifyApplied), at most maxQueuedChanges of them.
	changes []Change
	maxID   int64
}

// add records a change of the batch.
func (a *applied) add(ch Change) {
	a.changes = append(a.changes, ch)
	if len(a.changes) > maxQueuedChanges {
		a.changes = collapse(a.changes)
	}
}

// notifyApplied tells the listener what a committed batch of server
// events (applyEvents) changed. Call it only after the commit.
func (c *Client) notifyApplied(a *applied) {
	c.notify.change(a.changes...)
}

// applyEvents stores messages and receipts from the server (sync page or
// socket frames) and advances the cursor, in the caller's transaction.
// Duplicates are dropped by id; statuses only move forward.
func (c *Client) applyEvents(ctx context.Context, tx *sql.Tx, msgs []wire.Message, receipts []wire.Receipt, cursor int64, a *applied) error {
	return c.applyAll(ctx, tx, serverEvents{msgs: msgs, receipts: receipts}, cursor, a)
}

// serverEvents are what a sync page or a batch of socket frames holds.
// The user's other devices add sent (messages I sent from another device)
// and reads (conversations I read on another device), each with its
// event id on the socket (0 from a sync page, whose cursor covers them).
type serverEvents struct {
	msgs     []wire.Message
	receipts []wire.Receipt
	sent     []wire.Message
	sentIDs  []int64
	reads    []wire.ReadFrame
	readIDs  []int64
}

func (e *serverEvents) empty() bool {
	return len(e.msgs) == 0 && len(e.receipts) == 0 && len(e.sent) == 0 && len(e.reads) == 0
}

// applyAll is applyEvents with the events of the user's other devices.
func (c *Client) applyAll(ctx context.Context, tx *sql.Tx, ev serverEvents, cursor int64, a *applied) error {
	msgs, receipts := ev.msgs, ev.receipts
	for i := range ev.sent {
		if _, _, err := c.insertMessage(ctx, tx, &ev.sent[i], a); err != nil {
			return err
		}
	}
	for i := range ev.reads {
		if err := c.applyReadSync(ctx, tx, &ev.reads[i], a); err != nil {
			return err
		}
	}
	for _, id := range ev.sentIDs {
		a.maxID = max(a.maxID, id)
	}
	for _, id := range ev.readIDs {
		a.maxID = max(a.maxID, id)
	}
	for i := range msgs {
		m := &msgs[i]
		if _, _, err := c.insertMessage(ctx, tx, m, a); err != nil {
			return err
		}
		a.maxID = max(a.maxID, m.MessageID)
	}
	for i := range receipts {
		r := &receipts[i]
		if err := c.applyReceipt(ctx, tx, r, a); err != nil {
			return err
		}
		a.maxID = max(a.maxID, r.ID)
	}
	cursor = max(cursor, a.maxID)
	if cursor > 0 {
		return setStateMax(ctx, tx, stateCursor, cursor)
	}
	return nil
}

// insertMessage stores a message from the server (received, or the answer
// to my request) unless it is stored already, and records a
// ChangeMessageAdded in a when it is new. It returns the status it stored
// and whether it stored it (false: the message was there already).
func (c *Client) insertMessage(ctx context.Context, tx *sql.Tx, m *wire.Message, a *applied) (string, bool, error) {
	contact := m.FromUserID
	if contact == c.me {
		contact = m.ToUserID
	}
	if err := ensureUser(ctx, tx, m.FromUserID); err != nil {
		return "", false, err
	}
	if err := ensureUser(ctx, tx, m.ToUserID); err != nil {
		return "", false, err
	}
	status := m.Status
	if m.FromUserID == c.me {
		// Receipts may have overtaken the 201 that carries the message.
		var delivered, read int64
		if err := tx.QueryRowContext(ctx, `SELECT their_delivered_up_to, their_read_up_to FROM Users WHERE id = ?`, contact).Scan(&delivered, &read); err != nil {
			return "", false, err
		}
		switch {
		case m.MessageID <= read:
			status = StatusRead
		case m.MessageID <= delivered && status == StatusSynced:
			status = StatusDelivered
		}
	} else {
		var readUpTo int64
		if err := tx.QueryRowContext(ctx, `SELECT read_up_to FROM Users WHERE id = ?`, contact).Scan(&readUpTo); err != nil {
			return "", false, err
		}
		if m.MessageID <= readUpTo {
			status = StatusRead
		}
	}
	if status != StatusSynced && status != StatusDelivered && status != StatusRead {
		status = StatusSynced
	}
	res, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO Messages(id, from_user_id, to_user_id, content, status, created_at, contact_id)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, m.MessageID, m.FromUserID, m.ToUserID, m.Content, status, m.CreatedAt, contact)
	if err != nil {
		return "", false, fmt.Errorf("client: store message %d: %w", m.MessageID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return "", false, nil // a duplicate
	}
	a.add(Change{Kind: ChangeMessageAdded, ContactID: contact, MessageID: m.MessageID, Status: status})
	return status, true, nil
}

// applyReadSync applies a read mark I made on another device: the
// conversation is read here too, and the mark needs no sending from here
// (that device sent it).
func (c *Client) applyReadSync(ctx context.Context, tx *sql.Tx, r *wire.ReadFrame, a *applied) error {
	if err := ensureUser(ctx, tx, r.UserID); err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, `UPDATE Users SET read_up_to = max(read_up_to, ?1), read_sent_up_to = max(read_sent_up_to, ?1) WHERE id = ?2 AND (read_up_to < ?1 OR read_sent_up_to < ?1)`, r.UpToMessageID, r.UserID)
	if err != nil {
		return fmt.Errorf("client: read on another device: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE Messages SET status = 'READ' WHERE contact_id = ?1 AND from_user_id = ?1 AND id <= ?2 AND status != 'READ'`, r.UserID, r.UpToMessageID); err != nil {
		return err
	}
	a.add(Change{Kind: ChangeConversation, ContactID: r.UserID})
	return nil
}

// applyReceipt applies a receipt for messages of mine: DELIVERED and READ
// move statuses forward (never past EXPIRED: the recipient never got an
// expired message, whatever range a read mark covers), EXPIRED marks
// messages the server dropped undelivered (only SYNCED ones: a DELIVERED or
// READ one did reach the recipient). It records a ChangeMessageStatus in a
// for each message whose status changed.
func (c *Client) applyReceipt(ctx context.Context, tx *sql.Tx, r *wire.Receipt, a *applied) error {
	by := r.ByUserID
	if err := ensureUser(ctx, tx, by); err != nil {
		return err
	}
	idList := func() (string, []any) {
		args := []any{by, c.me}
		for _, id := range r.MessageIDs {
			args = append(args, id)
		}
		return strings.Repeat(",?", len(r.MessageIDs))[1:], args
	}
	var rows *sql.Rows
	var err error
	switch r.Status {
	case wire.StatusDelivered:
		if len(r.MessageIDs) == 0 {
			return nil
		}
		// The recipient acknowledges its queue in order, so every earlier
		// message of mine to it was delivered too.
		if _, err = tx.ExecContext(ctx, `UPDATE Users SET their_delivered_up_to = max(their_delivered_up_to, ?) WHERE id = ?`, slices.Max(r.MessageIDs), by); err != nil {
			return err
		}
		ph, args := idList()
		rows, err = tx.QueryContext(ctx, `UPDATE Messages SET status = 'DELIVERED'
			WHERE contact_id = ? AND from_user_id = ? AND status = 'SYNCED' AND expired_at IS NULL AND id IN (`+ph+`) RETURNING id`, args...)
	case wire.StatusRead:
		if _, err = tx.ExecContext(ctx, `UPDATE Users SET their_read_up_to = max(their_read_up_to, ?) WHERE id = ?`, r.UpToMessageID, by); err != nil {
			return err
		}
		rows, err = tx.QueryContext(ctx, `UPDATE Messages SET status = 'READ'
			WHERE contact_id = ? AND from_user_id = ? AND id <= ? AND status != 'READ' AND expired_at IS NULL RETURNING id`, by, c.me, r.UpToMessageID)
	case StatusExpired:
		if len(r.MessageIDs) == 0 {
			return nil
		}
		at := r.At
		if at == "" {
			at = c.nowString()
		}
		ph, args := idList()
		rows, err = tx.QueryContext(ctx, `UPDATE Messages SET expired_at = ?
			WHERE contact_id = ? AND from_user_id = ? AND status = 'SYNCED' AND expired_at IS NULL AND id IN (`+ph+`) RETURNING id`, append([]any{at}, args...)...)
	default:
		return nil
	}
	if err != nil {
		return fmt.Errorf("client: receipt %d: %w", r.ID, err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return fmt.Errorf("client: receipt %d: %w", r.ID, err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("client: receipt %d: %w", r.ID, err)
	}
	// RETURNING gives the rows in no promised order: report them by id.
	slices.Sort(ids)
	for _, id := range ids {
		a.add(Change{Kind: ChangeMessageStatus, ContactID: by, MessageID: id, Status: r.Status})
	}
	return nil
}

// accept replaces a request (by its local id; the caller matched the
// answer's fromMessageRequestId to the key it sent) by the message the
// server made of it, in one transaction (seed: no SUCCEEDED status; the
// request becomes a Message).
func (c *Client) accept(ctx context.Context, requestID int64, resp wire.NewMessageResponse) error {
	var ch Change
	err := c.store.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM MessageRequests WHERE request_id = ?`, requestID)
		if err != nil {
			return err
		}
		m := resp.Message
		if m.Status == "" {
			m.Status = StatusSynced
		}
		var a applied
		status, inserted, err := c.insertMessage(ctx, tx, &m, &a)
		if err != nil {
			return err
		}
		if !inserted {
			// Stored already: the status shown is the stored one.
			if err := tx.QueryRowContext(ctx, `SELECT `+messageStatus("")+` FROM Messages WHERE id = ?`, m.MessageID).Scan(&status); err != nil {
				return err
			}
		}
		ch = Change{Kind: ChangeMessageAccepted, ContactID: m.ToUserID, MessageID: m.MessageID, RequestID: requestID, Status: status}
		if n, _ := res.RowsAffected(); n == 0 {
			// DeleteRequest removed it while it was on the wire (and the
			// listener was told): the message is new to the screen.
			ch.Kind, ch.RequestID = ChangeMessageAdded, 0
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.notify.change(ch)
	return nil
}

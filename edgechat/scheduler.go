package edgechat

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/edgenode/edgenode/wire"
)

// The Messages Scheduler, the Pending Messages Provider and the Messages
// Timeout Controller of the seed's Figure 12.

// due is a request the scheduler may send.
type due struct {
	id        int64 // request_id: the local handle
	key       int64 // wire_request_id: the idempotency key, sent as requestId
	to        int64
	content   string
	createdAt string // wire_created_at: sent as createdAt with the key
	fails     int
	nextAt    int64
}

// pendingRequests is the Pending Messages Provider: every request with a
// scheduled attempt, in the order they were written (created_at, then seq;
// a re-stamp changes neither, only the key and createdAt sent).
func (c *Client) pendingRequests(ctx context.Context) ([]due, error) {
	rows, err := c.store.db.QueryContext(ctx, `SELECT request_id, wire_request_id, to_user_id, content, wire_created_at, fail_count, next_attempt_at
		FROM MessageRequests WHERE next_attempt_at IS NOT NULL ORDER BY created_at, seq`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []due
	for rows.Next() {
		var d due
		if err := rows.Scan(&d.id, &d.key, &d.to, &d.content, &d.createdAt, &d.fails, &d.nextAt); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// expireSent is the timeout controller: a request SENT longer than the
// send timeout ago got no answer (the process died, or the call hangs) and
// becomes FAILED, so that it is retried with the same requestId. The
// server may have accepted it, so it is maybe-accepted from now on.
func (c *Client) expireSent(ctx context.Context) (int, error) {
	cutoff := c.now().Add(-time.Duration(c.cfg.SendTimeoutMillis) * time.Millisecond)
	var chs []Change
	err := c.store.write(ctx, func(tx *sql.Tx) error {
		chs = chs[:0]
		rows, err := tx.QueryContext(ctx, `SELECT request_id, to_user_id, fail_count FROM MessageRequests WHERE status = 'SENT' AND last_sent_at < ?`, formatTime(cutoff))
		if err != nil {
			return err
		}
		type r struct {
			id, to int64
			fails  int
		}
		var rs []r
		for rows.Next() {
			var x r
			if err := rows.Scan(&x.id, &x.to, &x.fails); err != nil {
				rows.Close()
				return err
			}
			rs = append(rs, x)
		}
		rows.Close()
		for _, x := range rs {
			ch, err := c.markFailed(ctx, tx, x.id, x.fails+1, false, 0, true)
			if err != nil {
				return err
			}
			if ch != nil {
				chs = append(chs, *ch)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	c.notify.change(chs...)
	return len(chs), nil
}

// markFailed records a failed attempt: FAILED with a retry scheduled after
// the backoff, or FAILED for good (no next attempt) when the attempts are
// used up or retrying cannot help. unknown says that the server may have
// accepted the attempt (no answer, a timeout, a 5xx): the request is then
// maybe-accepted for as long as it keeps its key. It returns the change
// the conversation shows (PENDING while a retry is scheduled, FAILED when
// none is), nil when the request is gone (deleted meanwhile).
func (c *Client) markFailed(ctx context.Context, tx *sql.Tx, id int64, fails int, permanent bool, atLeast time.Duration, unknown bool) (*Change, error) {
	var next any
	if !permanent && fails < c.cfg.MaxAttempts {
		d := backoff(fails, time.Duration(c.cfg.RetryBaseMillis)*time.Millisecond, time.Duration(c.cfg.RetryMaxMillis)*time.Millisecond)
		d = max(d, atLeast)
		next = c.now().Add(d).UnixMilli()
	}
	var to int64
	err := tx.QueryRowContext(ctx, `UPDATE MessageRequests SET status = 'FAILED', fail_count = ?, next_attempt_at = ?,
		maybe_accepted = maybe_accepted OR ?, last_modified_at = ? WHERE request_id = ? RETURNING to_user_id`,
		fails, next, unknown, c.nowString(), id).Scan(&to)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &Change{Kind: ChangeMessageStatus, ContactID: to, RequestID: id, Status: viewStatus(RequestFailed, next == nil)}, nil
}

// attempt sends one request and records the outcome. It returns the send
// error, nil when the server accepted the message.
//
// A 409 request_expired to a request that no attempt can have got into
// the server re-stamps it (fresh key, createdAt now) and sends it again at
// once, in this call, so that it keeps its place before the recipient's
// later requests. That happens once per call: a fresh key refused too (a
// clock far off) counts as a failed attempt and waits for the backoff.
func (c *Client) attempt(ctx context.Context, d due) error {
	wctx := context.WithoutCancel(ctx)
	for restamped := false; ; restamped = true {
		now := c.nowString()
		err := c.store.write(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `UPDATE MessageRequests SET status = 'SENT', last_sent_at = ?, last_modified_at = ?, next_attempt_at = NULL WHERE request_id = ?`, now, now, d.id)
			return err
		})
		if err != nil {
			return err
		}
		sctx, cancel := context.WithTimeout(ctx, time.Duration(c.cfg.SendTimeoutMillis)*time.Millisecond)
		resp, sendErr := c.remote.postMessage(sctx, wire.NewMessageRequest{RequestID: d.key, ToUserID: d.to, Content: d.content, CreatedAt: d.createdAt})
		cancel()
		if sendErr == nil && resp.FromMessageRequestID != d.key {
			// Not the answer to the key sent: the outcome is unknown, and
			// a retry with the same key gets the server's answer to it.
			sendErr = fmt.Errorf("client: answer for requestId %d to requestId %d", resp.FromMessageRequestID, d.key)
		}
		if sendErr == nil {
			return c.accept(wctx, d.id, resp)
		}
		if ctx.Err() != nil {
			// Shutting down: leave it SENT, as a crash would; the timeout
			// controller makes it FAILED (maybe accepted) later and it is
			// retried with the same requestId.
			return sendErr
		}
		if ErrorCode(sendErr) == wire.CodeUnauthenticated {
			// The token was refused and no fresh one came (remote.do asked
			// the TokenSource): the request is not at fault and a 401
			// stored nothing. It waits, due, without spending an attempt,
			// for SetToken or the TokenSource.
			err := c.store.write(wctx, func(tx *sql.Tx) error {
				_, err := tx.ExecContext(wctx, `UPDATE MessageRequests SET status = 'PENDING', next_attempt_at = ?, last_modified_at = ? WHERE request_id = ? AND status = 'SENT'`,
					c.now().UnixMilli(), c.nowString(), d.id)
				return err
			})
			if err != nil {
				return err
			}
			return sendErr
		}
		var next *due
		var ch *Change
		err = c.store.write(wctx, func(tx *sql.Tx) error {
			var err error
			next, ch, err = c.recordFailure(wctx, tx, d, sendErr, !restamped)
			return err
		})
		if err != nil {
			return err
		}
		if ch != nil {
			c.notify.change(*ch)
		}
		if next == nil {
			return sendErr
		}
		c.log.Debug("request expired, re-stamped", "requestId", d.id, "oldKey", d.key, "key", next.key)
		d = *next
	}
}

// recordFailure records an attempt that the server did not accept, in the
// caller's transaction. It returns the request re-stamped and to be sent at
// once, or nil, and the change to tell the listener after the commit (nil
// when the request is gone).
func (c *Client) recordFailure(ctx context.Context, tx *sql.Tx, d due, sendErr error, mayRestamp bool) (*due, *Change, error) {
	ae, isAPI := isAPIError(sendErr)
	if !isAPI || !ae.expired() || !mayRestamp {
		// No answer, or a 5xx: the server may have stored it. An answer
		// refusing it (4xx) proves it did not.
		permanent, unknown := false, true
		var wait time.Duration
		if isAPI {
			permanent, unknown, wait = ae.permanent(), !ae.storedNothing(), ae.RetryAfter
		}
		c.log.Debug("send failed", "requestId", d.id, "key", d.key, "fails", d.fails+1, "err", sendErr)
		ch, err := c.markFailed(ctx, tx, d.id, d.fails+1, permanent, wait, unknown)
		return nil, ch, err
	}
	var maybe bool
	err := tx.QueryRowContext(ctx, `SELECT maybe_accepted FROM MessageRequests WHERE request_id = ? AND wire_request_id = ?`, d.id, d.key).Scan(&maybe)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, nil // deleted (or re-stamped by Resend) meanwhile
	}
	if err != nil {
		return nil, nil, err
	}
	ch := &Change{Kind: ChangeMessageStatus, ContactID: d.to, RequestID: d.id}
	if maybe {
		// An earlier attempt may have been accepted and the server can no
		// longer tell: sending it under any key could show it twice. FAILED
		// for good, expired; the app asks the user before a Resend.
		c.log.Debug("request expired, may have been accepted", "requestId", d.id, "key", d.key)
		_, err := tx.ExecContext(ctx, `UPDATE MessageRequests SET status = 'FAILED', fail_count = ?, next_attempt_at = NULL, expired = 1, last_modified_at = ?
			WHERE request_id = ?`, d.fails+1, c.nowString(), d.id)
		if err != nil {
			return nil, nil, err
		}
		ch.Status = StatusFailed
		return nil, ch, nil
	}
	// Nothing of it can be on the server: a fresh key cannot make a copy.
	// It stays PENDING (due now, should this process die before the send),
	// in its place: the order is created_at and seq, which do not change.
	nd := d
	nd.key, nd.createdAt = newRequestID(), c.nowString()
	_, err = tx.ExecContext(ctx, `UPDATE MessageRequests SET wire_request_id = ?, wire_created_at = ?, status = 'PENDING', next_attempt_at = ?,
		maybe_accepted = 0, expired = 0, last_modified_at = ? WHERE request_id = ?`, nd.key, nd.createdAt, c.now().UnixMilli(), nd.createdAt, d.id)
	if err != nil {
		return nil, nil, err
	}
	ch.Status = StatusPending
	return &nd, ch, nil
}

// errWaitingForToken: the token was refused and no new one came; nothing
// is sent until SetToken or the TokenSource gives one.
var errWaitingForToken = &Error{wire.CodeUnauthenticated, "waiting for a token the server accepts (SetToken, or the TokenSource)"}

// sendDue sends every request whose time has come. Requests to one
// recipient go one at a time in the order they were written, and a
// recipient whose oldest request waits for a retry holds the later ones
// back, so that the server assigns ids in the order the user typed. With
// ignoreBackoff (Flush) every scheduled request is due, and the first
// network failure ends the pass.
func (c *Client) sendDue(ctx context.Context, ignoreBackoff bool) error {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	if _, failed := c.auth.current(); failed {
		return errWaitingForToken
	}
	reqs, err := c.pendingRequests(ctx)
	if err != nil {
		return err
	}
	held := map[int64]bool{}
	var firstErr error
	for _, d := range reqs {
		if held[d.to] {
			continue
		}
		if !ignoreBackoff && d.nextAt > c.now().UnixMilli() {
			held[d.to] = true
			continue
		}
		if err := c.attempt(ctx, d); err != nil {
			held[d.to] = true
			if firstErr == nil {
				firstErr = err
			}
			if ctx.Err() != nil || ErrorCode(err) == wire.CodeUnauthenticated {
				return err // shutting down, or every send would be refused
			}
			if _, isAPI := isAPIError(err); !isAPI && ignoreBackoff {
				return err // unreachable: no point trying the others now
			}
		}
	}
	return firstErr
}

// nextDue is when the scheduler next has work: the earliest retry time of
// the oldest request of each recipient (zero time when nothing is queued).
func (c *Client) nextDue(ctx context.Context) (time.Time, error) {
	reqs, err := c.pendingRequests(ctx)
	if err != nil {
		return time.Time{}, err
	}
	seen := map[int64]bool{}
	var next time.Time
	for _, d := range reqs {
		if seen[d.to] {
			continue
		}
		seen[d.to] = true
		if at := time.UnixMilli(d.nextAt); next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next, nil
}

// Flush tries now to send every queued message (ignoring retry delays) and
// the READ marks the server does not have, within timeoutMillis. It is for
// short-lived programs; a started client does this in the background. It
// returns the first error; messages that could not be sent stay queued.
func (c *Client) Flush(timeoutMillis int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(timeoutMillis)*time.Millisecond)
	defer cancel()
	return c.FlushContext(ctx)
}

// FlushContext is Flush with a context (Go only).
func (c *Client) FlushContext(ctx context.Context) error {
	if _, err := c.expireSent(ctx); err != nil {
		return err
	}
	err := c.sendDue(ctx, true)
	if rerr := c.flushReadMarks(ctx); err == nil {
		err = rerr
	}
	return err
}

// PendingCount is the number of messages not accepted by the server yet
// (drafts excluded), failed ones included.
func (c *Client) PendingCount() (int, error) {
	var n int
	err := c.store.db.QueryRow(`SELECT count(*) FROM MessageRequests WHERE status != 'DRAFT'`).Scan(&n)
	return n, err
}

// retryNow makes every retry scheduled for later due now: the network came
// back, so waiting out the backoff only delays the messages.
func (c *Client) retryNow(ctx context.Context) error {
	return c.store.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE MessageRequests SET next_attempt_at = ? WHERE next_attempt_at > ?`, c.now().UnixMilli(), c.now().UnixMilli())
		return err
	})
}

// schedulerLoop is the Messages Scheduler: it sends what is due, runs the
// timeout controller and resends READ marks, then sleeps until the next
// retry is due or something is queued.
func (c *Client) schedulerLoop(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	readRetry := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-c.kick:
		}
		// No token the server accepts: nothing can be sent until one
		// comes (SetToken, the TokenSource), so wait for it.
		if changed := c.auth.waitChange(); func() bool { _, failed := c.auth.current(); return failed }() {
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
		}
		if _, err := c.expireSent(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("timeout controller", "err", err)
		}
		err := c.sendDue(ctx, false)
		if ctx.Err() != nil {
			return
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			c.log.Debug("scheduler pass", "err", err)
		}
		next, err := c.nextDue(ctx)
		if err != nil && ctx.Err() == nil {
			c.log.Warn("scheduler", "err", err)
		}
		wait := time.Duration(c.cfg.SendTimeoutMillis) * time.Millisecond // timeout controller period
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(c.now()), 0))
		}
		rctx, cancel := context.WithTimeout(ctx, time.Duration(c.cfg.SendTimeoutMillis)*time.Millisecond)
		if err := c.flushReadMarks(rctx); err != nil {
			readRetry = min(max(2*readRetry, time.Second), time.Minute)
			wait = min(wait, readRetry)
		} else {
			readRetry = 0
		}
		cancel()
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

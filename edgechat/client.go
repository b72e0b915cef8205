package edgechat

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Config says where the client's server and database are. The zero value
// of every tuning field picks the documented default. Fields of types
// gomobile cannot bind (Logger, HTTPClient, Now) are for Go callers.
type Config struct {
	// ServerURL is the base URL of any edge node, e.g. https://chat.example.com.
	ServerURL string
	// Token is the bearer JWT from the operator's login service. With a
	// TokenSource it may be empty: Start asks the source for one.
	Token string
	// TokenSource, when set, is asked for a fresh token on Start and
	// Resume, before the current one expires, and when the server refuses
	// it (Client.SetTokenSource sets it from Java or Swift).
	TokenSource TokenSource
	// WipeOtherAccount: when chats.db belongs to another user or server,
	// delete everything in it (messages, unsent requests, the sync cursor)
	// and start it afresh for this one, instead of failing with
	// ErrOtherAccount. Unsent messages of the other account are lost.
	WipeOtherAccount bool
	// DBPath is the path of chats.db; its directory is created if missing.
	DBPath string
	// UserID is the logged-in user; 0 reads it from the token's sub claim.
	UserID int64

	// MaxAttempts is how many failed sends make a message FAILED for good
	// (default 10).
	MaxAttempts int
	// RetryBaseMillis is the first retry delay (default 1000); each failure
	// doubles it, up to RetryMaxMillis (default 300000), with jitter.
	RetryBaseMillis int64
	RetryMaxMillis  int64
	// SendTimeoutMillis bounds one send attempt; the timeout controller
	// marks a request still SENT after it FAILED (default 10000).
	SendTimeoutMillis int64
	// ReconnectBaseMillis and ReconnectMaxMillis bound the WebSocket
	// reconnection backoff (defaults 500 and 30000).
	ReconnectBaseMillis int64
	ReconnectMaxMillis  int64

	// Logger receives the client's diagnostics (Go only; default discards).
	Logger *slog.Logger
	// HTTPClient makes the REST calls (Go only; default a client without
	// overall timeout, each call has its own).
	HTTPClient *http.Client
	// Now is the clock (Go only; default time.Now).
	Now func() time.Time
}

func (c *Config) withDefaults() Config {
	out := *c
	def := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	if out.MaxAttempts <= 0 {
		out.MaxAttempts = 10
	}
	def(&out.RetryBaseMillis, 1000)
	def(&out.RetryMaxMillis, 300000)
	def(&out.SendTimeoutMillis, 10000)
	def(&out.ReconnectBaseMillis, 500)
	def(&out.ReconnectMaxMillis, 30000)
	if out.Logger == nil {
		out.Logger = slog.New(slog.DiscardHandler)
	}
	if out.HTTPClient == nil {
		out.HTTPClient = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if out.Now == nil {
		out.Now = time.Now
	}
	return out
}

// Client is the SDK: the local database, the repositories over it, the
// message scheduler and the real-time connection. Open it, optionally Start
// the background work, and Close it.
//
// Threading: every method may be called from any thread. Calls that read
// or write chats.db take milliseconds (Send waits for an fsync); calls that
// reach the server (Sync, Flush, FetchContactInfo, SetTyping without a
// socket, RegisterDevice, RefreshEdges) block up to their timeout: call
// them off the UI thread. Pause and Close cancel the calls in flight,
// which then fail with code canceled.
type Client struct {
	cfg    Config
	me     int64
	server string
	store  *store
	remote *remote
	auth   *auth
	edges  *edgeSet
	notify *notifier
	log    *slog.Logger

	kick    chan struct{} // wakes the scheduler
	redial  chan struct{} // NetworkChanged: re-measure the edges, dial now
	syncMu  sync.Mutex    // one sync at a time
	flushMu sync.Mutex    // one sender at a time

	// life ends at Close; calls derive their contexts from callCtx, which
	// Pause also ends.
	life    context.Context
	endLife context.CancelFunc

	mu       sync.Mutex
	contacts map[int64]ContactInfo
	watched  []int64
	sock     *socket
	started  bool // Start was called and Pause was not, or Resume since
	closed   bool
	cancel   context.CancelFunc // ends the background work
	callCtx  context.Context
	endCalls context.CancelFunc
	wg       sync.WaitGroup
}

// Open opens (and creates or migrates) the database and prepares the
// client. It does no network I/O; Start begins the background work, and a
// short-lived program can call Flush and Sync instead.
//
// chats.db records its account: the user and Config.ServerURL it was first
// opened for. Opening it for another fails with ErrOtherAccount (code
// other_account), unless Config.WipeOtherAccount says to empty it first:
// one user's sync cursor must never acknowledge another user's messages.
func Open(cfg *Config) (*Client, error) {
	c := cfg.withDefaults()
	if c.DBPath == "" {
		return nil, &Error{CodeBadArgument, "Config.DBPath is empty"}
	}
	if c.ServerURL == "" {
		return nil, &Error{CodeBadArgument, "Config.ServerURL is empty"}
	}
	me := c.UserID
	if me == 0 {
		me = userFromToken(c.Token)
	}
	if me <= 0 {
		return nil, ErrNoUserID
	}
	if sub := userFromToken(c.Token); sub != 0 && sub != me {
		return nil, &Error{CodeOtherAccount, fmt.Sprintf("Config.Token is for user %d, Config.UserID is %d", sub, me)}
	}
	st, err := openStore(c.DBPath)
	if err != nil {
		return nil, err
	}
	edges := newEdgeSet(c.ServerURL, c.HTTPClient)
	notify := newNotifier()
	au := newAuth(me, c.Token, c.TokenSource, notify)
	life, endLife := context.WithCancel(context.Background())
	cl := &Client{
		cfg: c, me: me, server: normalServer(c.ServerURL), store: st, edges: edges, log: c.Logger,
		auth:     au,
		remote:   &remote{http: c.HTTPClient, auth: au, edges: edges},
		notify:   notify,
		kick:     make(chan struct{}, 1),
		redial:   make(chan struct{}, 1),
		contacts: map[int64]ContactInfo{},
		life:     life, endLife: endLife,
	}
	cl.callCtx, cl.endCalls = context.WithCancel(life)
	ctx := context.Background()
	fail := func(err error) (*Client, error) {
		endLife()
		notify.close()
		st.close()
		return nil, err
	}
	if err := st.write(ctx, func(tx *sql.Tx) error { return cl.claimAccount(ctx, tx, c.WipeOtherAccount) }); err != nil {
		return fail(err)
	}
	// Requests left SENT by a process that died mid-send: the timeout
	// controller makes them FAILED so that they are retried.
	if _, err := cl.expireSent(ctx); err != nil {
		return fail(err)
	}
	return cl, nil
}

// normalServer is the server part of the account: ServerURL's scheme and
// host, lower case, without a trailing slash.
func normalServer(u string) string {
	return strings.ToLower(strings.TrimRight(strings.TrimSpace(u), "/"))
}

// claimAccount checks that chats.db is this account's (recording it when
// the database has no owner yet), or wipes it when told to.
func (c *Client) claimAccount(ctx context.Context, tx *sql.Tx, wipe bool) error {
	var user int64
	var server string
	var device string
	err := tx.QueryRowContext(ctx, `SELECT user_id, server, device_id FROM Account WHERE id = 1`).Scan(&user, &server, &device)
	switch {
	case err == nil && user == c.me && server == c.server && device != "":
		c.remote.device = device
		return nil
	case err == nil && user == c.me && server == c.server:
		// A database from before device ids: this installation gets one
		// now, and the server links it at its first call.
	case err == nil:
	case errors.Is(err, sql.ErrNoRows):
		// A database of version 2 or older recorded no owner: it is
		// another user's if it holds a message neither from nor to me.
		var other int64
		err := tx.QueryRowContext(ctx, `SELECT coalesce((SELECT from_user_id FROM Messages WHERE from_user_id != ?1 AND to_user_id != ?1 LIMIT 1), 0)`, c.me).Scan(&other)
		if err != nil {
			return fmt.Errorf("edgechat: account: %w", err)
		}
		if other == 0 {
			user, server = c.me, c.server
		} else {
			user, server = -1, ""
		}
	default:
		return fmt.Errorf("edgechat: account: %w", err)
	}
	if user != c.me || server != c.server {
		if !wipe {
			return fmt.Errorf("%w: %s is user %d at %q, not user %d at %q", ErrOtherAccount, c.cfg.DBPath, user, server, c.me, c.server)
		}
		for _, t := range []string{"MessageRequests", "Messages", "SyncState", "Users", "Account"} {
			if _, err := tx.ExecContext(ctx, "DELETE FROM "+t); err != nil {
				return fmt.Errorf("edgechat: wipe %s: %w", t, err)
			}
		}
		device = "" // another account: another device to the server
	}
	if device == "" {
		device = newDeviceID()
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO Account(id, user_id, server, device_id) VALUES (1, ?, ?, ?)`, c.me, c.server, device); err != nil {
		return fmt.Errorf("edgechat: account: %w", err)
	}
	c.remote.device = device
	return ensureUser(ctx, tx, c.me)
}

// UserID is the logged-in user.
func (c *Client) UserID() int64 { return c.me }

// DeviceID is this installation's device id: made at the first Open of
// its database and sent with every call, so that the server gives this
// database every message, receipt and read mark of the user on its own,
// whatever the user's other devices take (docs/API.md, "Devices").
func (c *Client) DeviceID() string { return c.remote.device }

// SetListener installs the listener (nil removes it).
func (c *Client) SetListener(l Listener) { c.notify.setListener(l) }

// SetTokenSource installs the TokenSource (nil removes it); for Java and
// Swift, which cannot set Config.TokenSource.
func (c *Client) SetTokenSource(src TokenSource) { c.auth.setSource(src) }

// SetToken replaces the bearer token (after a login, say): it must be for
// this client's user. Sending and the socket resume at once.
func (c *Client) SetToken(token string) error {
	if err := c.auth.set(token); err != nil {
		return err
	}
	c.wake()
	return nil
}

// Start begins the background work: it asks the TokenSource (if any) for a
// token, then runs the message scheduler, the timeout controller, the token
// refresher and the WebSocket with reconnection, which replays everything
// waiting on the server. It returns at once.
func (c *Client) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.started {
		return nil
	}
	c.started = true
	ctx, cancel := context.WithCancel(c.life)
	c.cancel = cancel
	c.wg.Add(3)
	go func() {
		defer c.wg.Done()
		c.auth.mu.Lock()
		hasSrc := c.auth.src != nil
		c.auth.mu.Unlock()
		if hasSrc {
			tok, _ := c.auth.current()
			if _, err := c.auth.refresh(TokenStart, tok); err != nil {
				c.log.Debug("token at start", "err", err)
			}
		}
		c.wake()
		c.auth.refreshLoop(ctx, c.now)
	}()
	go func() { defer c.wg.Done(); c.schedulerLoop(ctx) }()
	go func() { defer c.wg.Done(); c.socketLoop(ctx) }()
	return nil
}

// Pause stops the background work: the socket closes (the contacts'
// presence becomes unknown), nothing is sent, calls in flight are
// cancelled. Messages written meanwhile are stored and wait. Call it when
// the app goes to the background (and the platform's push takes over);
// Resume when it comes back.
func (c *Client) Pause() {
	c.mu.Lock()
	cancel := c.cancel
	endCalls := c.endCalls
	if !c.closed {
		c.callCtx, c.endCalls = context.WithCancel(c.life)
	}
	c.cancel, c.started = nil, false
	c.mu.Unlock()
	endCalls()
	if cancel != nil {
		cancel()
	}
	c.wg.Wait()
}

// Resume starts the background work again after Pause: a fresh token if
// there is a TokenSource, the socket at once (which replays what arrived
// meanwhile), and every queued message without waiting out its backoff.
func (c *Client) Resume() error {
	if err := c.retryNow(c.life); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return c.Start()
}

// NetworkChanged tells the client that the device's network changed
// (Wi-Fi to cellular, back online): the socket is dropped and dialled
// again at once, the edges re-measured, and queued messages sent without
// waiting out their backoff.
func (c *Client) NetworkChanged() {
	c.mu.Lock()
	s, started := c.sock, c.started
	c.mu.Unlock()
	if !started {
		return
	}
	select {
	case c.redial <- struct{}{}:
	default:
	}
	if s != nil {
		s.conn.Close() // the socket loop dials again at once
	}
	if c.retryNow(c.life) == nil {
		c.wake()
	}
}

// RetryFailed queues again every message that failed for good (the user
// tapped "retry all"), except those the server refused as expired after
// an attempt that may have been delivered (Message.Expired: ask the user,
// then Resend each). It returns how many were queued.
func (c *Client) RetryFailed() (int, error) {
	ctx := c.life
	var chs []Change
	err := c.store.write(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `UPDATE MessageRequests SET status = 'PENDING', fail_count = 0, next_attempt_at = ?, last_modified_at = ?
			WHERE status = 'FAILED' AND next_attempt_at IS NULL AND expired = 0 RETURNING request_id, to_user_id`, c.now().UnixMilli(), c.nowString())
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			ch := Change{Kind: ChangeMessageStatus, Status: StatusPending}
			if err := rows.Scan(&ch.RequestID, &ch.ContactID); err != nil {
				return err
			}
			chs = append(chs, ch)
		}
		return rows.Err()
	})
	if err != nil {
		return 0, fmt.Errorf("edgechat: retry failed: %w", err)
	}
	c.notify.change(chs...)
	c.wake()
	return len(chs), nil
}

// calls is the context of a call the app makes: Pause and Close cancel it.
func (c *Client) calls() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.callCtx
}

// Close stops the background work, cancels the calls in flight and closes
// the database. Pending requests stay queued for the next Open.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	cancel := c.cancel
	c.mu.Unlock()
	c.endLife()
	if cancel != nil {
		cancel()
	}
	c.wg.Wait()
	c.notify.close()
	return c.store.close()
}

func (c *Client) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *Client) now() time.Time { return c.cfg.Now() }

func (c *Client) nowString() string { return formatTime(c.now()) }

// backoff is the delay before attempt n+1 after n failures: base·2^(n-1),
// capped, with "equal jitter" (half fixed, half random) so that clients
// that failed together do not retry together.
func backoff(n int, base, max time.Duration) time.Duration {
	if n < 1 {
		n = 1
	}
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(half)+1))
}

// UserIDFromToken returns the user id in a JWT's sub claim, 0 if there is
// none. It does not verify the token.
func UserIDFromToken(token string) int64 { return userFromToken(token) }

package edgechat

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
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
	// Token is the bearer JWT from the operator's login service.
	Token string
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

// Listener receives change notifications. Every method is called after the
// change is committed to chats.db, from one goroutine, in order; reload what
// the screen shows from the repositories. Calls are coalesced: one call may
// stand for several changes.
type Listener interface {
	// OnConversationChanged: messages of the conversation with contactID
	// changed (new, status, pending to accepted, deleted). The chat list
	// changed with it.
	OnConversationChanged(contactID int64)
	// OnContactStatus: a watched contact's presence, or a contact's typing
	// indicator, changed.
	OnContactStatus(info *ContactInfo)
	// OnConnectionChanged: the real-time connection is now ConnOffline,
	// ConnConnecting or ConnOnline.
	OnConnectionChanged(state string)
}

// Client is the SDK: the local database, the repositories over it, the
// message scheduler and the real-time connection. Open it, optionally Start
// the background work, and Close it.
type Client struct {
	cfg    Config
	me     int64
	store  *store
	remote *remote
	edges  *edgeSet
	notify *notifier
	log    *slog.Logger

	kick    chan struct{} // wakes the scheduler
	syncMu  sync.Mutex    // one sync at a time
	flushMu sync.Mutex    // one sender at a time

	mu       sync.Mutex
	contacts map[int64]ContactInfo
	watched  []int64
	sock     *socket
	started  bool
	closed   bool
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// Open opens (and creates or migrates) the database and prepares the
// client. It does no network I/O; Start begins the background work, and a
// short-lived program can call Flush and Sync instead.
func Open(cfg *Config) (*Client, error) {
	c := cfg.withDefaults()
	if c.DBPath == "" {
		return nil, fmt.Errorf("client: Config.DBPath is empty")
	}
	if c.ServerURL == "" {
		return nil, fmt.Errorf("client: Config.ServerURL is empty")
	}
	me := c.UserID
	if me == 0 {
		me = userFromToken(c.Token)
	}
	if me <= 0 {
		return nil, ErrNoUserID
	}
	st, err := openStore(c.DBPath)
	if err != nil {
		return nil, err
	}
	edges := newEdgeSet(c.ServerURL, c.HTTPClient)
	cl := &Client{
		cfg: c, me: me, store: st, edges: edges, log: c.Logger,
		remote:   &remote{http: c.HTTPClient, token: c.Token, edges: edges},
		notify:   newNotifier(),
		kick:     make(chan struct{}, 1),
		contacts: map[int64]ContactInfo{},
	}
	ctx := context.Background()
	if err := st.write(ctx, func(tx *sql.Tx) error { return ensureUser(ctx, tx, me) }); err != nil {
		st.close()
		return nil, err
	}
	// Requests left SENT by a process that died mid-send: the timeout
	// controller makes them FAILED so that they are retried.
	if _, err := cl.expireSent(ctx); err != nil {
		st.close()
		return nil, err
	}
	return cl, nil
}

// UserID is the logged-in user.
func (c *Client) UserID() int64 { return c.me }

// SetListener installs the listener (nil removes it).
func (c *Client) SetListener(l Listener) { c.notify.setListener(l) }

// Start begins the background work: the message scheduler, the timeout
// controller, the WebSocket with reconnection and the sync after every
// (re)connect. It returns at once.
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
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.wg.Add(2)
	go func() { defer c.wg.Done(); c.schedulerLoop(ctx) }()
	go func() { defer c.wg.Done(); c.socketLoop(ctx) }()
	return nil
}

// Close stops the background work and closes the database. Pending
// requests stay queued for the next Open.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	cancel := c.cancel
	c.mu.Unlock()
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

// userFromToken reads the sub claim of a JWT without verifying it (the
// server verifies; the client only needs to know who it is).
func userFromToken(tok string) int64 {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return 0
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return 0
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	if json.Unmarshal(b, &claims) != nil {
		return 0
	}
	id, _ := strconv.ParseInt(claims.Sub, 10, 64)
	return id
}

// notifier delivers Listener calls from one goroutine, coalescing
// conversation changes, so that a slow UI never blocks a commit.
type notifier struct {
	mu       sync.Mutex
	l        Listener
	convs    map[int64]struct{}
	order    []int64
	statuses []ContactInfo
	conn     []string
	wakeC    chan struct{}
	done     chan struct{}
	closed   bool
}

func newNotifier() *notifier {
	n := &notifier{convs: map[int64]struct{}{}, wakeC: make(chan struct{}, 1), done: make(chan struct{})}
	go n.run()
	return n
}

func (n *notifier) setListener(l Listener) {
	n.mu.Lock()
	n.l = l
	n.mu.Unlock()
}

func (n *notifier) conversation(ids ...int64) {
	n.mu.Lock()
	for _, id := range ids {
		if _, ok := n.convs[id]; !ok {
			n.convs[id] = struct{}{}
			n.order = append(n.order, id)
		}
	}
	n.mu.Unlock()
	n.signal()
}

func (n *notifier) contact(ci ContactInfo) {
	n.mu.Lock()
	n.statuses = append(n.statuses, ci)
	n.mu.Unlock()
	n.signal()
}

func (n *notifier) connection(state string) {
	n.mu.Lock()
	n.conn = append(n.conn, state)
	n.mu.Unlock()
	n.signal()
}

func (n *notifier) signal() {
	select {
	case n.wakeC <- struct{}{}:
	default:
	}
}

func (n *notifier) close() {
	n.mu.Lock()
	if !n.closed {
		n.closed = true
		close(n.done)
	}
	n.mu.Unlock()
}

func (n *notifier) run() {
	for {
		select {
		case <-n.done:
			return
		case <-n.wakeC:
		}
		n.mu.Lock()
		l, order, statuses, conn := n.l, n.order, n.statuses, n.conn
		n.order, n.statuses, n.conn = nil, nil, nil
		clear(n.convs)
		n.mu.Unlock()
		if l == nil {
			continue
		}
		for _, s := range conn {
			l.OnConnectionChanged(s)
		}
		for _, id := range order {
			l.OnConversationChanged(id)
		}
		for i := range statuses {
			l.OnContactStatus(&statuses[i])
		}
	}
}

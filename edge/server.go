// Package edge is the client-facing front of a node: the REST API and the
// WebSocket of API.md over net/http and gorilla/websocket. It authenticates
// every call, enforces every input limit with the API's error model, and
// turns calls into relaylog operations and presence updates. It holds no
// state of its own beyond rate-limit buckets and the sockets it serves.
package edge

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/edgenode/edgenode/auth"
	"github.com/edgenode/edgenode/presence"
	"github.com/edgenode/edgenode/ratelimit"
	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

// Store is the relay log as the front uses it: a relaylog.Log on a lone
// node, the cluster's router (which forwards to shard leaders) on a cluster.
type Store interface {
	Send(ctx context.Context, from int64, req wire.NewMessageRequest) (relaylog.Event, bool, error)
	Pending(ctx context.Context, user, after int64, limit int) ([]relaylog.Event, bool, error)
	Ack(ctx context.Context, user, upTo int64) (int, error)
	// Attach links device dev of user if need be and returns its cursor:
	// a reader for dev starts after it. ok is false when the user's shard
	// cannot link devices yet (a rolling upgrade): the user's devices then
	// share one queue, read from its head.
	Attach(ctx context.Context, user int64, dev string) (cursor int64, ok bool, err error)
	// AckDevice is Ack by device dev (relaylog.Log.AckDeviceVia).
	AckDevice(ctx context.Context, user int64, dev string, upTo int64) (int, error)
	// SentCopy queues msg, which sender sent, for sender's other devices
	// (relaylog.Log.SentCopy); ReadSync queues reader's read mark for
	// reader's other devices.
	// SentCopy reports whether it queued a copy.
	SentCopy(ctx context.Context, sender int64, msg relaylog.Event) (bool, error)
	ReadSync(ctx context.Context, reader, sender, upTo int64) error
	// Unlink removes device dev of user; it reports whether dev was linked.
	Unlink(ctx context.Context, user int64, dev string) (bool, error)
	// LinkedDevices lists user's linked devices.
	LinkedDevices(ctx context.Context, user int64) ([]relaylog.Linked, error)
	MarkRead(ctx context.Context, reader, sender, upTo int64) error
	RegisterDevice(ctx context.Context, user int64, d relaylog.Device) error
	UnregisterDevice(ctx context.Context, user int64, token string) error
	SetLastConnected(ctx context.Context, user int64, t time.Time) error
	// Shared reports, for each of users, whether viewer shares a
	// conversation with them: a message in either direction within the
	// retention period.
	Shared(ctx context.Context, viewer int64, users []int64) ([]bool, error)
	// Ready reports whether every shard can take calls.
	Ready() bool
}

// Verifier checks a client token and returns its user id.
type Verifier interface {
	Verify(token string) (int64, error)
}

// Options configure a Server. Log, Hub and Verifier are required; every other
// zero value means the default named in its comment.
type Options struct {
	NodeID, Region string
	// PublicURL is this node's URL for GET /v1/edges.
	PublicURL string
	// Edges lists the cluster's edges; nil means this node alone.
	Edges func() []wire.Edge

	Log      Store
	Hub      *presence.Hub
	Verifier Verifier
	Logger   *slog.Logger // nil discards
	Now      func() time.Time

	// Registerer and Gatherer carry the node's metrics; nil means a private
	// registry (served on /metrics all the same).
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer

	PingInterval    time.Duration // 0 means 25s
	AllowedOrigins  []string      // browser origins allowed on the WebSocket and, through CORS, on REST; "*" allows all
	MaxContentBytes int           // 0 means 4096
	SendRate        float64       // sends per second per user; 0 means 50
	SendBurst       int           // 0 means 200
	MaxConnsPerUser int           // 0 means 10
	// CallRate and CallBurst limit each user's read marks, typing calls
	// (REST), status lookups and watch frames together (a watch of n
	// users counts 1+n/100); 0 means 20 a second and 100 at once.
	CallRate  float64
	CallBurst int
	// OpenPresence lets every user see every user's presence, last seen
	// and typing; by default only users who share a conversation do.
	OpenPresence bool
	// Usage, when set, makes the send and call limits hold across the
	// cluster: RunUsage reports each user's usage to it every
	// UsageInterval (0 means 1s) and imposes the blocks it answers.
	Usage         UsageReporter
	UsageInterval time.Duration
	WriteTimeout  time.Duration // per socket write; 0 means 10s
	MaxUnacked    int           // events in flight per socket; 0 means 1024
	// CallTimeout bounds a call's wait for the relay log; 0 means 10s.
	CallTimeout time.Duration

	// Cluster serves the operators' views under /v1/cluster/ on the
	// OperatorHandler, by name ("members" is GET /v1/cluster/members);
	// nil serves none. Every such
	// call needs "Authorization: Bearer <OperatorToken>" and is answered
	// 401 unauthenticated otherwise (always, when OperatorToken is "").
	Cluster       map[string]http.Handler
	OperatorToken string
}

// The default allowance of read marks, REST typing, status lookups and
// watch frames per user (Options.CallRate, CallBurst).
const (
	DefaultCallRate  = 20
	DefaultCallBurst = 100
)

// setDefaults fills in the defaults of o's zero fields, in the order
// Options declares them.
func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Registerer == nil || o.Gatherer == nil {
		reg := prometheus.NewRegistry()
		o.Registerer, o.Gatherer = reg, reg
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 25 * time.Second
	}
	if o.MaxContentBytes <= 0 {
		o.MaxContentBytes = wire.DefaultMaxContentBytes
	}
	if o.SendRate <= 0 {
		o.SendRate = 50
	}
	if o.SendBurst <= 0 {
		o.SendBurst = 200
	}
	if o.MaxConnsPerUser <= 0 {
		o.MaxConnsPerUser = 10
	}
	if o.CallRate <= 0 {
		o.CallRate = DefaultCallRate
	}
	if o.CallBurst <= 0 {
		o.CallBurst = DefaultCallBurst
	}
	if o.UsageInterval <= 0 {
		o.UsageInterval = time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.MaxUnacked <= 0 {
		o.MaxUnacked = 1024
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 10 * time.Second
	}
}

// Server serves the client API of one node.
type Server struct {
	opts         Options
	log          Store
	hub          *presence.Hub
	limiter      *ratelimit.Limiter // sends
	calls        *ratelimit.Limiter // read marks, typing, status lookups, watch
	visibleCache *visibleCache
	// hiddenSockets counts sockets watching users they may not see yet.
	hiddenSockets atomic.Int64

	usageMu sync.Mutex
	usage   map[int64]ratelimit.Usage // since the last report (RunUsage)
	// usageWake: usage was empty and got an entry (RunUsage sleeps on it).
	usageWake chan struct{}
	m         *metrics
	upgrader  websocket.Upgrader
	origins   map[string]bool
	anyOrig   bool
	mux       *http.ServeMux
	opMux     *http.ServeMux // OperatorHandler's

	connMu   sync.Mutex
	conns    map[int64]int // sockets per user, reserved before upgrade
	sockets  map[*socket]struct{}
	poller   *poller // nil: every socket reads with a goroutine
	draining atomic.Bool
	wg       sync.WaitGroup
}

// New builds a Server.
func New(opts Options) *Server {
	opts.setDefaults()
	s := &Server{
		opts:         opts,
		log:          opts.Log,
		hub:          opts.Hub,
		limiter:      ratelimit.New(opts.SendRate, opts.SendBurst, opts.Now),
		calls:        ratelimit.New(opts.CallRate, opts.CallBurst, opts.Now),
		usage:        make(map[int64]ratelimit.Usage),
		usageWake:    make(chan struct{}, 1),
		visibleCache: newVisibleCache(),
		m:            newMetrics(opts.Registerer),
		origins:      make(map[string]bool),
		conns:        make(map[int64]int),
		sockets:      make(map[*socket]struct{}),
		poller:       newPoller(),
	}
	for _, o := range opts.AllowedOrigins {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		if o == "*" {
			s.anyOrig = true
		} else if o != "" {
			s.origins[strings.ToLower(o)] = true
		}
	}
	s.upgrader = websocket.Upgrader{
		// gorilla only does the handshake: the socket then reads and
		// writes frames itself (socket.go), so its buffers stay minimal
		// and become garbage with its Conn.
		ReadBufferSize:   64,
		WriteBufferSize:  64,
		WriteBufferPool:  &sync.Pool{},
		HandshakeTimeout: 10 * time.Second,
		CheckOrigin:      s.checkOrigin,
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			if status == http.StatusMethodNotAllowed {
				methodNotAllowed(w, r, "GET")
				return
			}
			if status >= 500 {
				s.opts.Logger.Warn("websocket upgrade failed", "err", reason)
			}
			writeError(w, &wire.Error{Code: codeForStatus(status), Message: upgradeMessage(status, reason)})
		},
	}
	s.m.registerState(opts.Registerer, map[string]func() int{
		"rate_buckets":   func() int { return s.limiter.Size() + s.calls.Size() },
		"presence_pairs": s.visibleCache.size,
	})
	s.routes()
	return s
}

// Handler is the node's HTTP handler.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// OperatorHandler serves the operator listener (--admin-addr): the views
// of Options.Cluster under /v1/cluster/ (operator token), /healthz,
// /readyz and /metrics. The client Handler serves no /v1/cluster/ path.
func (s *Server) OperatorHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if canonical(w, r) {
			s.opMux.ServeHTTP(w, r)
		}
	})
}

// serveHTTP answers a path that is not in canonical form ("//v1/messages",
// "/v1/./edges", "/v1/users//status") 404 in the API's error model: the
// mux would redirect it with a bodyless 307 (or 301), and a client that
// built such a path has a bug that a redirect would only hide.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !canonical(w, r) {
		return
	}
	if r.Header.Get("Origin") != "" && r.URL.Path != socketPath && !s.cors(w, r) {
		return
	}
	s.mux.ServeHTTP(w, r)
}

const socketPath = "/v1/socket/updates"

// CORS for browser apps on another origin (the WebSocket checks its Origin
// at the upgrade instead).
const (
	corsMethods = "GET, POST, DELETE"
	corsHeaders = "Authorization, Content-Type, Device-Id"
	corsExpose  = "Retry-After, WWW-Authenticate"
	corsMaxAge  = "600"
)

// cors answers a request that carries an Origin: a request from an origin
// the node does not allow (the same rule as the WebSocket's, checkOrigin)
// gets 403 permission_denied, preflight included; an allowed one gets the
// CORS headers, and a preflight (OPTIONS with
// Access-Control-Request-Method) is answered 204 here. It reports whether
// the request goes on to its handler.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	h := w.Header()
	h.Add("Vary", "Origin")
	if !s.checkOrigin(r) {
		writeError(w, wire.Errorf(wire.CodePermissionDenied, "origin %s is not allowed (--allowed-origins)", origin))
		return false
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Expose-Headers", corsExpose)
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Add("Vary", "Access-Control-Request-Method")
		h.Add("Vary", "Access-Control-Request-Headers")
		h.Set("Access-Control-Allow-Methods", corsMethods)
		h.Set("Access-Control-Allow-Headers", corsHeaders)
		h.Set("Access-Control-Max-Age", corsMaxAge)
		w.WriteHeader(http.StatusNoContent)
		return false
	}
	return true
}

// cleanPath is the canonical form of a URL path as net/http.ServeMux sees
// it: rooted, no empty, "." or ".." segments; a trailing slash kept.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}

// canonical answers 404 to a path not in canonical form, and says whether
// the request's path is canonical.
func canonical(w http.ResponseWriter, r *http.Request) bool {
	if p := r.URL.EscapedPath(); p != cleanPath(p) {
		writeError(w, wire.Errorf(wire.CodeNotFound, "no such endpoint: %s %s (the path is not in canonical form)", r.Method, p))
		return false
	}
	return true
}

// promLog is promhttp's error log on the node's logger.
type promLog struct{ l *slog.Logger }

func (p promLog) Println(v ...any) { p.l.Warn("metrics: " + strings.TrimSpace(fmt.Sprintln(v...))) }

// CodeMethodNotAllowed is the code of a 405 answer: a known path called
// with a method it does not serve (the Allow header lists those it does).
const CodeMethodNotAllowed = "method_not_allowed"

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	h := w.Header()
	h.Set("Allow", allow)
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusMethodNotAllowed)
	b := append([]byte(`{"error":{"code":"`+CodeMethodNotAllowed+`","message":`), wire.AppendString(nil, r.Method+" is not allowed on "+r.URL.Path+"; use "+allow)...)
	w.Write(append(b, "}}\n"...))
}

func (s *Server) routes() {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/messages", s.authed("send", s.handleSend))
	mux.HandleFunc("GET /v1/messages", s.authed("sync", s.handleSync))
	mux.HandleFunc("POST /v1/conversations/{userId}/read", s.authed("read", s.handleRead))
	mux.HandleFunc("POST /v1/conversations/{userId}/typing", s.authed("typing", s.handleTyping))
	mux.HandleFunc("GET /v1/users/{userId}/status", s.authed("status", s.handleStatus))
	mux.HandleFunc("POST /v1/devices", s.authed("device_add", s.handleDeviceAdd))
	mux.HandleFunc("GET /v1/devices", s.authed("device_list", s.handleDeviceList))
	mux.HandleFunc("DELETE /v1/devices/{token}", s.authed("device_remove", s.handleDeviceRemove))
	mux.HandleFunc("GET /v1/edges", s.authed("edges", s.handleEdges))
	mux.HandleFunc("GET "+socketPath, s.handleSocket)
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", s.handleReady)
	// A collector that fails is logged and left out rather than turning
	// the scrape into a plain-text 500 (every non-2xx answer has the API's
	// error body).
	metrics := promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError, ErrorLog: promLog{s.opts.Logger},
	})
	mux.Handle("GET /metrics", metrics)
	allowed := map[string]string{
		"/v1/messages": "GET, POST", "/v1/conversations/{userId}/read": "POST",
		"/v1/conversations/{userId}/typing": "POST", "/v1/users/{userId}/status": "GET",
		"/v1/devices": "GET, POST", "/v1/devices/{token}": "DELETE", "/v1/edges": "GET",
		"/v1/socket/updates": "GET", "/healthz": "GET", "/readyz": "GET", "/metrics": "GET",
	}
	s.mux = finish(mux, allowed)

	// The operator listener: the cluster views (operator token), and the
	// same health and metrics as the client listener.
	op := http.NewServeMux()
	opAllowed := map[string]string{"/healthz": "GET", "/readyz": "GET", "/metrics": "GET"}
	op.HandleFunc("GET /healthz", healthz)
	op.HandleFunc("GET /readyz", s.handleReady)
	op.Handle("GET /metrics", metrics)
	for name, h := range s.opts.Cluster {
		p := "/v1/cluster/" + name
		op.Handle("GET "+p, s.clusterAuthed("cluster_"+name, h))
		opAllowed[p] = "GET"
	}
	s.opMux = finish(op, opAllowed)
}

func healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"status":"ok"}`))
}

// finish answers the paths of mux with any other method 405 in the API's
// error model rather than net/http's plain-text answer, and every other
// path 404.
func finish(mux *http.ServeMux, allowed map[string]string) *http.ServeMux {
	for p, allow := range allowed {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) { methodNotAllowed(w, r, allow) })
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, wire.Errorf(wire.CodeNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

// Ready reports whether /readyz answers 200: the node is not draining and
// every shard has a leader.
func (s *Server) Ready() bool { return !s.draining.Load() && s.log.Ready() }

// handleReady answers 200 {"status":"ready"} when the node can accept
// writes; otherwise 503 with the status and, like every non-2xx answer, the
// API's error (code unavailable) and Retry-After.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	var status, msg string
	switch {
	case s.Ready():
		w.Write([]byte(`{"status":"ready"}`))
		return
	case s.draining.Load():
		status, msg = "draining", "the node is draining; use another edge"
	default:
		status, msg = "no leader for some shards", "some shards have no leader yet; retry"
	}
	h.Set("Retry-After", "1")
	w.WriteHeader(http.StatusServiceUnavailable)
	b := append([]byte(`{"status":`), wire.AppendString(nil, status)...)
	b = append(b, `,"error":{"code":"`+wire.CodeUnavailable+`","message":`...)
	b = append(wire.AppendString(b, msg), "}}\n"...)
	w.Write(b)
}

// token finds the bearer token of a request; access_token is accepted on the
// WebSocket upgrade only, for browsers.
func token(r *http.Request, allowQuery bool) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	if allowQuery {
		return r.URL.Query().Get("access_token")
	}
	return ""
}

func (s *Server) authenticate(r *http.Request, allowQuery bool) (int64, *wire.Error) {
	tok := token(r, allowQuery)
	if tok == "" {
		return 0, wire.Errorf(wire.CodeUnauthenticated, "missing bearer token")
	}
	user, err := s.opts.Verifier.Verify(tok)
	if err != nil {
		// The verifier's reason ("token expired", "bad signature") without
		// its package's prefix; an error that is not one of its reasons
		// says nothing about the node's internals.
		msg := "invalid token"
		if errors.Is(err, auth.ErrUnauthenticated) {
			if m, ok := strings.CutPrefix(err.Error(), auth.ErrUnauthenticated.Error()+": "); ok && m != "" {
				msg = m
			}
		}
		return 0, wire.Errorf(wire.CodeUnauthenticated, "%s", msg)
	}
	return user, nil
}

// clusterAuthed guards an operator view under /v1/cluster/: the bearer
// token must be the operator token (compared in constant time).
func (s *Server) clusterAuthed(route string, h http.Handler) http.HandlerFunc {
	rm := s.m.route(route)
	var want [sha256.Size]byte
	if s.opts.OperatorToken != "" {
		want = sha256.Sum256([]byte(s.opts.OperatorToken))
	}
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		tok := token(r, false)
		got := sha256.Sum256([]byte(tok))
		// Hashing first makes the comparison independent of the
		// lengths too.
		if ok := subtle.ConstantTimeCompare(got[:], want[:]) == 1; !ok || tok == "" || s.opts.OperatorToken == "" {
			msg := "this endpoint needs the operator token as bearer token: `edgenode members` and `edgenode shards` derive it from the cluster secret"
			if tok == "" {
				msg = "missing bearer token: " + msg
			}
			writeError(w, wire.Errorf(wire.CodeUnauthenticated, "%s", msg))
			rm.errors.Inc()
		} else {
			h.ServeHTTP(w, r)
		}
		rm.seconds.Observe(time.Since(start).Seconds())
	}
}

type authedHandler func(w http.ResponseWriter, r *http.Request, user int64) *wire.Error

// authed wraps a handler with authentication, error rendering and metrics.
func (s *Server) authed(route string, h authedHandler) http.HandlerFunc {
	rm := s.m.route(route)
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		user, werr := s.authenticate(r, false)
		if werr == nil {
			werr = h(w, r, user)
		}
		if werr != nil {
			if werr.Code == wire.CodeInternal {
				s.opts.Logger.Error("request failed", "route", route, "user", user, "err", werr.Message)
				werr = &wire.Error{Code: wire.CodeInternal, Message: "internal error"}
			}
			writeError(w, werr)
			rm.errors.Inc()
		}
		rm.seconds.Observe(time.Since(start).Seconds())
	}
}

func writeError(w http.ResponseWriter, e *wire.Error) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if e.Code == wire.CodeRateLimited || e.Code == wire.CodeUnavailable {
		h.Set("Retry-After", e.RetryAfterSeconds())
	}
	if e.Code == wire.CodeUnauthenticated {
		h.Set("WWW-Authenticate", `Bearer realm="edgenode"`)
	}
	w.WriteHeader(e.Status())
	b := append(append([]byte(`{"error":{"code":`), wire.AppendString(nil, e.Code)...), `,"message":`...)
	b = append(wire.AppendString(b, e.Message), "}}\n"...)
	w.Write(b)
}

// upgradeMessage says in a few words why a WebSocket handshake failed,
// instead of the library's own text.
func upgradeMessage(status int, reason error) string {
	r := ""
	if reason != nil {
		r = reason.Error()
	}
	switch {
	case status >= 500:
		return "internal error"
	case status == http.StatusForbidden:
		return "origin not allowed"
	case strings.Contains(r, "unsupported version"):
		return "this endpoint needs WebSocket version 13 (Sec-WebSocket-Version: 13)"
	case strings.Contains(r, "Sec-WebSocket-Key"):
		return "the WebSocket upgrade needs a valid Sec-WebSocket-Key header"
	}
	return "this endpoint needs a WebSocket upgrade"
}

func codeForStatus(status int) string {
	switch status {
	case http.StatusForbidden:
		return wire.CodePermissionDenied
	case http.StatusUnauthorized:
		return wire.CodeUnauthenticated
	case http.StatusTooManyRequests:
		return wire.CodeRateLimited
	case http.StatusServiceUnavailable:
		return wire.CodeUnavailable
	}
	return wire.CodeInvalidArgument
}

// apiError maps every relaylog failure to the API's error model, in one
// place.
func apiError(err error) *wire.Error {
	if err == nil {
		return nil
	}
	if we, ok := wire.AsError(err); ok {
		return we
	}
	switch {
	case errors.Is(err, relaylog.ErrSenderShareFull):
		return &wire.Error{Code: wire.CodeRateLimited, Message: "you have a tenth of the recipient's queue (--max-queue-depth) undelivered; retry once some is delivered", RetryAfter: 30 * time.Second}
	case errors.Is(err, relaylog.ErrQueueFull):
		return &wire.Error{Code: wire.CodeRateLimited, Message: "the recipient has too many undelivered messages; retry later", RetryAfter: 30 * time.Second}
	case errors.Is(err, relaylog.ErrDeviceRevoked):
		return wire.Errorf(wire.CodeDeviceRevoked, "this device was removed from the account; sign in again as a new installation (a new device id)")
	case errors.Is(err, relaylog.ErrRequestIDReused):
		return wire.Invalid("requestId was already used for a different message")
	case errors.Is(err, relaylog.ErrRequestExpired):
		return wire.Errorf(wire.CodeRequestExpired, "this request is older than the sends the server still remembers, so it may have been accepted already; nothing was stored")
	case errors.Is(err, relaylog.ErrNoLeader), errors.Is(err, relaylog.ErrOverloaded),
		errors.Is(err, relaylog.ErrClosed), errors.Is(err, context.DeadlineExceeded):
		return &wire.Error{Code: wire.CodeUnavailable, Message: "the relay log is not available right now; retry", RetryAfter: time.Second}
	case errors.Is(err, context.Canceled):
		return &wire.Error{Code: wire.CodeUnavailable, Message: "request cancelled", RetryAfter: time.Second}
	}
	return &wire.Error{Code: wire.CodeInternal, Message: err.Error()}
}

func (s *Server) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || s.anyOrig {
		return true // native apps send no Origin
	}
	o := strings.ToLower(strings.TrimRight(origin, "/"))
	if s.origins[o] {
		return true
	}
	// A page served by this very host may open its own socket.
	if i := strings.Index(o, "://"); i >= 0 && strings.EqualFold(o[i+3:], r.Host) {
		return true
	}
	return false
}

// Drain stops accepting sockets and closes every open one with status 1012
// (service restart), telling clients to reconnect, elsewhere if they can.
func (s *Server) Drain(ctx context.Context) {
	s.draining.Store(true)
	s.connMu.Lock()
	all := make([]*socket, 0, len(s.sockets))
	for sk := range s.sockets {
		all = append(all, sk)
	}
	s.connMu.Unlock()
	for _, sk := range all {
		sk.closeWith(closeRestart, "node restarting; reconnect", "drain")
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// Sockets is the number of open sockets.
func (s *Server) Sockets() int {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	return len(s.sockets)
}

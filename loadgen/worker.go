package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edgenode/edgenode/wire"
	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

// Worker runs one process's share of a run: its slice of users, their
// sockets and its share of the send rate. Recipients are always chosen
// among the worker's own users, so the receiving socket finds the send it
// matches in this process's memory.
type Worker struct {
	cfg     WorkerConfig
	targets []Target
	users   []*user
	nsend   int
	devices int // sockets per user (Config.Devices, at least 1); users holds them user by user
	clients []*http.Client
	dialers []*net.Dialer
	wpool   websocket.BufferPool

	state    atomic.Pointer[string] // "connect", "ready", then timeline phases, "done"
	stopping atomic.Bool
	stop     chan struct{}
	stopOnce sync.Once

	measureStart, measureEnd time.Time // set by Run before any send
	runStart                 time.Time

	ready      atomic.Int64
	connOK     atomic.Int64
	connErr    atomic.Int64
	connErrs   errCounter
	connSecs   float64
	ttr        *Hist
	drops      atomic.Int64
	reconnects atomic.Int64
	foreign    atomic.Int64
	dups       atomic.Int64

	send201 *Hist
	deliver *Hist
	sendWG  sync.WaitGroup
	reqSeq  atomic.Int64
	rr      atomic.Uint64

	// Whole run, for the progress line.
	dispatched atomic.Int64
	accepted   atomic.Int64
	delivered  atomic.Int64
	errorsN    atomic.Int64
	overloadN  atomic.Int64
	inflight   atomic.Int64

	// Sends scheduled inside the measurement window.
	offered       atomic.Int64
	overload      atomic.Int64
	okWin         atomic.Int64
	failed        atomic.Int64
	deliveredWin  atomic.Int64
	acceptedInWin atomic.Int64

	pend         pendingMap
	pendAccepted atomic.Int64 // measured sends answered 201 and not yet delivered

	errs errCounter

	// Interval reports (ReportEvery > 0; nil otherwise). OnInterval
	// receives each interval's report; set it before Run.
	iv         *intervals
	OnInterval func(IntervalReport)

	ackMu    sync.Mutex
	ackDirty []*user
}

type user struct {
	w       *Worker
	id      int64
	dev     string // Device-Id of this socket ("" with one device per user)
	target  int
	auth    string
	mu      sync.Mutex // serialises ack writes and the switch to a new connection
	st      *connState // current connection, guarded by mu
	up      atomic.Bool
	maxSeen atomic.Int64 // written only by the socket's reader
	dirty   atomic.Bool
}

// connState is one WebSocket connection of a user.
type connState struct {
	ws    *websocket.Conn
	acked int64 // highest id acknowledged on this connection; guarded by user.mu
	buf   []byte
}

// NewWorker prepares the users (tokens) and HTTP clients of cfg.
func NewWorker(cfg WorkerConfig) (*Worker, error) {
	w := &Worker{
		cfg:     cfg,
		stop:    make(chan struct{}),
		ttr:     NewHist(),
		send201: NewHist(),
		deliver: NewHist(),
		wpool:   &sync.Pool{},
	}
	w.setState("init")
	w.pend.init()
	for _, s := range cfg.Targets {
		t, err := ParseTarget(s)
		if err != nil {
			return nil, err
		}
		w.targets = append(w.targets, t)
	}
	conns := cfg.WorkerCap
	if cfg.WorkerRate == 0 {
		conns = cfg.WorkerConc
	}
	conns = max(conns, 1)
	for _, t := range w.targets {
		d := &net.Dialer{Timeout: cfg.ReadyTimeout.D(), KeepAlive: 30 * time.Second}
		if cfg.SourceIP != "" && t.Loopback {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(cfg.SourceIP)}
		}
		w.dialers = append(w.dialers, d)
		tr := &http.Transport{
			DialContext:         d.DialContext,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
		}
		w.clients = append(w.clients, &http.Client{Transport: tr})
	}
	secret := []byte(cfg.JWTSecret)
	exp := time.Now().Add(cfg.TokenTTL.D())
	w.devices = max(cfg.Devices, 1)
	w.users = make([]*user, 0, cfg.UserCount*w.devices)
	for i := range cfg.UserCount {
		global := cfg.UserOffset + i
		id := cfg.FirstUser + int64(global)
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
			Subject:   strconv.FormatInt(id, 10),
			IssuedAt:  jwt.NewNumericDate(time.Now()),
			ExpiresAt: jwt.NewNumericDate(exp),
		}).SignedString(secret)
		if err != nil {
			return nil, err
		}
		for d := range w.devices {
			u := &user{w: w, id: id, target: global % len(w.targets), auth: "Bearer " + tok}
			if w.devices > 1 {
				u.dev = "d" + strconv.Itoa(d)
				u.target = (global + d) % len(w.targets)
			}
			w.users = append(w.users, u)
		}
	}
	w.nsend = cfg.SenderCount
	if cfg.ReportEvery > 0 {
		w.iv = newIntervals(cfg.ReportEvery.D())
		w.errs.onAdd = w.iv.fail
	}
	if cfg.Ack == AckInterval {
		go w.ackFlusher()
	}
	return w, nil
}

func (w *Worker) setState(s string) { w.state.Store(&s) }

// Token returns the bearer header value of user i of the worker (tests).
func (w *Worker) Token(i int) string { return w.users[i*w.devices].auth }

// ---- sockets ----

// ackConn wraps a socket's TCP connection. In AckBatch mode it
// acknowledges everything read so far just before the WebSocket reader
// blocks on the network for more bytes: once per read batch.
type ackConn struct {
	net.Conn
	u  *user
	st atomic.Pointer[connState]
}

func (c *ackConn) Read(p []byte) (int, error) {
	if st := c.st.Load(); st != nil && c.u.w.cfg.Ack == AckBatch {
		if err := c.u.flush(st); err != nil {
			return 0, err
		}
	}
	return c.Conn.Read(p)
}

// flush acknowledges the highest id seen on st, if not yet acknowledged.
func (u *user) flush(st *connState) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	hi := u.maxSeen.Load()
	if hi <= st.acked {
		return nil
	}
	st.buf = append(st.buf[:0], `{"type":"ack","payload":{"upTo":`...)
	st.buf = strconv.AppendInt(st.buf, hi, 10)
	st.buf = append(st.buf, "}}"...)
	_ = st.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := st.ws.WriteMessage(websocket.TextMessage, st.buf); err != nil {
		return err
	}
	st.acked = hi
	return nil
}

func (w *Worker) markDirty(u *user) {
	if u.dirty.CompareAndSwap(false, true) {
		w.ackMu.Lock()
		w.ackDirty = append(w.ackDirty, u)
		w.ackMu.Unlock()
	}
}

// ackFlusher sends the coalesced acks of AckInterval mode.
func (w *Worker) ackFlusher() {
	t := time.NewTicker(w.cfg.AckEvery.D())
	defer t.Stop()
	var batch []*user
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		w.ackMu.Lock()
		batch, w.ackDirty = w.ackDirty, batch[:0]
		w.ackMu.Unlock()
		for _, u := range batch {
			u.dirty.Store(false)
			u.mu.Lock()
			st := u.st
			u.mu.Unlock()
			if st != nil {
				if err := u.flush(st); err != nil {
					_ = st.ws.Close() // the reader sees the failure and reports the drop
				}
			}
		}
	}
}

// connectOne opens u's socket and waits for the ready frame. initial
// connections (the ramp-up) record time-to-ready from at.
func (w *Worker) connectOne(ctx context.Context, u *user, at time.Time, initial bool) error {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.ReadyTimeout.D())
	defer cancel()
	var ac *ackConn
	nd := w.dialers[u.target]
	d := websocket.Dialer{
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := nd.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			ac = &ackConn{Conn: c, u: u}
			return ac, nil
		},
		HandshakeTimeout: w.cfg.ReadyTimeout.D(),
		ReadBufferSize:   4096,
		WriteBufferSize:  512,
		WriteBufferPool:  w.wpool,
	}
	fail := func(kind, sample string) error {
		if initial {
			w.connErr.Add(1)
			w.connErrs.add(kind, sample)
		} else {
			w.errs.add("re"+kind, sample)
		}
		return errors.New(kind)
	}
	hdr := http.Header{"Authorization": {u.auth}}
	if u.dev != "" {
		hdr.Set(wire.DeviceIDHeader, u.dev)
	}
	ws, resp, err := d.DialContext(ctx, w.targets[u.target].WS, hdr)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			return fail(fmt.Sprintf("connect_http_%d_%s", resp.StatusCode, errorCode(body)),
				fmt.Sprintf("GET /v1/socket/updates (user %d) → %d %s", u.id, resp.StatusCode, trim(body)))
		}
		return fail("connect_"+classify(err), err.Error())
	}
	ws.SetReadLimit(wire.MaxFrameBytes * 16)
	deadline, _ := ctx.Deadline()
	_ = ws.SetReadDeadline(deadline)
	_, data, err := ws.ReadMessage()
	if err != nil {
		ws.Close()
		return fail("connect_no_ready_"+classify(err), fmt.Sprintf("user %d: waiting for ready: %v", u.id, err))
	}
	f, err := parseFrame(data)
	if err != nil || f.Type != wire.TypeReady || f.Ready == nil {
		ws.Close()
		return fail("connect_bad_ready", fmt.Sprintf("user %d: first frame is not ready: %s", u.id, trim(data)))
	}
	if f.Ready.UserID != u.id {
		ws.Close()
		return fail("connect_wrong_user", fmt.Sprintf("user %d: ready names user %d: %s", u.id, f.Ready.UserID, trim(data)))
	}
	_ = ws.SetReadDeadline(time.Time{})
	readyAt := time.Now()
	st := &connState{ws: ws}
	u.mu.Lock()
	u.st = st
	u.mu.Unlock()
	ac.st.Store(st)
	if w.stopping.Load() {
		ws.Close()
		return errors.New("stopping")
	}
	u.up.Store(true)
	w.ready.Add(1)
	if initial {
		w.connOK.Add(1)
		w.ttr.Record(readyAt.Sub(at))
	}
	go w.readLoop(u, st)
	return nil
}

// readLoop reads u's socket until it fails: records the highest event id
// for the ack, and matches delivered messages to their sends.
func (w *Worker) readLoop(u *user, st *connState) {
	var buf bytes.Buffer
	for {
		_, r, err := st.ws.NextReader()
		if err != nil {
			w.onDrop(u, st, err)
			return
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			w.onDrop(u, st, err)
			return
		}
		now := time.Now()
		f, err := parseFrame(buf.Bytes())
		if err != nil {
			w.errs.add("ws_bad_frame", trim(buf.Bytes()))
			continue
		}
		if f.ID > 0 {
			if f.ID > u.maxSeen.Load() {
				u.maxSeen.Store(f.ID)
			}
			switch w.cfg.Ack {
			case AckEvent:
				if err := u.flush(st); err != nil {
					st.ws.Close()
				}
			case AckInterval:
				w.markDirty(u)
			}
		}
		switch f.Type {
		case wire.TypeNewMessage:
			w.onDeliver(f.Nonce, now)
		case wire.TypeError:
			w.errs.add("ws_error_"+f.Code, trim(buf.Bytes()))
		}
	}
}

func (w *Worker) onDrop(u *user, st *connState, err error) {
	_ = st.ws.Close()
	if w.stopping.Load() {
		return
	}
	u.up.Store(false)
	w.ready.Add(-1)
	w.drops.Add(1)
	kind := "socket_drop_" + classify(err)
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		kind = fmt.Sprintf("socket_closed_%d", ce.Code)
	}
	w.errorsN.Add(1)
	w.errs.add(kind, fmt.Sprintf("user %d: %v", u.id, err))
	if w.cfg.Reconnect {
		go w.reconnect(u)
	}
}

func (w *Worker) reconnect(u *user) {
	backoff := time.Second
	for {
		t := time.NewTimer(backoff)
		select {
		case <-w.stop:
			t.Stop()
			return
		case <-t.C:
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-w.stop:
			case <-ctx.Done():
			}
			cancel()
		}()
		err := w.connectOne(ctx, u, time.Time{}, false)
		cancel()
		if err == nil {
			w.reconnects.Add(1)
			return
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// Connect opens every socket of the worker at its share of --connect-rate
// and returns when each is ready or has failed.
func (w *Worker) Connect(ctx context.Context) {
	w.setState("connect")
	start := time.Now()
	var wg sync.WaitGroup
	fire := func(k int64, at time.Time) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = w.connectOne(ctx, w.users[k], at, true)
		}()
	}
	rate := 0.0
	if w.cfg.ConnectRate > 0 {
		rate = w.cfg.ConnectRate * float64(w.cfg.UserCount) / float64(w.cfg.Users)
	}
	if rate > 0 {
		Schedule{Start: start, Rate: rate}.Pace(ctx, RealClock, start.Add(1000*time.Hour), int64(len(w.users)), fire)
	} else {
		for k := range w.users {
			fire(int64(k), start)
		}
	}
	wg.Wait()
	w.connSecs = time.Since(start).Seconds()
	w.setState("ready")
}

// ---- sends ----

// Run executes the warm-up and the measurement window starting at start,
// then waits for outstanding sends and deliveries (at most --drain). The
// sockets stay open until Close.
func (w *Worker) Run(ctx context.Context, start time.Time) {
	w.runStart = start
	w.measureStart = start.Add(w.cfg.Warmup.D())
	w.measureEnd = w.measureStart.Add(w.cfg.Duration.D())
	if w.iv != nil {
		w.iv.window(w.measureStart, w.measureEnd)
		w.iv.onReport = func(r IntervalReport) {
			if w.OnInterval != nil {
				w.OnInterval(r)
			}
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			w.iv.run(ctx, w.ready.Load)
		}()
		defer func() { <-done }()
	}
	if d := time.Until(start); d > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	w.setState("run")
	switch {
	case w.nsend == 0:
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(w.measureEnd)):
		}
	case w.cfg.WorkerRate > 0:
		s := Schedule{Start: start, Rate: w.cfg.WorkerRate}
		limit := int64(w.cfg.WorkerCap)
		s.Pace(ctx, RealClock, w.measureEnd, -1, func(k int64, at time.Time) {
			measured := !at.Before(w.measureStart)
			if measured {
				w.offered.Add(1)
			}
			w.iv.attempt(at)
			if w.inflight.Load() >= limit {
				w.overloadN.Add(1)
				w.errorsN.Add(1)
				w.errs.add("overload", "")
				if measured {
					w.overload.Add(1)
				}
				return
			}
			w.inflight.Add(1)
			w.dispatched.Add(1)
			w.sendWG.Add(1)
			go w.sendOne(ctx, at, measured)
		})
	default:
		var wg sync.WaitGroup
		for i := 0; i < w.cfg.WorkerConc; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					now := time.Now()
					if !now.Before(w.measureEnd) {
						return
					}
					measured := !now.Before(w.measureStart)
					if measured {
						w.offered.Add(1)
					}
					w.iv.attempt(now)
					w.inflight.Add(1)
					w.dispatched.Add(1)
					w.sendWG.Add(1)
					w.sendOne(ctx, now, measured)
				}
			}()
		}
		wg.Wait()
	}
	w.setState("drain")
	w.sendWG.Wait()
	deadline := time.Now().Add(w.cfg.Drain.D())
	for w.pendAccepted.Load() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	w.setState("done")
}

func (w *Worker) pickRecipient(s *user) *user {
	for range 32 {
		r := w.users[rand.IntN(len(w.users))]
		if r.id != s.id && r.up.Load() {
			return r
		}
	}
	return nil
}

func (w *Worker) fail(measured bool, kind, sample string) {
	w.errorsN.Add(1)
	w.errs.add(kind, sample)
	if measured {
		w.failed.Add(1)
	}
}

// sendOne posts one message scheduled at at.
func (w *Worker) sendOne(ctx context.Context, at time.Time, measured bool) {
	defer func() {
		w.inflight.Add(-1)
		w.sendWG.Done()
	}()
	s := w.users[int(w.rr.Add(1)-1)%w.nsend*w.devices]
	r := w.pickRecipient(s)
	if r == nil {
		w.fail(measured, "no_recipient", "no other socket of this worker is ready")
		return
	}
	reqID := w.cfg.RunBase + w.reqSeq.Add(1)
	b := make([]byte, 0, 96+w.cfg.Size)
	b = append(b, `{"requestId":`...)
	b = strconv.AppendInt(b, reqID, 10)
	b = append(b, `,"toUserId":`...)
	b = strconv.AppendInt(b, r.id, 10)
	b = append(b, `,"content":"`...)
	b = appendContent(b, reqID, w.cfg.Size)
	b = append(b, `","createdAt":"`...)
	b = wire.AppendTime(b, time.Now())
	b = append(b, `"}`...)

	w.pend.add(reqID, at, measured, r.id, w.devices)
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout.D())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.targets[s.target].Base+"/v1/messages", bytes.NewReader(b))
	if err != nil {
		w.pend.take(reqID)
		w.fail(measured, "request_error", err.Error())
		return
	}
	req.Header["Authorization"] = []string{s.auth}
	req.Header["Content-Type"] = []string{"application/json"}
	if s.dev != "" {
		req.Header[wire.DeviceIDHeader] = []string{s.dev} // the sending device: its socket need not get the copy
	}
	resp, err := w.clients[s.target].Do(req)
	if err != nil {
		kind := classify(err)
		if kind != "timeout" {
			// Never reached the server's answer; a timed-out send may still
			// be delivered and is left to match.
			w.pend.take(reqID)
		}
		w.fail(measured, kind, "POST /v1/messages: "+err.Error())
		return
	}
	if resp.StatusCode == http.StatusCreated {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		now := time.Now()
		if err != nil {
			w.fail(measured, "read_"+classify(err), "POST /v1/messages: reading 201 body: "+err.Error())
			return
		}
		w.accepted.Add(1)
		w.iv.accept(now, now.Sub(at))
		if !now.Before(w.measureStart) && now.Before(w.measureEnd) {
			w.acceptedInWin.Add(1)
		}
		if measured {
			w.okWin.Add(1)
			w.send201.Record(now.Sub(at))
		}
		if w.pend.accept(reqID) && measured {
			w.pendAccepted.Add(1)
		}
		return
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	w.pend.take(reqID)
	w.fail(measured, fmt.Sprintf("http_%d_%s", resp.StatusCode, errorCode(body)),
		fmt.Sprintf("POST /v1/messages %s → %d %s (Retry-After %q)", trim(b), resp.StatusCode, trim(body), resp.Header.Get("Retry-After")))
}

// onDeliver matches a new_message event to the send that produced it.
func (w *Worker) onDeliver(nonce int64, now time.Time) {
	if nonce < 0 {
		w.foreign.Add(1)
		return
	}
	p, last, ok := w.pend.deliver(nonce)
	if ok && p.measured {
		w.deliver.Record(now.Sub(p.at)) // every device's delivery
	}
	if ok && !last {
		return // more devices of the recipient to come
	}
	if !ok {
		if nonce > w.cfg.RunBase && nonce <= w.cfg.RunBase+w.reqSeq.Load() {
			w.dups.Add(1)
		} else {
			w.foreign.Add(1)
		}
		return
	}
	w.delivered.Add(1)
	w.iv.deliver(now, now.Sub(p.at), p.to)
	if p.accepted && p.measured {
		w.pendAccepted.Add(-1)
	}
	if p.measured {
		w.deliveredWin.Add(1)
	}
}

// Progress is the worker's state now; it consumes the interval histograms.
func (w *Worker) Progress() Progress {
	phase := *w.state.Load()
	if phase == "run" {
		now := time.Now()
		switch {
		case now.Before(w.measureStart):
			phase = "warmup"
		case now.Before(w.measureEnd):
			phase = "measure"
		default:
			phase = "drain"
		}
	}
	s := w.send201.TakeInterval()
	return Progress{
		Phase:      phase,
		Ready:      w.ready.Load(),
		ConnectOK:  w.connOK.Load(),
		ConnectErr: w.connErr.Load(),
		Dispatched: w.dispatched.Load(),
		Accepted:   w.accepted.Load(),
		Delivered:  w.delivered.Load(),
		Errors:     w.errorsN.Load(),
		Overload:   w.overloadN.Load(),
		Inflight:   w.inflight.Load(),
		Drops:      w.drops.Load(),
		P50Send:    s.P50,
		P99Send:    s.P99,
		P99Deliver: w.deliver.TakeInterval().P99,
		P99Ready:   w.ttr.TakeInterval().P99,
	}
}

// ConnectResult reports the ramp-up.
func (w *Worker) ConnectResult() ConnectResult {
	h := w.ttr.Snapshot()
	hh, _ := h.Import()
	errs, _ := w.connErrs.snapshot()
	return ConnectResult{
		Attempted:   int64(len(w.users)),
		Ready:       w.connOK.Load(),
		Failed:      w.connErr.Load(),
		Errors:      errs,
		Seconds:     w.connSecs,
		TimeToReady: Summarize(hh),
		Hist:        h,
	}
}

// Result reports the worker's run (call after Run).
func (w *Worker) Result() *Result {
	mode := "idle"
	switch {
	case w.nsend > 0 && w.cfg.WorkerRate > 0:
		mode = "open-loop"
	case w.nsend > 0:
		mode = "closed-loop"
	}
	errs, samples := w.errs.snapshot()
	cerrs, csamples := w.connErrs.snapshot()
	for k, v := range csamples {
		samples[k] = v
	}
	_ = cerrs
	r := &Result{
		Mode:          mode,
		Procs:         1,
		Users:         len(w.users) / w.devices,
		Devices:       w.devices,
		Senders:       w.nsend,
		WindowSeconds: w.cfg.Duration.D().Seconds(),
		Connect:       w.ConnectResult(),
		SocketDrops:   w.drops.Load(),
		Reconnects:    w.reconnects.Load(),
		Errors:        errs,
		ErrorSamples:  samples,
		ForeignFrames: w.foreign.Load(),
		DuplicateMsgs: w.dups.Load(),
	}
	s201, dlv := w.send201.Snapshot(), w.deliver.Snapshot()
	h1, _ := s201.Import()
	h2, _ := dlv.Import()
	r.Sends = SendResult{
		Offered:       w.offered.Load(),
		Overload:      w.overload.Load(),
		Accepted:      w.okWin.Load(),
		Failed:        w.failed.Load(),
		Delivered:     w.deliveredWin.Load(),
		Undelivered:   w.pend.undelivered(),
		AcceptedInWin: w.acceptedInWin.Load(),
		Send201:       Summarize(h1),
		Deliver:       Summarize(h2),
		Send201Hist:   s201,
		DeliverHist:   dlv,
	}
	r.Finish()
	return r
}

// Close closes every socket and stops reconnecting.
func (w *Worker) Close() {
	w.stopOnce.Do(func() {
		w.stopping.Store(true)
		close(w.stop)
		for _, u := range w.users {
			u.mu.Lock()
			st := u.st
			u.mu.Unlock()
			if st != nil {
				_ = st.ws.Close()
			}
		}
		for _, c := range w.clients {
			c.CloseIdleConnections()
		}
	})
}

// ---- helpers ----

type pend struct {
	at       time.Time
	to       int64 // the recipient
	measured bool
	accepted bool
	left     int // devices of the recipient still to get it
}

const pendShards = 64

type pendingMap struct {
	shards [pendShards]struct {
		mu sync.Mutex
		m  map[int64]pend
	}
}

func (p *pendingMap) init() {
	for i := range p.shards {
		p.shards[i].m = make(map[int64]pend)
	}
}

func (p *pendingMap) add(id int64, at time.Time, measured bool, to int64, devices int) {
	s := &p.shards[uint64(id)%pendShards]
	s.mu.Lock()
	s.m[id] = pend{at: at, to: to, measured: measured, left: devices}
	s.mu.Unlock()
}

// deliver counts one device's delivery of id; last reports that it was
// the recipient's last device (id is then forgotten). A device that gets
// a message twice is not told apart from another device.
func (p *pendingMap) deliver(id int64) (e pend, last, ok bool) {
	s := &p.shards[uint64(id)%pendShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok = s.m[id]
	if !ok {
		return e, false, false
	}
	if e.left--; e.left > 0 {
		s.m[id] = e
		return e, false, true
	}
	delete(s.m, id)
	return e, true, true
}

// accept marks id answered 201; false if it was already delivered.
func (p *pendingMap) accept(id int64) bool {
	s := &p.shards[uint64(id)%pendShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[id]
	if ok {
		e.accepted = true
		s.m[id] = e
	}
	return ok
}

func (p *pendingMap) take(id int64) (pend, bool) {
	s := &p.shards[uint64(id)%pendShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[id]
	if ok {
		delete(s.m, id)
	}
	return e, ok
}

// undelivered counts measured sends answered 201 and never delivered.
func (p *pendingMap) undelivered() int64 {
	var n int64
	for i := range p.shards {
		s := &p.shards[i]
		s.mu.Lock()
		for _, e := range s.m {
			if e.accepted && e.measured {
				n++
			}
		}
		s.mu.Unlock()
	}
	return n
}

type errCounter struct {
	mu     sync.Mutex
	n      map[string]int64
	sample map[string]string
	onAdd  func(kind string) // also told of every error (interval reports), if set
}

func (e *errCounter) add(kind, sample string) {
	if e.onAdd != nil {
		e.onAdd(kind)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == nil {
		e.n = map[string]int64{}
		e.sample = map[string]string{}
	}
	e.n[kind]++
	if _, ok := e.sample[kind]; !ok && sample != "" {
		e.sample[kind] = sample
	}
}

func (e *errCounter) snapshot() (map[string]int64, map[string]string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n, s := map[string]int64{}, map[string]string{}
	for k, v := range e.n {
		n[k] = v
	}
	for k, v := range e.sample {
		s[k] = v
	}
	return n, s
}

// classify names a transport error.
func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EADDRINUSE):
		return "no_local_port"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too_many_open_files"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "error"
}

// errorCode reads the code of an API error body.
func errorCode(body []byte) string {
	var eb wire.ErrorBody
	if json.Unmarshal(body, &eb) == nil && eb.Error.Code != "" {
		return eb.Error.Code
	}
	return "no_code"
}

func trim(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

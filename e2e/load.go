package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// LoadOptions configures a Load. Zero values take the defaults named.
type LoadOptions struct {
	URLs       []string // client API base URLs, one per node
	JWTSecret  string
	Shards     int
	Senders    []int64
	Recipients []int64
	Checker    *Checker
	Think      time.Duration // pause between one sender's messages; 0 = 10ms
	Timeout    time.Duration // per HTTP attempt; 0 = 3s
	// GiveUp is how long Stop lets a sender keep retrying its last message
	// before abandoning it; 0 = 30s.
	GiveUp time.Duration
}

// Load keeps senders posting messages like mobile clients: one message at a
// time per sender, each to the next node in turn, and on a 503, 429, 5xx or
// connection error the same requestId again on the next node after a short
// pause, until it is answered 201.
type Load struct {
	opts   LoadOptions
	client *http.Client
	tokens map[int64]string
	next   map[int64]int64 // per sender: the next requestId

	stop chan struct{}
	wg   sync.WaitGroup

	probeID atomic.Int64 // the last probe sender id handed out

	mu        sync.Mutex
	faults    []*Fault
	errCounts map[string]int
	maxLat    time.Duration
	lastOK    time.Time
}

// Fault is one injected failure and what the load saw after it.
type Fault struct {
	Name     string
	At       time.Time
	Affected []int // shards whose leader the fault hit

	firstOK map[int]time.Time // per affected shard: the first 201 of a send started after At
	errs    map[string]int
	maxLat  time.Duration // slowest successful send started after At
	stall   time.Duration // longest attempt in flight at At, until it ended (201 or error)
	oks     int
	probes  int
	trace   []string // the first attempts started after At, for the report
}

// NewLoad prepares a load; Start starts it.
func NewLoad(opts LoadOptions) *Load {
	if opts.Think == 0 {
		opts.Think = 10 * time.Millisecond
	}
	if opts.Timeout == 0 {
		opts.Timeout = 3 * time.Second
		// E2E_CLIENT_TIMEOUT=15s shows how long the server itself holds a
		// call during a failover.
		if d, err := time.ParseDuration(os.Getenv("E2E_CLIENT_TIMEOUT")); err == nil && d > 0 {
			opts.Timeout = d
		}
	}
	if opts.GiveUp == 0 {
		opts.GiveUp = 30 * time.Second
	}
	l := &Load{
		opts: opts,
		client: &http.Client{
			Timeout: opts.Timeout,
			Transport: &http.Transport{
				DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
				MaxIdleConnsPerHost: len(opts.Senders) + 4,
				IdleConnTimeout:     30 * time.Second,
			},
		},
		tokens:    map[int64]string{},
		next:      map[int64]int64{},
		errCounts: map[string]int{},
	}
	for _, s := range opts.Senders {
		l.tokens[s] = Token(opts.JWTSecret, s)
		l.next[s] = 1
	}
	l.probeID.Store(probeBase)
	return l
}

// Start runs every sender until Stop.
func (l *Load) Start() {
	l.stop = make(chan struct{})
	for i, s := range l.opts.Senders {
		l.wg.Add(1)
		go l.sender(i, s, l.next[s])
	}
}

// Stop ends the load: each sender finishes (or, after GiveUp, abandons) the
// message it is sending, so that every message a recipient may find was
// either answered 201 or counted as abandoned.
func (l *Load) Stop() {
	close(l.stop)
	l.wg.Wait()
	l.client.CloseIdleConnections()
}

func (l *Load) sender(index int, sender, firstReq int64) {
	defer l.wg.Done()
	attempt := index
	for req := firstReq; ; req++ {
		select {
		case <-l.stop:
			return
		default:
		}
		recipient := l.opts.Recipients[(index+int(req))%len(l.opts.Recipients)]
		l.send(&attempt, l.tokens[sender], sender, req, recipient)
		l.mu.Lock()
		l.next[sender] = req + 1
		l.mu.Unlock()
		time.Sleep(l.opts.Think)
	}
}

// send posts one message until it is answered 201, each attempt on the
// next node, or gives up GiveUp after Stop.
func (l *Load) send(attempt *int, token string, sender, req, recipient int64) {
	body, _ := json.Marshal(map[string]any{
		"requestId": req, "toUserId": recipient, "content": Content(sender, req),
		"createdAt": time.Now().UTC().Format("2006-01-02T15:04:05.000Z"),
	})
	var stopSince time.Time
	for {
		*attempt++
		url := l.url(*attempt)
		start := time.Now()
		id, kind := l.post(url, token, body)
		l.traceAttempt(start, url, sender, recipient, kind)
		if kind == "" {
			l.ok(Sent{Sender: sender, RequestID: req, MessageID: id, Recipient: recipient, Content: Content(sender, req), At: time.Now()}, start)
			return
		}
		l.failed(kind, start)
		if stopSince.IsZero() {
			select {
			case <-l.stop:
				stopSince = time.Now()
			default:
			}
		}
		if !stopSince.IsZero() && time.Since(stopSince) > l.opts.GiveUp {
			l.mu.Lock()
			l.errCounts["abandoned"]++
			l.mu.Unlock()
			return
		}
		// A client's retry pause. Retry-After says 1s; a short pause
		// instead keeps the measured resume time sharp, and moving to
		// the next node is what a client does after a failure anyway.
		time.Sleep(50 * time.Millisecond)
	}
}

func (l *Load) url(attempt int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.opts.URLs[attempt%len(l.opts.URLs)]
}

// SetURL changes the client API URL of node i (a container's published
// port can move when it is reconnected).
func (l *Load) SetURL(i int, url string) {
	l.mu.Lock()
	l.opts.URLs[i] = url
	l.mu.Unlock()
}

// probeBase is where probe sender ids start: each probe is a new user
// sending one message, so probes never wait behind each other.
const probeBase = 900000

// probe sends one message from a fresh sender to a recipient in shard,
// starting on node index first.
func (l *Load) probe(shard, first int) {
	defer l.wg.Done()
	var recipient int64
	for _, r := range l.opts.Recipients {
		if ShardOf(r, l.opts.Shards) == shard {
			recipient = r
			break
		}
	}
	if recipient == 0 {
		return
	}
	sender := l.probeID.Add(1)
	attempt := first
	l.send(&attempt, Token(l.opts.JWTSecret, sender), sender, 1, recipient)
}

// prober starts, every 100ms until every affected shard of f had a 201 (or
// 30s pass, or Stop), a probe per affected shard still waiting. The
// senders of the load may all be stuck in calls that were in flight when
// the fault hit; probes are fresh calls, so they see when the cluster
// answers again.
func (l *Load) prober(f *Fault) {
	defer l.wg.Done()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for n := 0; time.Now().Before(deadline); n++ {
		l.mu.Lock()
		var waiting []int
		for s, t := range f.firstOK {
			if t.IsZero() {
				waiting = append(waiting, s)
			}
		}
		f.probes += len(waiting)
		l.mu.Unlock()
		if len(waiting) == 0 {
			return
		}
		for _, s := range waiting {
			l.wg.Add(1)
			go l.probe(s, n+s)
		}
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
	}
}

// post sends once; kind is "" on 201, else a short description of the
// failure for the error counts.
func (l *Load) post(url, token string, body []byte) (id int64, kind string) {
	req, _ := http.NewRequest("POST", url+"/v1/messages", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := l.client.Do(req)
	if err != nil {
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			return 0, "timeout"
		case strings.Contains(err.Error(), "connection refused"):
			return 0, "refused"
		default:
			return 0, "conn-error"
		}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		json.Unmarshal(b, &e)
		return 0, fmt.Sprintf("%d %s", resp.StatusCode, e.Error.Code)
	}
	var out struct {
		Message              Message `json:"message"`
		FromMessageRequestID int64   `json:"fromMessageRequestId"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Message.MessageID <= 0 {
		return 0, "bad-201-body"
	}
	return out.Message.MessageID, ""
}

func (l *Load) ok(s Sent, start time.Time) {
	l.opts.Checker.Record(s)
	lat := s.At.Sub(start)
	shard := ShardOf(s.Recipient, l.opts.Shards)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastOK = s.At
	if lat > l.maxLat {
		l.maxLat = lat
	}
	for _, f := range l.faults {
		if start.Before(f.At) {
			if d := s.At.Sub(f.At); d > f.stall {
				f.stall = d
			}
			continue
		}
		f.oks++
		if lat > f.maxLat {
			f.maxLat = lat
		}
		if _, affected := f.firstOK[shard]; affected && f.firstOK[shard].IsZero() {
			f.firstOK[shard] = s.At
		}
	}
}

func (l *Load) failed(kind string, start time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errCounts[kind]++
	now := time.Now()
	for _, f := range l.faults {
		if !start.Before(f.At) {
			f.errs[kind]++
		} else if d := now.Sub(f.At); d > f.stall && now.After(f.At) {
			f.stall = d
		}
	}
}

// traceAttempt keeps the first attempts after each fault.
func (l *Load) traceAttempt(start time.Time, url string, sender, recipient int64, kind string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.faults {
		if start.Before(f.At) || len(f.trace) >= 400 {
			continue
		}
		if kind == "" {
			kind = "201"
		}
		f.trace = append(f.trace, fmt.Sprintf("+%v %s shard %d via %s: %s after %v",
			start.Sub(f.At).Round(time.Millisecond), map[bool]string{true: "probe", false: "send"}[sender > probeBase], ShardOf(recipient, l.opts.Shards), url, kind, time.Since(start).Round(time.Millisecond)))
	}
}

// Trace is the first attempts started after f, one a line.
func (l *Load) Trace(f *Fault) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(f.trace, "\n")
}

// MarkFault starts measuring a fault that hits the leaders of affected; call
// it just before injecting the fault.
func (l *Load) MarkFault(name string, affected []int) *Fault {
	f := &Fault{Name: name, At: time.Now(), Affected: affected, firstOK: map[int]time.Time{}, errs: map[string]int{}}
	for _, s := range affected {
		f.firstOK[s] = time.Time{}
	}
	l.mu.Lock()
	l.faults = append(l.faults, f)
	l.mu.Unlock()
	if len(affected) > 0 {
		l.wg.Add(1)
		go l.prober(f)
	}
	return f
}

// Resumed reports whether every affected shard has had a 201 since the
// fault, and the time from the fault to the first and to the last of those
// first 201s.
func (l *Load) Resumed(f *Fault) (done bool, first, all time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	done = true
	for _, t := range f.firstOK {
		if t.IsZero() {
			done = false
			continue
		}
		d := t.Sub(f.At)
		if first == 0 || d < first {
			first = d
		}
		if d > all {
			all = d
		}
	}
	return done, first, all
}

// Report describes a fault's measurements.
func (l *Load) Report(f *Fault) string {
	_, first, all := l.Resumed(f)
	l.mu.Lock()
	defer l.mu.Unlock()
	var per []string
	shards := make([]int, 0, len(f.firstOK))
	for s := range f.firstOK {
		shards = append(shards, s)
	}
	sort.Ints(shards)
	for _, s := range shards {
		if t := f.firstOK[s]; t.IsZero() {
			per = append(per, fmt.Sprintf("%d:never", s))
		} else {
			per = append(per, fmt.Sprintf("%d:%v", s, t.Sub(f.At).Round(time.Millisecond)))
		}
	}
	return fmt.Sprintf("%s: affected shards %v; first 201 on an affected shard after %v, on every affected shard after %v (per shard %s); %d probes; %d sends answered 201 since, slowest %v; calls in flight at the fault ended up to %v after it; failed attempts since: %v",
		f.Name, f.Affected, first.Round(time.Millisecond), all.Round(time.Millisecond), strings.Join(per, " "), f.probes, f.oks, f.maxLat.Round(time.Millisecond), f.stall.Round(time.Millisecond), f.errs)
}

// Totals describes the whole run's failed attempts.
func (l *Load) Totals() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("failed attempts over the run: %v; slowest successful send %v", l.errCounts, l.maxLat.Round(time.Millisecond))
}

// WaitResumed polls until every affected shard of f has had a 201, or
// ctx ends.
func (l *Load) WaitResumed(ctx context.Context, f *Fault) error {
	for {
		if done, _, _ := l.Resumed(f); done {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("sends to the affected shards did not resume: %s", l.Report(f))
		}
		pause(ctx, 10*time.Millisecond)
	}
}

// WaitAcked polls until at least n sends in total were answered 201.
func (l *Load) WaitAcked(ctx context.Context, n int) error {
	for l.opts.Checker.Acked() < n {
		if ctx.Err() != nil {
			return fmt.Errorf("only %d of %d sends answered 201: %s", l.opts.Checker.Acked(), n, l.Totals())
		}
		pause(ctx, 10*time.Millisecond)
	}
	return nil
}

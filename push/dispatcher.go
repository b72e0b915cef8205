package push

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgenode/edgenode/relaylog"
)

// Values of Options.Preview (the same as config's --push-preview).
const (
	PreviewFull  = "full"  // the message text
	PreviewFixed = "fixed" // Options.FixedText
	PreviewNone  = "none"  // no alert text: only the badge changes
)

// Defaults of Options.
const (
	DefaultDebounce        = time.Second
	DefaultAckTimeout      = 15 * time.Second
	DefaultTakeoverDelay   = 2 * time.Second
	DefaultConcurrency     = 32
	DefaultMaxAttempts     = 5
	DefaultRetryBase       = 500 * time.Millisecond
	DefaultRetryMax        = 30 * time.Second
	DefaultRetryBudget     = 2 * time.Minute
	DefaultRetryLater      = 5 * time.Minute
	DefaultExpiration      = 24 * time.Hour
	DefaultFixedText       = "New message"
	DefaultMaxPreviewBytes = 256
)

// Store is the part of the relay log the dispatcher uses; *relaylog.Log
// implements it.
type Store interface {
	ShardFor(user int64) int
	Serving(shard int) bool
	CheckServing(user int64) error
	PushState(user int64) relaylog.PushState
	DevicePushState(user int64, dev string) relaylog.PushState
	PushDue(user int64) bool
	Devices(user int64) []relaylog.Device
	AwaitingPush(shard int) []int64
	MarkPushed(ctx context.Context, user, upTo int64) error
	RemoveDeviceIfUnchanged(ctx context.Context, user int64, token string, registeredAt int64) error
}

// Options configure a Dispatcher. Store is required; every other zero value
// works.
type Options struct {
	Store Store
	// APNS and FCM send to devices of each platform; nil means devices of
	// that platform are skipped.
	APNS, FCM Sender
	// Online reports whether user has a live socket anywhere in the
	// cluster; nil means nobody ever has. It decides for push tokens bound
	// to no device (relaylog.Device.DeviceID empty).
	Online func(user int64) bool
	// DeviceOnline reports whether device dev of user has a live socket
	// anywhere in the cluster; nil means Online(user).
	DeviceOnline func(user int64, dev string) bool
	// Debounce is the wait after a user's first message not yet alerted
	// (or after the user went offline) before the user is checked; 0 means
	// DefaultDebounce.
	Debounce time.Duration
	// AckTimeout is how long a message may stay unacknowledged while the
	// user is online before an alert is sent anyway; 0 means
	// DefaultAckTimeout.
	AckTimeout time.Duration
	// TakeoverDelay is the wait, after this node starts leading a shard,
	// before its users awaiting an alert are checked (so that edges
	// re-register their sockets first); 0 means DefaultTakeoverDelay.
	TakeoverDelay time.Duration
	// Preview is PreviewFull, PreviewFixed or PreviewNone; "" means full.
	Preview string
	// FixedText is the body when Preview is PreviewFixed; "" means
	// DefaultFixedText.
	FixedText string
	// Title names the sender in the alert; nil means "User <id>" (the app
	// may replace it with the contact's name: fromUserId is in the data).
	Title func(from int64) string
	// MaxPreviewBytes cuts a full preview; 0 means DefaultMaxPreviewBytes.
	MaxPreviewBytes int
	// Expiration is how long providers keep trying to deliver an alert; 0
	// means DefaultExpiration.
	Expiration time.Duration
	// Concurrency caps provider requests in flight, and users checked at
	// once; 0 means DefaultConcurrency.
	Concurrency int
	// MaxAttempts bounds the requests for one alert to one device; 0 means
	// DefaultMaxAttempts.
	MaxAttempts int
	// RetryBase and RetryMax shape the exponential backoff between
	// attempts; 0 means DefaultRetryBase and DefaultRetryMax.
	RetryBase, RetryMax time.Duration
	// RetryBudget bounds the time one alert to one device may take, waits
	// included; an attempt that would start later is not made. 0 means
	// DefaultRetryBudget.
	RetryBudget time.Duration
	// RetryLater is when an alert that failed for now on every device
	// (provider down, throttled past the budget) is tried again, unless a
	// new message or the user's return settles it first; 0 means
	// DefaultRetryLater.
	RetryLater time.Duration
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the metrics; nil means none.
	Registerer prometheus.Registerer
	// Now is the clock of decisions and alerts; nil means time.Now. The
	// debounce timers run on real time.
	Now func() time.Time
}

func (o *Options) setDefaults() {
	if o.Online == nil {
		o.Online = func(int64) bool { return false }
	}
	if o.DeviceOnline == nil {
		online := o.Online
		o.DeviceOnline = func(user int64, _ string) bool { return online(user) }
	}
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = DefaultAckTimeout
	}
	if o.TakeoverDelay <= 0 {
		o.TakeoverDelay = DefaultTakeoverDelay
	}
	if o.Preview == "" {
		o.Preview = PreviewFull
	}
	if o.FixedText == "" {
		o.FixedText = DefaultFixedText
	}
	if o.Title == nil {
		o.Title = func(from int64) string { return "User " + strconv.FormatInt(from, 10) }
	}
	if o.MaxPreviewBytes <= 0 {
		o.MaxPreviewBytes = DefaultMaxPreviewBytes
	}
	if o.Expiration <= 0 {
		o.Expiration = DefaultExpiration
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.RetryBase <= 0 {
		o.RetryBase = DefaultRetryBase
	}
	if o.RetryMax <= 0 {
		o.RetryMax = DefaultRetryMax
	}
	if o.RetryLater <= 0 {
		o.RetryLater = DefaultRetryLater
	}
	if o.RetryBudget <= 0 {
		o.RetryBudget = DefaultRetryBudget
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Dispatcher decides when users are alerted and sends the alerts. Its
// methods are safe for concurrent use and do not block, so they may be
// called from raft's and the cluster's callbacks.
type Dispatcher struct {
	opts Options
	m    *metrics
	sem  chan struct{} // a slot per provider request in flight

	ctx    context.Context // ends at Close: aborts requests and waits
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	cond   *sync.Cond
	users  map[int64]*userState
	due    []int64 // users to check, first come first served
	closed bool
	// led is when this node began to lead each shard it leads (Serving):
	// until TakeoverDelay after, the other edges' sockets may not be
	// registered here yet, and a check would take their devices for
	// offline. One entry per shard led.
	led map[int]time.Time
}

// userState is what the dispatcher remembers of a user between a trigger
// and the check that settles it.
type userState struct {
	timer   *time.Timer
	at      time.Time // when timer fires
	since   time.Time // first message not yet alerted, as seen here
	queued  bool      // in due
	running bool      // being checked
	again   bool      // became due while running
	// alerted holds, per push token, the newest message its device was
	// alerted of while another device of the user still had time to
	// acknowledge: a recheck does not alert it again. Only this leader
	// knows it; the next one may alert once more (the collapse id merges
	// the two on the device).
	alerted map[string]int64
}

// New starts a dispatcher's workers. Close stops them.
func New(opts Options) *Dispatcher {
	opts.setDefaults()
	d := &Dispatcher{
		opts:  opts,
		m:     newMetrics(opts.Registerer),
		sem:   make(chan struct{}, opts.Concurrency),
		users: make(map[int64]*userState),
		led:   make(map[int]time.Time),
	}
	d.cond = sync.NewCond(&d.mu)
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.wg.Add(opts.Concurrency)
	for range opts.Concurrency {
		go d.worker()
	}
	return d
}

// Committed tells the dispatcher that events for user were committed
// (the log's commit stream, relaylog.Commits, on every replica: only the shard's leader
// acts). A message newer than the user's push mark schedules a check after
// the debounce, unless one is already scheduled sooner.
func (d *Dispatcher) Committed(user int64) {
	if !d.awaiting(user) {
		return
	}
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	us := d.stateLocked(user)
	if us == nil {
		return
	}
	if us.since.IsZero() {
		us.since = d.opts.Now()
	}
	d.scheduleLocked(user, us, now.Add(d.opts.Debounce))
}

// Offline tells the dispatcher that user's last socket in the cluster
// closed or its presence expired (the cluster's inbox delivers it at the
// user's home): messages waiting unalerted are alerted after the
// debounce.
func (d *Dispatcher) Offline(user int64) {
	if !d.awaiting(user) {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if us := d.stateLocked(user); us != nil {
		d.scheduleLocked(user, us, time.Now().Add(d.opts.Debounce))
	}
}

// Serving follows this node's leadership of shard
// (the log's commit stream, relaylog.Commits). A new leader checks, after TakeoverDelay,
// every user of the shard whose newest message is not alerted: a check its
// predecessor had scheduled is not lost, and meanwhile a device that looks
// offline is given that long (check). A former leader forgets the shard's
// scheduled checks.
func (d *Dispatcher) Serving(shard int, serving bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	if !serving {
		delete(d.led, shard)
		for u, us := range d.users {
			if us.timer != nil && d.opts.Store.ShardFor(u) == shard {
				us.timer.Stop()
				us.timer = nil
				d.forgetLocked(u, us)
			}
		}
		return
	}
	d.led[shard] = time.Now()
	// Listing the shard's queues takes a while on a big shard: not on
	// raft's leadership goroutine.
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		users := d.opts.Store.AwaitingPush(shard)
		at := time.Now().Add(d.opts.TakeoverDelay)
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, u := range users {
			if len(d.opts.Store.Devices(u)) == 0 {
				continue
			}
			if us := d.stateLocked(u); us != nil {
				d.scheduleLocked(u, us, at)
			}
		}
	}()
}

// Close stops the timers and workers and aborts requests in flight; it
// returns when every goroutine of the dispatcher ended.
func (d *Dispatcher) Close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	for _, us := range d.users {
		if us.timer != nil {
			us.timer.Stop()
		}
	}
	d.cond.Broadcast()
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
}

// awaiting reports whether this node leads user's shard and user has a
// message newer than the push mark that a device with a push token may
// lack: cheap checks that spare a timer for most commits (receipts, acks,
// users without tokens).
func (d *Dispatcher) awaiting(user int64) bool {
	s := d.opts.Store
	if !s.Serving(s.ShardFor(user)) {
		return false
	}
	return s.PushDue(user)
}

// stateLocked returns user's state, created if needed; nil once closed.
func (d *Dispatcher) stateLocked(user int64) *userState {
	if d.closed {
		return nil
	}
	us := d.users[user]
	if us == nil {
		us = &userState{}
		d.users[user] = us
	}
	return us
}

// scheduleLocked makes sure user is checked at at or sooner.
func (d *Dispatcher) scheduleLocked(user int64, us *userState, at time.Time) {
	if us.queued {
		return
	}
	if us.timer != nil {
		if !us.at.After(at) {
			return
		}
		us.timer.Stop()
	}
	us.at = at
	us.timer = time.AfterFunc(time.Until(at), func() { d.fire(user) })
}

// fire queues user for a worker when its timer ends.
func (d *Dispatcher) fire(user int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	us := d.users[user]
	if d.closed || us == nil {
		return
	}
	us.timer = nil
	d.enqueueLocked(user, us)
}

func (d *Dispatcher) enqueueLocked(user int64, us *userState) {
	switch {
	case us.running:
		us.again = true
	case !us.queued:
		us.queued = true
		d.due = append(d.due, user)
		d.cond.Signal()
	}
}

// forgetLocked drops the state of a user with nothing scheduled.
func (d *Dispatcher) forgetLocked(user int64, us *userState) {
	if us.timer == nil && !us.queued && !us.running {
		delete(d.users, user)
	}
}

func (d *Dispatcher) worker() {
	defer d.wg.Done()
	for {
		d.mu.Lock()
		for len(d.due) == 0 && !d.closed {
			d.cond.Wait()
		}
		if d.closed {
			d.mu.Unlock()
			return
		}
		user := d.due[0]
		d.due = d.due[1:]
		us := d.users[user]
		us.queued, us.running = false, true
		since, alerted := us.since, us.alerted
		var settling time.Time
		if t, ok := d.led[d.opts.Store.ShardFor(user)]; ok {
			settling = t.Add(d.opts.TakeoverDelay)
		}
		d.mu.Unlock()

		recheck, settled, alerted := d.check(user, since, alerted, settling)

		d.mu.Lock()
		us.running = false
		us.alerted = alerted
		if settled {
			us.since = time.Time{}
			us.alerted = nil
		}
		if us.again {
			us.again = false
			d.enqueueLocked(user, us)
		} else if !recheck.IsZero() && !d.closed {
			d.scheduleLocked(user, us, recheck)
		}
		d.forgetLocked(user, us)
		d.mu.Unlock()
	}
}

// check decides which of user's push tokens are alerted now and sends the
// alerts. Each token is its device's: a device that acknowledged the
// user's newest message needs none; one with a live socket gets
// AckTimeout to acknowledge it first; the others are alerted now, with
// the count of messages their device has not acknowledged as the badge.
// alerted is what earlier checks of this round alerted (see
// userState.alerted). It returns when to check again (zero: not by
// itself), whether the user's waiting messages are settled (every device
// has them, or was alerted, or nothing is left to alert) and alerted
// updated. Until settling (TakeoverDelay after this node began to lead
// the user's shard), a device without a live socket here is given until
// then: the user's sockets on other nodes register with a new leader
// within the subscriptions' reconcile, and until they do their devices
// look offline.
func (d *Dispatcher) check(user int64, since time.Time, alerted map[string]int64, settling time.Time) (recheck time.Time, settled bool, _ map[string]int64) {
	s := d.opts.Store
	if err := s.CheckServing(user); err != nil {
		d.m.checks.WithLabelValues(DecisionNotLeader).Inc()
		return time.Time{}, true, nil
	}
	if !s.PushDue(user) {
		d.m.checks.WithLabelValues(DecisionNothing).Inc()
		return time.Time{}, true, nil
	}
	var (
		now     = d.opts.Now()
		newest  int64     // the newest message a token's device lacks
		waitFor time.Time // the first deadline of a device with a socket
		devices []relaylog.Device
		notes   []Notification
		latest  []int64 // the newest message of each alert
	)
	for _, dev := range s.Devices(user) {
		st := s.DevicePushState(user, dev.DeviceID)
		if st.Unread == 0 || st.Latest.ID <= st.Pushed {
			continue
		}
		newest = max(newest, st.Latest.ID)
		if st.Latest.ID <= alerted[dev.Token] {
			continue
		}
		var online bool
		if dev.DeviceID == relaylog.DefaultDevice {
			online = d.opts.Online(user)
		} else {
			online = d.opts.DeviceOnline(user, dev.DeviceID)
		}
		if online {
			start := since
			if start.IsZero() {
				start = st.Latest.Time()
			}
			if deadline := start.Add(d.opts.AckTimeout); now.Before(deadline) {
				if waitFor.IsZero() || deadline.Before(waitFor) {
					waitFor = deadline
				}
				continue
			}
		} else if wait := time.Until(settling); wait > 0 {
			if deadline := now.Add(wait); waitFor.IsZero() || deadline.Before(waitFor) {
				waitFor = deadline
			}
			continue
		}
		devices = append(devices, dev)
		notes = append(notes, d.notification(user, st))
		latest = append(latest, st.Latest.ID)
	}
	switch {
	case len(devices) > 0:
	case !waitFor.IsZero():
		d.m.checks.WithLabelValues(DecisionDeferred).Inc()
		return time.Now().Add(waitFor.Sub(now)), false, alerted
	case newest == 0:
		d.m.checks.WithLabelValues(DecisionNothing).Inc()
		return time.Time{}, true, nil
	default:
		// Every device lacking a message was alerted by an earlier
		// check of this round.
		d.markPushed(user, newest)
		return time.Time{}, true, nil
	}
	outcomes := make([]deviceOutcome, len(devices))
	var wg sync.WaitGroup
	for i, dev := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outcomes[i] = d.deliver(user, dev, notes[i])
		}()
	}
	wg.Wait()
	var sent, temporary, tried bool
	for i, o := range outcomes {
		tried = tried || o != skipped
		sent = sent || o == delivered
		temporary = temporary || o == failedForNow
		if o == delivered && !waitFor.IsZero() {
			if alerted == nil {
				alerted = make(map[string]int64)
			}
			alerted[devices[i].Token] = latest[i]
		}
	}
	switch {
	case !tried && waitFor.IsZero():
		d.m.checks.WithLabelValues(DecisionNoDevices).Inc()
		return time.Time{}, true, nil
	case sent:
		d.m.checks.WithLabelValues(DecisionAlerted).Inc()
	case tried:
		d.m.checks.WithLabelValues(DecisionFailed).Inc()
	}
	// A device with a live socket still has time to acknowledge: check
	// again at its deadline (or after the next message's debounce),
	// alerting only those not alerted yet. Acknowledgements wake no check:
	// the one at the deadline finds them.
	if !waitFor.IsZero() {
		return time.Now().Add(waitFor.Sub(now)), false, alerted
	}
	// When every device failed for now, the mark stays behind and the
	// alert is tried again later (or by the next message, or the next
	// leader, whichever comes first).
	if !sent && temporary {
		return time.Now().Add(d.opts.RetryLater), false, alerted
	}
	d.markPushed(user, newest)
	return time.Time{}, true, nil
}

// markPushed records that user's devices were alerted of the messages up
// to upTo.
func (d *Dispatcher) markPushed(user, upTo int64) {
	ctx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
	defer cancel()
	if err := d.opts.Store.MarkPushed(ctx, user, upTo); err != nil {
		// The next leader alerts again; the collapse id merges the two.
		d.opts.Logger.Warn("push: record alert", "user", user, "err", err)
	}
}

// notification builds the alert for user's state; Token, Topic and Sandbox
// are filled per device.
func (d *Dispatcher) notification(user int64, st relaylog.PushState) Notification {
	from := st.Latest.From
	n := Notification{
		Badge:      st.Unread,
		CollapseID: "edgenode-" + strconv.FormatInt(user, 10),
		Data: map[string]string{
			"fromUserId": strconv.FormatInt(from, 10),
			"messageId":  strconv.FormatInt(st.Latest.ID, 10),
			"unread":     strconv.Itoa(st.Unread),
		},
		Expiration: d.opts.Now().Add(d.opts.Expiration),
	}
	switch d.opts.Preview {
	case PreviewNone:
	case PreviewFixed:
		n.Title, n.Body = d.opts.Title(from), d.opts.FixedText
	default:
		n.Title, n.Body = d.opts.Title(from), truncate(st.Latest.Content, d.opts.MaxPreviewBytes)
	}
	return n
}

// truncate cuts s to at most max bytes at a rune boundary, marking the cut.
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	const ellipsis = "…"
	cut := max - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

type deviceOutcome uint8

const (
	skipped       deviceOutcome = iota // no client for the platform
	delivered                          // the provider accepted the alert
	removed                            // the token was dead
	failedForNow                       // temporary failures outlasted the retries
	failedForGood                      // the provider rejected the alert
)

// deliver sends n to one device, retrying temporary failures.
func (d *Dispatcher) deliver(user int64, dev relaylog.Device, n Notification) deviceOutcome {
	var sender Sender
	provider := dev.Platform
	switch provider {
	case ProviderAPNS:
		sender = d.opts.APNS
	case ProviderFCM:
		sender = d.opts.FCM
	}
	if sender == nil {
		d.opts.Logger.Debug("push: no client for the device's platform", "user", user, "platform", provider)
		return skipped
	}
	n.Token, n.Topic, n.Sandbox = dev.Token, dev.Topic, dev.Sandbox
	log := d.opts.Logger.With("user", user, "provider", provider)
	start := time.Now()
	for attempt := 1; ; attempt++ {
		select {
		case d.sem <- struct{}{}:
		case <-d.ctx.Done():
			return failedForNow
		}
		t0 := time.Now()
		err := sender.Send(d.ctx, n)
		d.m.latency.WithLabelValues(provider).Observe(time.Since(t0).Seconds())
		<-d.sem
		if err == nil {
			d.m.requests.WithLabelValues(provider, OutcomeSent).Inc()
			return delivered
		}
		if errors.Is(err, ErrUnregistered) {
			d.m.requests.WithLabelValues(provider, OutcomeUnregistered).Inc()
			log.Info("push: removing a dead device token", "err", err)
			ctx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
			if err := d.opts.Store.RemoveDeviceIfUnchanged(ctx, user, dev.Token, dev.RegisteredAt); err != nil {
				log.Warn("push: remove dead device token", "err", err)
			}
			cancel()
			return removed
		}
		if !errors.Is(err, ErrRetryable) {
			d.m.requests.WithLabelValues(provider, OutcomeFailed).Inc()
			log.Warn("push: alert rejected", "err", err)
			return failedForGood
		}
		wait := d.backoff(attempt, RetryAfter(err))
		if attempt >= d.opts.MaxAttempts || time.Since(start)+wait > d.opts.RetryBudget || d.ctx.Err() != nil {
			d.m.requests.WithLabelValues(provider, OutcomeFailed).Inc()
			log.Warn("push: alert failed after retries", "attempts", attempt, "err", err)
			return failedForNow
		}
		d.m.requests.WithLabelValues(provider, OutcomeRetried).Inc()
		log.Debug("push: retrying", "attempt", attempt, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-d.ctx.Done():
			t.Stop()
			return failedForNow
		}
	}
}

// backoff is the wait before attempt+1: exponential with equal jitter, and
// never shorter than the provider's Retry-After.
func (d *Dispatcher) backoff(attempt int, retryAfter time.Duration) time.Duration {
	b := d.opts.RetryBase << min(attempt-1, 20)
	if b > d.opts.RetryMax || b <= 0 {
		b = d.opts.RetryMax
	}
	wait := b/2 + rand.N(b/2+1)
	if retryAfter > 0 && wait < retryAfter {
		wait = retryAfter + rand.N(d.opts.RetryBase/2+1)
	}
	return wait
}

package push_test

import (
	"context"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgenode/edgenode/push"
	"github.com/edgenode/edgenode/push/pushtest"
	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

const (
	alice = int64(7)  // sender
	bob   = int64(10) // recipient
)

// harness is a lone relay log on a temp dir with a dispatcher sending to
// the fake providers.
type harness struct {
	t    *testing.T
	log  *relaylog.Log
	apns *pushtest.APNS
	fcm  *pushtest.FCM
	reg  *prometheus.Registry
	opts push.Options
	d    atomic.Pointer[push.Dispatcher]

	mu     sync.Mutex
	online map[int64]bool
	req    int64
	handed map[int64]int // commits the fan-out handed to the dispatcher, per user
}

func newHarness(t *testing.T, mod func(*push.Options)) *harness {
	t.Helper()
	h := &harness{t: t, apns: pushtest.NewAPNS(), fcm: pushtest.NewFCM(), reg: prometheus.NewRegistry(), online: map[int64]bool{}, handed: map[int64]int{}}
	t.Cleanup(h.apns.Close)
	t.Cleanup(h.fcm.Close)
	l, err := relaylog.Open(relaylog.Options{
		Dir: t.TempDir(), NodeID: "n1", Shards: 2, NoSync: true, HeartbeatTimeout: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.log = l
	t.Cleanup(func() { l.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	// The node's fan-out: the log's commit stream to the dispatcher of
	// the moment (start makes a new one, as a restarted node does).
	fanCtx, stopFan := context.WithCancel(context.Background())
	t.Cleanup(stopFan)
	go l.Commits().Run(fanCtx, func(u int64) {
		if d := h.d.Load(); d != nil {
			d.Committed(u)
		}
		h.mu.Lock()
		h.handed[u]++
		h.mu.Unlock()
	}, func(s int, on bool) {
		if d := h.d.Load(); d != nil {
			d.Serving(s, on)
		}
	})
	h.opts = push.Options{
		Store: l, APNS: newAPNS(t, h.apns, nil), FCM: newFCM(t, h.fcm, nil), Online: h.isOnline,
		Debounce: 100 * time.Millisecond, AckTimeout: time.Minute, TakeoverDelay: 100 * time.Millisecond,
		RetryBase: 50 * time.Millisecond, Registerer: h.reg,
	}
	if mod != nil {
		mod(&h.opts)
	}
	h.start()
	t.Cleanup(func() {
		if d := h.d.Load(); d != nil {
			d.Close()
		}
		checkNoDispatcherGoroutines(t)
	})
	return h
}

// start makes a new dispatcher, as a node does when it starts, and hands
// it the shards this node leads.
func (h *harness) start() *push.Dispatcher {
	d := push.New(h.opts)
	h.d.Store(d)
	for s := 0; s < h.log.Shards(); s++ {
		if h.log.Serving(s) {
			d.Serving(s, true)
		}
	}
	return d
}

func (h *harness) isOnline(u int64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.online[u]
}

func (h *harness) setOnline(u int64, on bool) {
	h.mu.Lock()
	h.online[u] = on
	h.mu.Unlock()
}

func (h *harness) register(user int64, platform, token string) {
	h.t.Helper()
	if err := h.log.RegisterDevice(context.Background(), user, relaylog.Device{Platform: platform, Token: token}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) send(from, to int64, content string) relaylog.Event {
	h.t.Helper()
	h.mu.Lock()
	h.req++
	req := h.req
	h.mu.Unlock()
	ev, _, err := h.log.Send(context.Background(), from, wire.NewMessageRequest{RequestID: req, ToUserID: to, Content: content, CreatedAt: "2026-11-27T10:00:00.000Z"})
	if err != nil {
		h.t.Fatal(err)
	}
	return ev
}

// counter reads a counter of the dispatcher's registry.
func (h *harness) counter(name, label, value string) float64 {
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

func (h *harness) requests(provider, outcome string) float64 {
	mfs, _ := h.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "edgenode_push_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var p, o string
			for _, lp := range m.GetLabel() {
				switch lp.GetName() {
				case "provider":
					p = lp.GetValue()
				case "outcome":
					o = lp.GetValue()
				}
			}
			if p == provider && o == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func (h *harness) checks(decision string) float64 {
	return h.counter("edgenode_push_checks_total", "decision", decision)
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func checkNoDispatcherGoroutines(t *testing.T) {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	if strings.Contains(string(buf), "push.(*Dispatcher)") {
		t.Errorf("dispatcher goroutines left after Close:\n%s", buf)
	}
}

func alertOf(r pushtest.APNSRequest) (title, body string, badge float64) {
	aps, _ := r.Payload["aps"].(map[string]any)
	alert, _ := aps["alert"].(map[string]any)
	title, _ = alert["title"].(string)
	body, _ = alert["body"].(string)
	badge, _ = aps["badge"].(float64)
	return
}

func TestBurstToOfflineUserGivesOneCollapsedAlertPerDevice(t *testing.T) {
	h := newHarness(t, nil)
	h.register(bob, "apns", apnsToken)
	h.register(bob, "fcm", fcmToken)
	first := h.send(alice, bob, "one")
	var last relaylog.Event
	for _, c := range []string{"two", "three", "four", "five"} {
		last = h.send(alice, bob, c)
	}
	if !h.apns.Wait(5*time.Second, func(r []pushtest.APNSRequest) bool { return len(r) >= 1 }) ||
		!h.fcm.Wait(5*time.Second, func(r []pushtest.FCMRequest) bool { return len(r) >= 1 }) {
		t.Fatal("no alert within 5 s")
	}
	waitFor(t, "the push mark", 5*time.Second, func() bool { return h.log.PushState(bob).Pushed == last.ID })

	debounceEnd := first.Time().Add(h.opts.Debounce)
	a := h.apns.Delivered(apnsToken)
	f := h.fcm.Delivered(fcmToken)
	if len(a) != 1 || len(f) != 1 || len(h.apns.Requests()) != 1 || len(h.fcm.Requests()) != 1 {
		t.Fatalf("%d APNs and %d FCM alerts for one burst, want 1 each", len(h.apns.Requests()), len(h.fcm.Requests()))
	}
	t.Logf("debounce end to request: APNs %v, FCM %v", a[0].At.Sub(debounceEnd), f[0].At.Sub(debounceEnd))
	for _, at := range []time.Time{a[0].At, f[0].At} {
		if at.Before(debounceEnd.Add(-5*time.Millisecond)) || at.After(debounceEnd.Add(2*time.Second)) {
			t.Fatalf("alert at %v, debounce ended at %v", at, debounceEnd)
		}
	}
	title, body, badge := alertOf(a[0])
	if title != "User 7" || body != "five" || badge != 5 || a[0].Header.Get("apns-collapse-id") != "edgenode-10" {
		t.Fatalf("APNs alert %q %q badge %v collapse %q", title, body, badge, a[0].Header.Get("apns-collapse-id"))
	}
	m := f[0].Message
	n, _ := m["notification"].(map[string]any)
	android, _ := m["android"].(map[string]any)
	an, _ := android["notification"].(map[string]any)
	if n["body"] != "five" || an["notification_count"] != 5.0 || android["collapse_key"] != "edgenode-10" {
		t.Fatalf("FCM message %s", f[0].Body)
	}
	if got := h.requests("apns", push.OutcomeSent) + h.requests("fcm", push.OutcomeSent); got != 2 {
		t.Fatalf("sent metric %v", got)
	}

	// A second burst is a second alert with the same collapse id.
	h.send(alice, bob, "six")
	if !h.apns.Wait(5*time.Second, func(r []pushtest.APNSRequest) bool { return len(r) == 2 }) {
		t.Fatal("no alert for the second burst")
	}
	a = h.apns.Delivered(apnsToken)
	if _, body, badge := alertOf(a[1]); body != "six" || badge != 6 || a[1].Header.Get("apns-collapse-id") != "edgenode-10" {
		t.Fatalf("second alert %q badge %v", body, badge)
	}
}

func TestConnectedUserWhoAcknowledgesGetsNoAlert(t *testing.T) {
	h := newHarness(t, func(o *push.Options) { o.Debounce = 300 * time.Millisecond })
	h.register(bob, "apns", apnsToken)
	h.register(bob, "fcm", fcmToken)
	h.setOnline(bob, true)
	ev := h.send(alice, bob, "hi")
	// The fan-out reads the commit stream on its own goroutine: ack once
	// the dispatcher has seen the message, as a socket's ack would come.
	waitFor(t, "the send handed to the dispatcher", 5*time.Second, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.handed[bob] >= 1
	})
	if _, err := h.log.Ack(context.Background(), bob, ev.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the check after the debounce", 5*time.Second, func() bool { return h.checks(push.DecisionNothing) >= 1 })
	if n := len(h.apns.Requests()) + len(h.fcm.Requests()); n != 0 {
		t.Fatalf("%d alerts to a user whose socket acknowledged", n)
	}
}

func TestOnlineUserIsAlertedWhenTheAckTimesOut(t *testing.T) {
	h := newHarness(t, func(o *push.Options) { o.AckTimeout = 600 * time.Millisecond })
	h.register(bob, "apns", apnsToken)
	h.setOnline(bob, true)
	ev := h.send(alice, bob, "are you there")
	waitFor(t, "a deferred check", 5*time.Second, func() bool { return h.checks(push.DecisionDeferred) >= 1 })
	if !h.apns.Wait(5*time.Second, func(r []pushtest.APNSRequest) bool { return len(r) == 1 }) {
		t.Fatal("no alert after the ack timeout")
	}
	if at := h.apns.Requests()[0].At; at.Sub(ev.Time()) < 600*time.Millisecond-5*time.Millisecond {
		t.Fatalf("alerted %v after the message, before the ack timeout", at.Sub(ev.Time()))
	}
}

func TestUserGoingOfflineIsAlerted(t *testing.T) {
	h := newHarness(t, nil) // ack timeout: a minute
	h.register(bob, "fcm", fcmToken)
	h.setOnline(bob, true)
	h.send(alice, bob, "hi")
	waitFor(t, "a deferred check", 5*time.Second, func() bool { return h.checks(push.DecisionDeferred) >= 1 })
	if len(h.fcm.Requests()) != 0 {
		t.Fatal("alerted while online")
	}
	h.setOnline(bob, false)
	gone := time.Now()
	h.d.Load().Offline(bob)
	if !h.fcm.Wait(5*time.Second, func(r []pushtest.FCMRequest) bool { return len(r) == 1 }) {
		t.Fatal("no alert after going offline")
	}
	if d := h.fcm.Requests()[0].At.Sub(gone); d < h.opts.Debounce-5*time.Millisecond || d > h.opts.Debounce+2*time.Second {
		t.Fatalf("alerted %v after going offline", d)
	}
}

// senderFunc adapts a function to push.Sender.
type senderFunc func(context.Context, push.Notification) error

func (f senderFunc) Send(ctx context.Context, n push.Notification) error { return f(ctx, n) }

func TestDeadTokensAreRemoved(t *testing.T) {
	const apnsToken3 = "cc1f3d6c1a7a3a3e9b0e2b2d6f1c4e5a7b9d0c1e2f3a4b5c6d7e8f9a0b1c2d3e"
	var h *harness
	h = newHarness(t, func(o *push.Options) {
		apns := o.APNS
		// apnsToken3 is registered again while its dead answer is on the
		// way: it must stay.
		o.APNS = senderFunc(func(ctx context.Context, n push.Notification) error {
			err := apns.Send(ctx, n)
			if n.Token == apnsToken3 {
				h.register(bob, "apns", apnsToken3)
			}
			return err
		})
	})
	h.register(bob, "apns", apnsToken)
	h.register(bob, "apns", apnsToken2)
	h.register(bob, "apns", apnsToken3)
	h.register(bob, "fcm", fcmToken)
	h.register(bob, "fcm", fcmToken2)
	h.apns.Script(apnsToken, pushtest.Response{Status: 410, Reason: "Unregistered"})
	h.apns.Script(apnsToken2, pushtest.Response{Status: 400, Reason: "BadDeviceToken"})
	h.apns.Script(apnsToken3, pushtest.Response{Status: 410, Reason: "Unregistered"})
	h.fcm.Script(fcmToken, pushtest.Response{Status: 404, Reason: "UNREGISTERED"})
	h.send(alice, bob, "hi")
	tokens := func() []string {
		var out []string
		for _, d := range h.log.Devices(bob) {
			out = append(out, d.Token)
		}
		slices.Sort(out)
		return out
	}
	want := []string{apnsToken3, fcmToken2}
	waitFor(t, "dead tokens removed", 5*time.Second, func() bool { return slices.Equal(tokens(), want) })
	waitFor(t, "the check to end", 5*time.Second, func() bool { return h.checks(push.DecisionAlerted) == 1 })
	if got := tokens(); !slices.Equal(got, want) {
		t.Fatalf("devices %v, want %v", got, want)
	}
	if a, f := h.requests("apns", push.OutcomeUnregistered), h.requests("fcm", push.OutcomeUnregistered); a != 3 || f != 1 {
		t.Fatalf("unregistered: apns %v fcm %v", a, f)
	}
	if len(h.fcm.Delivered(fcmToken2)) != 1 {
		t.Fatal("the live device was not alerted")
	}
}

func TestRetriesHonourRetryAfter(t *testing.T) {
	h := newHarness(t, nil)
	h.register(bob, "apns", apnsToken)
	h.register(bob, "fcm", fcmToken)
	h.apns.Script(apnsToken, pushtest.Response{Status: 429, Reason: "TooManyRequests", RetryAfter: "1"})
	h.fcm.Script(fcmToken, pushtest.Response{Status: 503}, pushtest.Response{Status: 503})
	ev := h.send(alice, bob, "hi")
	if !h.apns.Wait(10*time.Second, func(r []pushtest.APNSRequest) bool { return len(r) == 2 }) ||
		!h.fcm.Wait(10*time.Second, func(r []pushtest.FCMRequest) bool { return len(r) == 3 }) {
		t.Fatalf("requests: %d APNs, %d FCM", len(h.apns.Requests()), len(h.fcm.Requests()))
	}
	a := h.apns.Requests()
	if a[0].Status != 429 || a[1].Status != 200 {
		t.Fatalf("APNs answers %d, %d", a[0].Status, a[1].Status)
	}
	if gap := a[1].At.Sub(a[0].At); gap < time.Second || gap > 3*time.Second {
		t.Fatalf("retried %v after Retry-After: 1", gap)
	}
	f := h.fcm.Requests()
	if f[0].Status != 503 || f[1].Status != 503 || f[2].Status != 200 {
		t.Fatalf("FCM answers %d %d %d", f[0].Status, f[1].Status, f[2].Status)
	}
	// Exponential: the second wait is about twice the first (50 ms base).
	if g1, g2 := f[1].At.Sub(f[0].At), f[2].At.Sub(f[1].At); g1 < 25*time.Millisecond || g2 < 50*time.Millisecond {
		t.Fatalf("backoff %v then %v", g1, g2)
	}
	waitFor(t, "the push mark", 5*time.Second, func() bool { return h.log.PushState(bob).Pushed == ev.ID })
	if r1, r2 := h.requests("apns", push.OutcomeRetried), h.requests("fcm", push.OutcomeRetried); r1 != 1 || r2 != 2 {
		t.Fatalf("retried metric: apns %v fcm %v", r1, r2)
	}
}

// Temporary failures are retried a bounded number of times; when every
// device failed, the push mark stays, so the next trigger tries again.
func TestRetriesAreBounded(t *testing.T) {
	h := newHarness(t, func(o *push.Options) { o.MaxAttempts = 3 })
	h.register(bob, "fcm", fcmToken)
	for range 3 {
		h.fcm.Script(fcmToken, pushtest.Response{Status: 503})
	}
	h.send(alice, bob, "hi")
	waitFor(t, "the check to fail", 5*time.Second, func() bool { return h.checks(push.DecisionFailed) == 1 })
	if n := len(h.fcm.Requests()); n != 3 {
		t.Fatalf("%d attempts, want 3", n)
	}
	if h.log.PushState(bob).Pushed != 0 || h.requests("fcm", push.OutcomeFailed) != 1 {
		t.Fatal("a failed alert was marked as sent")
	}
	ev := h.send(alice, bob, "again")
	if !h.fcm.Wait(5*time.Second, func(r []pushtest.FCMRequest) bool { return len(r) == 4 && r[3].Status == 200 }) {
		t.Fatal("the next message did not alert")
	}
	waitFor(t, "the push mark", 5*time.Second, func() bool { return h.log.PushState(bob).Pushed == ev.ID })
}

// An alert that failed for now on every device is tried again by itself,
// without waiting for another message.
func TestFailedAlertIsRetriedLater(t *testing.T) {
	h := newHarness(t, func(o *push.Options) { o.MaxAttempts = 2; o.RetryLater = 300 * time.Millisecond })
	h.register(bob, "fcm", fcmToken)
	for range 2 {
		h.fcm.Script(fcmToken, pushtest.Response{Status: 503})
	}
	ev := h.send(alice, bob, "hi")
	if !h.fcm.Wait(10*time.Second, func(r []pushtest.FCMRequest) bool { return len(r) == 3 && r[2].Status == 200 }) {
		t.Fatalf("no retry after the failed alert: %d requests", len(h.fcm.Requests()))
	}
	waitFor(t, "the push mark", 5*time.Second, func() bool { return h.log.PushState(bob).Pushed == ev.ID })
	if h.checks(push.DecisionFailed) != 1 || h.checks(push.DecisionAlerted) != 1 {
		t.Fatalf("checks: failed %v, alerted %v", h.checks(push.DecisionFailed), h.checks(push.DecisionAlerted))
	}
}

func TestPreviewSettings(t *testing.T) {
	for _, tc := range []struct {
		preview     string
		title, body string
	}{
		{push.PreviewFixed, "User 7", "New message"},
		{push.PreviewNone, "", ""},
	} {
		t.Run(tc.preview, func(t *testing.T) {
			h := newHarness(t, func(o *push.Options) { o.Preview = tc.preview })
			h.register(bob, "apns", apnsToken)
			h.register(bob, "fcm", fcmToken)
			h.send(alice, bob, "secret plans")
			if !h.apns.Wait(5*time.Second, func(r []pushtest.APNSRequest) bool { return len(r) == 1 }) ||
				!h.fcm.Wait(5*time.Second, func(r []pushtest.FCMRequest) bool { return len(r) == 1 }) {
				t.Fatal("no alert")
			}
			a, f := h.apns.Requests()[0], h.fcm.Requests()[0]
			if a.Status != 200 || f.Status != 200 {
				t.Fatalf("answers %d %s, %d %s", a.Status, a.Reason, f.Status, f.ErrorCode)
			}
			title, body, badge := alertOf(a)
			if title != tc.title || body != tc.body || badge != 1 {
				t.Fatalf("APNs alert %q %q badge %v", title, body, badge)
			}
			n, _ := f.Message["notification"].(map[string]any)
			if fb, _ := n["body"].(string); fb != tc.body || strings.Contains(string(f.Body)+string(a.Body), "secret") {
				t.Fatalf("FCM message %s", f.Body)
			}
		})
	}
}

// A dispatcher that stops before its debounce ends (its node lost the
// shard, or died) loses nothing: the next one to serve the shard alerts.
func TestNextLeaderSendsWhatWasDue(t *testing.T) {
	h := newHarness(t, func(o *push.Options) { o.Debounce = time.Hour })
	h.register(bob, "apns", apnsToken)
	ev := h.send(alice, bob, "hi")
	h.d.Load().Close()
	h.opts.Debounce = 100 * time.Millisecond
	h.opts.Registerer = nil
	h.start()
	if !h.apns.Wait(5*time.Second, func(r []pushtest.APNSRequest) bool { return len(r) == 1 }) {
		t.Fatal("the due alert was lost")
	}
	waitFor(t, "the push mark", 5*time.Second, func() bool { return h.log.PushState(bob).Pushed == ev.ID })
}

// TestEachDeviceIsAlertedOfWhatItLacks: a user's push tokens are bound to
// the user's devices. A device whose socket acknowledged the messages gets
// no alert; a device without a socket is alerted with its own count of
// messages it has not acknowledged; a device with a socket gets the ack
// timeout first, and an acknowledgement within it spares its alert; the
// check at its deadline does not alert the others twice.
func TestEachDeviceIsAlertedOfWhatItLacks(t *testing.T) {
	var mu sync.Mutex
	online := map[string]bool{}
	setOnline := func(dev string, on bool) {
		mu.Lock()
		online[dev] = on
		mu.Unlock()
	}
	h := newHarness(t, func(o *push.Options) {
		o.AckTimeout = 3 * time.Second
		o.DeviceOnline = func(u int64, dev string) bool {
			mu.Lock()
			defer mu.Unlock()
			return u == bob && online[dev]
		}
	})
	ctx := context.Background()
	for _, dev := range []string{"phone", "tablet"} {
		if _, err := h.log.Link(ctx, bob, dev); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []relaylog.Device{
		{Platform: "apns", Token: apnsToken, DeviceID: "phone"},
		{Platform: "fcm", Token: fcmToken, DeviceID: "tablet"},
	} {
		if err := h.log.RegisterDevice(ctx, bob, d); err != nil {
			t.Fatal(err)
		}
	}
	handed := func() int {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.handed[bob]
	}

	// The phone is connected and takes both messages; the tablet is away.
	h.setOnline(bob, true)
	setOnline("phone", true)
	h.send(alice, bob, "one")
	m2 := h.send(alice, bob, "two")
	waitFor(t, "the sends handed to the dispatcher", 5*time.Second, func() bool { return handed() >= 2 })
	if _, err := h.log.AckDevice(ctx, bob, "phone", m2.ID); err != nil {
		t.Fatal(err)
	}
	if !h.fcm.Wait(5*time.Second, func(r []pushtest.FCMRequest) bool { return len(r) == 1 }) {
		t.Fatal("the tablet was not alerted")
	}
	waitFor(t, "the push mark", 5*time.Second, func() bool { return h.log.PushState(bob).Pushed == m2.ID })
	f := h.fcm.Delivered(fcmToken)
	android, _ := f[0].Message["android"].(map[string]any)
	an, _ := android["notification"].(map[string]any)
	if an["notification_count"] != 2.0 {
		t.Fatalf("tablet's badge %v, want 2 (both messages it lacks)", an["notification_count"])
	}
	if n := len(h.apns.Requests()); n != 0 {
		t.Fatalf("%d alerts to the phone, which acknowledged", n)
	}

	// Now the tablet is connected but has not acknowledged, and the phone
	// is away: the phone is alerted now, the tablet waits, and its
	// acknowledgement settles the round without a second phone alert.
	setOnline("phone", false)
	setOnline("tablet", true)
	before := handed()
	m3 := h.send(alice, bob, "three")
	if !h.apns.Wait(5*time.Second, func(r []pushtest.APNSRequest) bool { return len(r) == 1 }) {
		t.Fatal("the phone was not alerted")
	}
	if _, _, badge := alertOf(h.apns.Requests()[0]); badge != 1 {
		t.Fatalf("phone's badge %v, want 1", badge)
	}
	waitFor(t, "the send handed to the dispatcher", 5*time.Second, func() bool { return handed() > before })
	if _, err := h.log.AckDevice(ctx, bob, "tablet", m3.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the push mark", 10*time.Second, func() bool { return h.log.PushState(bob).Pushed == m3.ID })
	if a, f := len(h.apns.Requests()), len(h.fcm.Requests()); a != 1 || f != 1 {
		t.Fatalf("%d phone and %d tablet alerts, want 1 and 1", a, f)
	}
}

// TestMessageJustAfterATakeoverWaitsForTheSockets: a new leader of a
// shard hears of its users' sockets on other nodes only as they register
// again (the subscriptions' reconcile). A message committed just after
// the takeover finds the user's device offline but gives it until
// TakeoverDelay after the takeover, so a user whose socket registers
// meanwhile is not alerted.
func TestMessageJustAfterATakeoverWaitsForTheSockets(t *testing.T) {
	// The delay counts from the harness's takeover: long enough for the
	// steps below on a slow run (the race detector, a loaded box).
	h := newHarness(t, func(o *push.Options) { o.Debounce = time.Millisecond; o.TakeoverDelay = 3 * time.Second })
	h.register(bob, "apns", apnsToken)
	h.send(alice, bob, "hi")
	// Checked while bob looks offline (his socket has not registered with
	// the new leader yet): deferred, not alerted.
	waitFor(t, "the check of the message", 5*time.Second, func() bool {
		return h.checks(push.DecisionDeferred)+h.checks(push.DecisionAlerted) >= 1
	})
	if n := len(h.apns.Requests()); n != 0 {
		t.Fatalf("%d alerts to a user checked within the takeover delay", n)
	}
	h.setOnline(bob, true) // bob's socket registers with the new leader
	// At the end of the takeover delay the socket counts: the device gets
	// its ack timeout, not an alert.
	waitFor(t, "the check at the end of the takeover delay", 10*time.Second, func() bool {
		return h.checks(push.DecisionDeferred)+h.checks(push.DecisionAlerted) >= 2
	})
	if n := len(h.apns.Requests()); n != 0 {
		t.Fatalf("%d alerts to a user whose socket registered within the takeover delay", n)
	}
}

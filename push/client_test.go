package push_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgenode/edgenode/push"
	"github.com/edgenode/edgenode/push/pushtest"
)

const (
	apnsToken  = "8d1f3d6c1a7a3a3e9b0e2b2d6f1c4e5a7b9d0c1e2f3a4b5c6d7e8f9a0b1c2d3e"
	apnsToken2 = "aa1f3d6c1a7a3a3e9b0e2b2d6f1c4e5a7b9d0c1e2f3a4b5c6d7e8f9a0b1c2d3e"
	fcmToken   = "fcm-token-d1:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx"
	fcmToken2  = "fcm-token-d2:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx"
	topic      = "com.example.chat"
)

// clock is a test clock that only moves when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newAPNS(t *testing.T, fake *pushtest.APNS, mod func(*push.APNSOptions)) *push.APNS {
	t.Helper()
	opts := push.APNSOptions{Key: fake.Key, KeyID: fake.KeyID, TeamID: fake.TeamID, Topic: topic,
		URL: fake.URL, SandboxURL: fake.SandboxURL, Client: fake.Client(), Timeout: 5 * time.Second}
	if mod != nil {
		mod(&opts)
	}
	c, err := push.NewAPNS(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newFCM(t *testing.T, fake *pushtest.FCM, mod func(*push.FCMOptions)) *push.FCM {
	t.Helper()
	path := t.TempDir() + "/sa.json"
	if err := fake.WriteCredentials(path); err != nil {
		t.Fatal(err)
	}
	sa, err := push.LoadServiceAccount(path)
	if err != nil {
		t.Fatal(err)
	}
	opts := push.FCMOptions{Account: sa, URL: fake.URL, Client: fake.Client(), Timeout: 5 * time.Second}
	if mod != nil {
		mod(&opts)
	}
	c, err := push.NewFCM(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func note(token string) push.Notification {
	return push.Notification{
		Token: token, Title: "User 7", Body: "hello", Badge: 3, CollapseID: "edgenode-42",
		Data: map[string]string{"fromUserId": "7", "messageId": "99"}, Expiration: time.Now().Add(time.Hour),
	}
}

func TestAPNSRequestIsWhatAppleExpects(t *testing.T) {
	fake := pushtest.NewAPNS()
	defer fake.Close()
	fake.RequireTopic(topic)
	c := newAPNS(t, fake, nil)
	ctx := context.Background()
	if err := c.Send(ctx, note(apnsToken)); err != nil {
		t.Fatal(err)
	}
	sandboxed := note(apnsToken2)
	sandboxed.Sandbox = true
	if err := c.Send(ctx, sandboxed); err != nil {
		t.Fatal(err)
	}
	reqs := fake.Requests()
	if len(reqs) != 2 || reqs[0].Sandbox || !reqs[1].Sandbox || reqs[1].Token != apnsToken2 {
		t.Fatalf("requests: %+v", reqs)
	}
	r := reqs[0]
	if r.Status != 200 || r.Token != apnsToken {
		t.Fatalf("answer %d %s", r.Status, r.Reason)
	}
	for h, want := range map[string]string{
		"apns-topic": topic, "apns-push-type": "alert", "apns-priority": "10", "apns-collapse-id": "edgenode-42",
	} {
		if got := r.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if exp := r.Header.Get("apns-expiration"); exp == "" || exp == "0" {
		t.Errorf("apns-expiration = %q", exp)
	}
	aps := r.Payload["aps"].(map[string]any)
	alert, _ := aps["alert"].(map[string]any)
	if alert["title"] != "User 7" || alert["body"] != "hello" || aps["badge"] != 3.0 || r.Payload["fromUserId"] != "7" {
		t.Fatalf("payload %s", r.Body)
	}
	// A second request reuses the provider token.
	if reqs[1].JWT != r.JWT {
		t.Fatal("provider token not reused")
	}
}

func TestAPNSProviderTokenRenewal(t *testing.T) {
	fake := pushtest.NewAPNS()
	defer fake.Close()
	clk := newClock()
	fake.SetNow(clk.Now)
	c := newAPNS(t, fake, func(o *push.APNSOptions) { o.Now = clk.Now })
	ctx := context.Background()
	send := func() string {
		t.Helper()
		if err := c.Send(ctx, note(apnsToken)); err != nil {
			t.Fatal(err)
		}
		reqs := fake.Requests()
		return reqs[len(reqs)-1].JWT
	}
	first := send()
	clk.Add(19 * time.Minute)
	if send() != first {
		t.Fatal("provider token renewed before 20 minutes")
	}
	clk.Add(25 * time.Minute)
	second := send()
	if second == first {
		t.Fatal("provider token not renewed after 44 minutes")
	}

	// Apple says the token expired: it is renewed once and the request
	// repeated.
	fake.Script(apnsToken, pushtest.Response{Status: 403, Reason: "ExpiredProviderToken"})
	if err := c.Send(ctx, note(apnsToken)); err != nil {
		t.Fatal(err)
	}
	reqs := fake.Requests()
	last, prev := reqs[len(reqs)-1], reqs[len(reqs)-2]
	if prev.Reason != "ExpiredProviderToken" || last.Status != 200 || last.JWT == prev.JWT {
		t.Fatalf("after ExpiredProviderToken: %d %s, then %d", prev.Status, prev.Reason, last.Status)
	}
	if send() != last.JWT {
		t.Fatal("the renewed token is not kept")
	}

	// A clock an hour and a half behind Apple's makes every token look
	// expired: renewed once, then the error is returned.
	fake.SetNow(func() time.Time { return clk.Now().Add(90 * time.Minute) })
	n := len(fake.Requests())
	err := c.Send(ctx, note(apnsToken))
	if !errors.Is(err, push.ErrRejected) || !strings.Contains(err.Error(), "ExpiredProviderToken") {
		t.Fatalf("err = %v", err)
	}
	if got := len(fake.Requests()) - n; got != 2 {
		t.Fatalf("%d requests, want 2 (one renewal)", got)
	}
}

func TestAPNSAnswers(t *testing.T) {
	fake := pushtest.NewAPNS()
	defer fake.Close()
	c := newAPNS(t, fake, nil)
	for _, tc := range []struct {
		answer     pushtest.Response
		kind       error
		retryAfter time.Duration
	}{
		{pushtest.Response{Status: 410, Reason: "Unregistered"}, push.ErrUnregistered, 0},
		{pushtest.Response{Status: 400, Reason: "BadDeviceToken"}, push.ErrUnregistered, 0},
		{pushtest.Response{Status: 400, Reason: "DeviceTokenNotForTopic"}, push.ErrUnregistered, 0},
		{pushtest.Response{Status: 400, Reason: "BadCollapseId"}, push.ErrRejected, 0},
		{pushtest.Response{Status: 403, Reason: "InvalidProviderToken"}, push.ErrRejected, 0},
		{pushtest.Response{Status: 429, Reason: "TooManyRequests", RetryAfter: "7"}, push.ErrRetryable, 7 * time.Second},
		{pushtest.Response{Status: 503, Reason: "ServiceUnavailable"}, push.ErrRetryable, 0},
		{pushtest.Response{Status: 500, Reason: "InternalServerError"}, push.ErrRetryable, 0},
	} {
		fake.Script(apnsToken, tc.answer)
		err := c.Send(context.Background(), note(apnsToken))
		if !errors.Is(err, tc.kind) || push.RetryAfter(err) != tc.retryAfter {
			t.Errorf("%d %s: err = %v, want %v (retry after %v)", tc.answer.Status, tc.answer.Reason, err, tc.kind, tc.retryAfter)
		}
	}
	// The fake's own checks: a token that is not hex is a bad device token.
	if err := c.Send(context.Background(), note("not-hex")); !errors.Is(err, push.ErrUnregistered) {
		t.Fatalf("bad token: %v", err)
	}
}

func TestFCMRequestIsWhatGoogleExpects(t *testing.T) {
	fake := pushtest.NewFCM()
	defer fake.Close()
	c := newFCM(t, fake, nil)
	ctx := context.Background()
	for range 2 {
		if err := c.Send(ctx, note(fcmToken)); err != nil {
			t.Fatal(err)
		}
	}
	if n := fake.TokenRequests(); n != 1 {
		t.Fatalf("%d access tokens fetched, want 1", n)
	}
	reqs := fake.Delivered(fcmToken)
	if len(reqs) != 2 {
		t.Fatalf("%d delivered", len(reqs))
	}
	m := reqs[0].Message
	n, _ := m["notification"].(map[string]any)
	android, _ := m["android"].(map[string]any)
	an, _ := android["notification"].(map[string]any)
	data, _ := m["data"].(map[string]any)
	apns, _ := m["apns"].(map[string]any)
	headers, _ := apns["headers"].(map[string]any)
	if n["title"] != "User 7" || n["body"] != "hello" || data["fromUserId"] != "7" ||
		android["collapse_key"] != "edgenode-42" || android["priority"] != "high" ||
		an["tag"] != "edgenode-42" || an["notification_count"] != 3.0 ||
		headers["apns-collapse-id"] != "edgenode-42" {
		t.Fatalf("message %s", reqs[0].Body)
	}
	if ttl, _ := android["ttl"].(string); !strings.HasSuffix(ttl, "s") || ttl == "0s" {
		t.Fatalf("ttl %q", ttl)
	}
}

func TestFCMAccessTokenRefresh(t *testing.T) {
	fake := pushtest.NewFCM()
	defer fake.Close()
	clk := newClock()
	fake.SetNow(clk.Now)
	fake.SetTokenLifetime(5 * time.Minute)
	c := newFCM(t, fake, func(o *push.FCMOptions) { o.Now = clk.Now })
	ctx := context.Background()
	send := func() {
		t.Helper()
		if err := c.Send(ctx, note(fcmToken)); err != nil {
			t.Fatal(err)
		}
	}
	send()
	clk.Add(3 * time.Minute)
	send()
	if n := fake.TokenRequests(); n != 1 {
		t.Fatalf("%d token requests before expiry, want 1", n)
	}
	// Within a minute of expiry the token is replaced before use.
	clk.Add(90 * time.Second)
	send()
	if n := fake.TokenRequests(); n != 2 {
		t.Fatalf("%d token requests near expiry, want 2", n)
	}
	// A revoked token is answered 401: one refresh, and the send succeeds.
	fake.RevokeAccessTokens()
	send()
	if n := fake.TokenRequests(); n != 3 {
		t.Fatalf("%d token requests after 401, want 3", n)
	}
	reqs := fake.Requests()
	if last, prev := reqs[len(reqs)-1], reqs[len(reqs)-2]; prev.Status != 401 || last.Status != 200 {
		t.Fatalf("after revocation: %d then %d", prev.Status, last.Status)
	}
}

func TestFCMAnswers(t *testing.T) {
	fake := pushtest.NewFCM()
	defer fake.Close()
	c := newFCM(t, fake, nil)
	for _, tc := range []struct {
		answer     pushtest.Response
		kind       error
		retryAfter time.Duration
	}{
		{pushtest.Response{Status: 404, Reason: "UNREGISTERED"}, push.ErrUnregistered, 0},
		{pushtest.Response{Status: 400, Reason: "INVALID_ARGUMENT"}, push.ErrRejected, 0},
		{pushtest.Response{Status: 429, Reason: "QUOTA_EXCEEDED", RetryAfter: "12"}, push.ErrRetryable, 12 * time.Second},
		{pushtest.Response{Status: 503, Reason: "UNAVAILABLE"}, push.ErrRetryable, 0},
		{pushtest.Response{Status: 500, Reason: "INTERNAL"}, push.ErrRetryable, 0},
		{pushtest.Response{Status: 403, Reason: "SENDER_ID_MISMATCH"}, push.ErrRejected, 0},
	} {
		fake.Script(fcmToken, tc.answer)
		err := c.Send(context.Background(), note(fcmToken))
		if !errors.Is(err, tc.kind) || push.RetryAfter(err) != tc.retryAfter {
			t.Errorf("%d %s: err = %v, want %v (retry after %v)", tc.answer.Status, tc.answer.Reason, err, tc.kind, tc.retryAfter)
		}
	}
}

// Credentials of another account are refused at the token endpoint.
func TestFCMWrongCredentials(t *testing.T) {
	fake, other := pushtest.NewFCM(), pushtest.NewFCM()
	defer fake.Close()
	defer other.Close()
	var sa push.ServiceAccount
	if err := json.Unmarshal(other.Credentials(), &sa); err != nil {
		t.Fatal(err)
	}
	c := newFCM(t, fake, func(o *push.FCMOptions) { o.Account.PrivateKey = sa.PrivateKey })
	err := c.Send(context.Background(), note(fcmToken))
	if !errors.Is(err, push.ErrRejected) || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("err = %v", err)
	}
	if len(fake.Requests()) != 0 {
		t.Fatal("a message was sent without an access token")
	}
}

// Every request has a timeout: a provider that never answers fails the
// send as temporary.
func TestRequestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	defer close(release)
	fake := pushtest.NewAPNS()
	defer fake.Close()
	c := newAPNS(t, fake, func(o *push.APNSOptions) { o.URL, o.Client, o.Timeout = srv.URL, srv.Client(), 200*time.Millisecond })
	start := time.Now()
	err := c.Send(context.Background(), note(apnsToken))
	if !errors.Is(err, push.ErrRetryable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v", d)
	}
}

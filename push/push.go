package push

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// Provider names, as used in metrics and errors.
const (
	ProviderAPNS = "apns"
	ProviderFCM  = "fcm"
)

// DefaultTimeout bounds one request to a provider (token requests included)
// when a client's Options leave Timeout zero.
const DefaultTimeout = 10 * time.Second

// Notification is one alert to one device.
type Notification struct {
	Token   string // the device's push token
	Topic   string // APNs topic (the app's bundle id); ignored by FCM
	Sandbox bool   // APNs development environment; ignored by FCM

	// Title and Body are the alert text; both empty means no alert is
	// shown (APNs: badge only; FCM: a data message).
	Title, Body string
	Badge       int // unread count
	// CollapseID merges alerts on the device: a later one replaces an
	// earlier one with the same id. At most 64 bytes (APNs' limit).
	CollapseID string
	// ThreadID groups notifications on iOS (aps.thread-id); optional.
	ThreadID string
	// Data travels to the app with the alert.
	Data map[string]string
	// Expiration is when the provider stops trying to deliver; zero means
	// it tries once and does not store the alert.
	Expiration time.Time
}

// Sender sends one notification: *APNS and *FCM.
type Sender interface {
	Send(ctx context.Context, n Notification) error
}

// Kinds of failure, for errors.Is on what Send returns.
var (
	// ErrUnregistered: the token will never work again; forget it.
	ErrUnregistered = errors.New("push: device token is unregistered")
	// ErrRetryable: the provider or the network failed for now; try
	// again later (see RetryAfter).
	ErrRetryable = errors.New("push: temporary failure")
	// ErrRejected: the provider refused the request for good (bad
	// credentials, bad payload); retrying the same request will not help.
	ErrRejected = errors.New("push: rejected")
)

// Error is a failed send: what the provider answered, or the transport
// error. It matches one of ErrUnregistered, ErrRetryable and ErrRejected.
type Error struct {
	Provider   string        // ProviderAPNS or ProviderFCM
	Status     int           // HTTP status; 0 when no answer came
	Reason     string        // APNs reason, FCM errorCode or status
	RetryAfter time.Duration // from the Retry-After header; 0 if none
	Kind       error         // ErrUnregistered, ErrRetryable or ErrRejected
	Err        error         // the transport error, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "push: %s", e.Provider)
	if e.Status != 0 {
		fmt.Fprintf(&b, ": %d", e.Status)
	}
	if e.Reason != "" {
		fmt.Fprintf(&b, " %s", e.Reason)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %v)", e.RetryAfter)
	}
	return b.String()
}

// Unwrap makes the error match its Kind and its transport error.
func (e *Error) Unwrap() []error {
	var out []error
	if e.Kind != nil {
		out = append(out, e.Kind)
	}
	if e.Err != nil {
		out = append(out, e.Err)
	}
	return out
}

// RetryAfter is how long the provider asked to wait before trying again,
// when err says so.
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// transportError wraps a failed round trip: always worth another try.
func transportError(provider string, err error) *Error {
	return &Error{Provider: provider, Kind: ErrRetryable, Err: err}
}

// statusError classifies an HTTP status whose body did not say more: 429
// and 5xx are temporary, the rest final.
func statusError(provider string, resp *http.Response, reason string, now time.Time) *Error {
	e := &Error{Provider: provider, Status: resp.StatusCode, Reason: reason, Kind: ErrRejected}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		e.Kind = ErrRetryable
		e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	}
	return e
}

// parseRetryAfter reads Retry-After as seconds or as an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// NewHTTPClient returns the client both providers need: HTTP/2 over TLS
// (APNs accepts nothing else), connection health checked by HTTP/2 pings,
// trusting the system roots plus the PEM certificates in caFile when it is
// not empty (a proxy's or a test server's).
func NewHTTPClient(caFile string) (*http.Client, error) {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("push: CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("push: CA file %s holds no PEM certificate", caFile)
		}
		tlsConf.RootCAs = pool
	}
	return newHTTPClient(tlsConf), nil
}

func newHTTPClient(tlsConf *tls.Config) *http.Client {
	var protos http.Protocols
	protos.SetHTTP2(true)
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   true,
		Protocols:           &protos,
		IdleConnTimeout:     10 * time.Minute,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: 30 * time.Second,
			PingTimeout:     10 * time.Second,
		},
	}
	return &http.Client{Transport: tr}
}

// withTimeout bounds one request.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		d = DefaultTimeout
	}
	return context.WithTimeout(ctx, d)
}

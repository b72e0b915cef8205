package push

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// APNs endpoints.
const (
	APNSProductionURL = "https://api.push.apple.com"
	APNSSandboxURL    = "https://api.sandbox.push.apple.com"
)

// APNs answers that matter to the client (Apple's "reason" strings). Apple's
// "Unregistered" comes with status 410, which is matched by status alone.
const (
	apnsBadDeviceToken         = "BadDeviceToken"
	apnsDeviceTokenNotForTopic = "DeviceTokenNotForTopic"
	apnsExpiredProviderToken   = "ExpiredProviderToken"
)

// DefaultAPNSTokenRefresh is the age at which the provider JWT is replaced:
// Apple rejects tokens older than an hour and refreshes more often than
// every 20 minutes.
const DefaultAPNSTokenRefresh = 40 * time.Minute

// APNSOptions configure an APNS client. Key, KeyID and TeamID are required.
type APNSOptions struct {
	Key    *ecdsa.PrivateKey // the team's P-256 signing key (LoadAPNSKey reads a .p8)
	KeyID  string            // the key's id: the JWT's kid
	TeamID string            // the developer team: the JWT's iss
	// Topic is the topic of a notification that names none; "" means a
	// notification must carry its own.
	Topic string
	// URL and SandboxURL are the base URLs of the production and the
	// development environment; "" means Apple's.
	URL, SandboxURL string
	// Client sends the requests; nil means NewHTTPClient(""). It must
	// speak HTTP/2.
	Client *http.Client
	// Timeout bounds one request; 0 means DefaultTimeout.
	Timeout time.Duration
	// TokenRefresh is the provider token's lifetime; 0 means
	// DefaultAPNSTokenRefresh.
	TokenRefresh time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// APNS sends alerts through Apple's provider API.
type APNS struct {
	opts APNSOptions

	mu     sync.Mutex
	token  string
	issued time.Time
}

// LoadAPNSKey reads the PEM (PKCS #8) private key Apple gives as a .p8 file.
func LoadAPNSKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("push: APNs key: %w", err)
	}
	k, err := jwt.ParseECPrivateKeyFromPEM(b)
	if err != nil {
		return nil, fmt.Errorf("push: APNs key %s: %w", path, err)
	}
	return k, nil
}

// NewAPNS returns a client; it contacts nobody until Send.
func NewAPNS(opts APNSOptions) (*APNS, error) {
	if opts.Key == nil || opts.KeyID == "" || opts.TeamID == "" {
		return nil, errors.New("push: APNs needs a key, its key id and the team id")
	}
	if opts.URL == "" {
		opts.URL = APNSProductionURL
	}
	if opts.SandboxURL == "" {
		opts.SandboxURL = APNSSandboxURL
	}
	opts.URL = strings.TrimRight(opts.URL, "/")
	opts.SandboxURL = strings.TrimRight(opts.SandboxURL, "/")
	if opts.Client == nil {
		opts.Client, _ = NewHTTPClient("")
	}
	if opts.TokenRefresh <= 0 {
		opts.TokenRefresh = DefaultAPNSTokenRefresh
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &APNS{opts: opts}, nil
}

// providerToken returns the cached JWT, signing a new one when it is older
// than TokenRefresh or was renewed (stale is the token found expired).
func (c *APNS) providerToken(stale string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Now()
	if c.token != "" && c.token != stale && now.Sub(c.issued) < c.opts.TokenRefresh && !now.Before(c.issued) {
		return c.token, nil
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": c.opts.TeamID, "iat": now.Unix()})
	t.Header["kid"] = c.opts.KeyID
	s, err := t.SignedString(c.opts.Key)
	if err != nil {
		return "", fmt.Errorf("push: sign APNs provider token: %w", err)
	}
	c.token, c.issued = s, now
	return s, nil
}

// apnsPayload is the JSON body: Apple's aps dictionary and the app's data.
type apnsPayload map[string]any

func (c *APNS) payload(n Notification) ([]byte, error) {
	aps := map[string]any{"badge": n.Badge}
	if n.Title != "" || n.Body != "" {
		alert := map[string]string{}
		if n.Title != "" {
			alert["title"] = n.Title
		}
		if n.Body != "" {
			alert["body"] = n.Body
		}
		aps["alert"] = alert
		aps["sound"] = "default"
		// Lets the app's notification service extension replace the
		// sender's id with the contact's name.
		aps["mutable-content"] = 1
	}
	if n.ThreadID != "" {
		aps["thread-id"] = n.ThreadID
	}
	p := apnsPayload{"aps": aps}
	for k, v := range n.Data {
		if k != "aps" {
			p[k] = v
		}
	}
	return json.Marshal(p)
}

// Send posts n to the device; see Error for failures. An
// ExpiredProviderToken answer renews the JWT and tries once more.
func (c *APNS) Send(ctx context.Context, n Notification) error {
	topic := n.Topic
	if topic == "" {
		topic = c.opts.Topic
	}
	if topic == "" {
		return &Error{Provider: ProviderAPNS, Reason: "MissingTopic", Kind: ErrRejected, Err: errors.New("no topic: register the device with one or set --apns-topic")}
	}
	body, err := c.payload(n)
	if err != nil {
		return &Error{Provider: ProviderAPNS, Kind: ErrRejected, Err: err}
	}
	base := c.opts.URL
	if n.Sandbox {
		base = c.opts.SandboxURL
	}
	target := base + "/3/device/" + url.PathEscape(n.Token)
	var stale string
	for attempt := 0; ; attempt++ {
		tok, err := c.providerToken(stale)
		if err != nil {
			return &Error{Provider: ProviderAPNS, Kind: ErrRejected, Err: err}
		}
		err = c.post(ctx, target, tok, topic, body, n)
		var e *Error
		if attempt == 0 && errors.As(err, &e) && e.Reason == apnsExpiredProviderToken {
			stale = tok
			continue
		}
		return err
	}
}

func (c *APNS) post(ctx context.Context, target, tok, topic string, body []byte, n Notification) error {
	ctx, cancel := withTimeout(ctx, c.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return &Error{Provider: ProviderAPNS, Kind: ErrRejected, Err: err}
	}
	h := req.Header
	h.Set("authorization", "bearer "+tok)
	h.Set("apns-topic", topic)
	h.Set("apns-push-type", "alert")
	h.Set("apns-priority", "10")
	exp := int64(0)
	if !n.Expiration.IsZero() {
		exp = n.Expiration.Unix()
	}
	h.Set("apns-expiration", strconv.FormatInt(exp, 10))
	if n.CollapseID != "" {
		h.Set("apns-collapse-id", n.CollapseID)
	}
	h.Set("content-type", "application/json")
	resp, err := c.opts.Client.Do(req)
	if err != nil {
		return transportError(ProviderAPNS, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var answer struct {
		Reason string `json:"reason"`
	}
	json.Unmarshal(b, &answer)
	e := statusError(ProviderAPNS, resp, answer.Reason, c.opts.Now())
	switch {
	case resp.StatusCode == http.StatusGone,
		resp.StatusCode == http.StatusBadRequest && (answer.Reason == apnsBadDeviceToken || answer.Reason == apnsDeviceTokenNotForTopic):
		e.Kind = ErrUnregistered
	}
	return e
}

package push

import (
	"bytes"
	"context"
	"crypto/rsa"
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

// FCM endpoints and constants of the OAuth2 JWT-bearer grant (RFC 7523).
const (
	FCMURL        = "https://fcm.googleapis.com"
	FCMScope      = "https://www.googleapis.com/auth/firebase.messaging"
	JWTBearerType = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	// googleTokenURI is used when a service account names no token_uri.
	googleTokenURI = "https://oauth2.googleapis.com/token"
)

// fcmUnregistered is FCM's errorCode for a token that is no longer valid.
const fcmUnregistered = "UNREGISTERED"

// ServiceAccount is the part of a Google service-account JSON key that FCM
// needs.
type ServiceAccount struct {
	ProjectID    string `json:"project_id"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"` // PEM, PKCS #8 RSA
	ClientEmail  string `json:"client_email"`
	TokenURI     string `json:"token_uri"`
}

// LoadServiceAccount reads a service-account JSON key file.
func LoadServiceAccount(path string) (ServiceAccount, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return ServiceAccount{}, fmt.Errorf("push: FCM credentials: %w", err)
	}
	var sa ServiceAccount
	if err := json.Unmarshal(b, &sa); err != nil {
		return ServiceAccount{}, fmt.Errorf("push: FCM credentials %s: %w", path, err)
	}
	return sa, nil
}

// FCMOptions configure an FCM client. Account is required.
type FCMOptions struct {
	Account ServiceAccount
	// URL is the API's base URL; "" means FCMURL.
	URL string
	// Client sends the requests, to the API and to the token endpoint;
	// nil means NewHTTPClient("").
	Client *http.Client
	// Timeout bounds one request; 0 means DefaultTimeout.
	Timeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// FCM sends alerts through Firebase Cloud Messaging's HTTP v1 API.
type FCM struct {
	opts    FCMOptions
	key     *rsa.PrivateKey
	sendURL string

	mu      sync.Mutex // held while a token is fetched: one fetch at a time
	access  string
	expires time.Time
}

// NewFCM returns a client; it contacts nobody until Send.
func NewFCM(opts FCMOptions) (*FCM, error) {
	sa := opts.Account
	if sa.ProjectID == "" || sa.ClientEmail == "" || sa.PrivateKey == "" {
		return nil, errors.New("push: FCM credentials need project_id, client_email and private_key")
	}
	key, err := jwt.ParseRSAPrivateKeyFromPEM([]byte(sa.PrivateKey))
	if err != nil {
		return nil, fmt.Errorf("push: FCM private_key: %w", err)
	}
	if opts.Account.TokenURI == "" {
		opts.Account.TokenURI = googleTokenURI
	}
	if opts.URL == "" {
		opts.URL = FCMURL
	}
	if opts.Client == nil {
		opts.Client, _ = NewHTTPClient("")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &FCM{
		opts: opts, key: key,
		sendURL: strings.TrimRight(opts.URL, "/") + "/v1/projects/" + url.PathEscape(sa.ProjectID) + "/messages:send",
	}, nil
}

// accessToken returns a cached OAuth2 access token, fetching a new one when
// it expires within a minute or was found rejected (stale).
func (c *FCM) accessToken(ctx context.Context, stale string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Now()
	if c.access != "" && c.access != stale && now.Add(time.Minute).Before(c.expires) {
		return c.access, nil
	}
	c.access = ""
	sa := c.opts.Account
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss":   sa.ClientEmail,
		"scope": FCMScope,
		"aud":   sa.TokenURI,
		"iat":   now.Unix(),
		"exp":   now.Add(time.Hour).Unix(),
	})
	if sa.PrivateKeyID != "" {
		t.Header["kid"] = sa.PrivateKeyID
	}
	assertion, err := t.SignedString(c.key)
	if err != nil {
		return "", &Error{Provider: ProviderFCM, Reason: "token", Kind: ErrRejected, Err: err}
	}
	form := url.Values{"grant_type": {JWTBearerType}, "assertion": {assertion}}
	ctx, cancel := withTimeout(ctx, c.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sa.TokenURI, strings.NewReader(form.Encode()))
	if err != nil {
		return "", &Error{Provider: ProviderFCM, Reason: "token", Kind: ErrRejected, Err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.opts.Client.Do(req)
	if err != nil {
		return "", transportError(ProviderFCM, fmt.Errorf("access token: %w", err))
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var answer struct {
		AccessToken string          `json:"access_token"`
		ExpiresIn   json.RawMessage `json:"expires_in"`
		TokenType   string          `json:"token_type"`
		Error       string          `json:"error"`
		Description string          `json:"error_description"`
	}
	json.Unmarshal(b, &answer)
	if resp.StatusCode != http.StatusOK || answer.AccessToken == "" {
		e := statusError(ProviderFCM, resp, "token "+answer.Error, now)
		e.Err = fmt.Errorf("access token: %s", answer.Description)
		return "", e
	}
	secs, _ := strconv.ParseInt(strings.Trim(string(answer.ExpiresIn), `"`), 10, 64)
	if secs <= 0 {
		secs = 3600
	}
	c.access, c.expires = answer.AccessToken, now.Add(time.Duration(secs)*time.Second)
	return c.access, nil
}

// fcmRequest is the body of messages:send.
type fcmRequest struct {
	Message fcmMessage `json:"message"`
}

type fcmMessage struct {
	Token        string            `json:"token"`
	Notification *fcmNotification  `json:"notification,omitempty"`
	Data         map[string]string `json:"data,omitempty"`
	Android      fcmAndroid        `json:"android"`
	APNS         *fcmAPNS          `json:"apns,omitempty"`
}

type fcmNotification struct {
	Title string `json:"title,omitempty"`
	Body  string `json:"body,omitempty"`
}

type fcmAndroid struct {
	CollapseKey  string                  `json:"collapse_key,omitempty"`
	Priority     string                  `json:"priority"`
	TTL          string                  `json:"ttl,omitempty"`
	Notification *fcmAndroidNotification `json:"notification,omitempty"`
}

type fcmAndroidNotification struct {
	Tag               string `json:"tag,omitempty"`
	NotificationCount int    `json:"notification_count"`
}

// fcmAPNS covers apps whose iOS build also registers through FCM.
type fcmAPNS struct {
	Headers map[string]string `json:"headers,omitempty"`
	Payload map[string]any    `json:"payload"`
}

func (c *FCM) body(n Notification) ([]byte, error) {
	m := fcmMessage{Token: n.Token, Data: n.Data, Android: fcmAndroid{CollapseKey: n.CollapseID, Priority: "high"}}
	if !n.Expiration.IsZero() {
		ttl := max(n.Expiration.Sub(c.opts.Now()), 0)
		m.Android.TTL = strconv.FormatInt(int64(ttl/time.Second), 10) + "s"
	}
	aps := map[string]any{"badge": n.Badge}
	if n.Title != "" || n.Body != "" {
		m.Notification = &fcmNotification{Title: n.Title, Body: n.Body}
		m.Android.Notification = &fcmAndroidNotification{Tag: n.CollapseID, NotificationCount: n.Badge}
		aps["sound"] = "default"
		aps["mutable-content"] = 1
	}
	if n.ThreadID != "" {
		aps["thread-id"] = n.ThreadID
	}
	m.APNS = &fcmAPNS{Payload: map[string]any{"aps": aps}}
	if n.CollapseID != "" {
		m.APNS.Headers = map[string]string{"apns-collapse-id": n.CollapseID}
	}
	return json.Marshal(fcmRequest{Message: m})
}

// Send posts n to the device; see Error for failures. A 401 answer fetches
// a new access token and tries once more.
func (c *FCM) Send(ctx context.Context, n Notification) error {
	body, err := c.body(n)
	if err != nil {
		return &Error{Provider: ProviderFCM, Kind: ErrRejected, Err: err}
	}
	var stale string
	for attempt := 0; ; attempt++ {
		tok, err := c.accessToken(ctx, stale)
		if err != nil {
			return err
		}
		err = c.post(ctx, tok, body)
		var e *Error
		if attempt == 0 && errors.As(err, &e) && e.Status == http.StatusUnauthorized {
			stale = tok
			continue
		}
		return err
	}
}

func (c *FCM) post(ctx context.Context, tok string, body []byte) error {
	ctx, cancel := withTimeout(ctx, c.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.sendURL, bytes.NewReader(body))
	if err != nil {
		return &Error{Provider: ProviderFCM, Kind: ErrRejected, Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	resp, err := c.opts.Client.Do(req)
	if err != nil {
		return transportError(ProviderFCM, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var answer struct {
		Error struct {
			Status  string `json:"status"`
			Message string `json:"message"`
			Details []struct {
				Type      string `json:"@type"`
				ErrorCode string `json:"errorCode"`
			} `json:"details"`
		} `json:"error"`
	}
	json.Unmarshal(b, &answer)
	reason := answer.Error.Status
	for _, d := range answer.Error.Details {
		if d.ErrorCode != "" {
			reason = d.ErrorCode
		}
	}
	e := statusError(ProviderFCM, resp, reason, c.opts.Now())
	if reason == fcmUnregistered {
		e.Kind = ErrUnregistered
	}
	if answer.Error.Message != "" {
		e.Err = errors.New(answer.Error.Message)
	}
	return e
}

package pushtest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Constants of the OAuth2 JWT-bearer grant FCM's token endpoint expects.
const (
	fcmScope  = "https://www.googleapis.com/auth/firebase.messaging"
	jwtBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"
)

// FCM is a fake of Firebase Cloud Messaging's HTTP v1 API and of Google's
// OAuth2 token endpoint, on one server.
type FCM struct {
	URL         string // base URL of the API (messages:send)
	TokenURL    string // the token endpoint: the service account's token_uri
	ProjectID   string
	ClientEmail string
	KeyID       string
	Key         *rsa.PrivateKey // the service account's key

	srv *httptest.Server
	script
	lifetime time.Duration
	access   map[string]time.Time // issued access token → expiry
	tokens   int                  // token requests granted
	requests []FCMRequest
}

// FCMRequest is one messages:send request the fake answered.
type FCMRequest struct {
	At        time.Time
	Token     string // message.token
	Header    http.Header
	Body      []byte
	Message   map[string]any // the body's "message", decoded
	Status    int            // the fake's answer
	ErrorCode string         // the fake's FcmError errorCode or status, if not 200
}

// NewFCM starts a fake FCM with a fresh service account. Close stops it.
func NewFCM() *FCM {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	f := &FCM{
		ProjectID: "edgenode-test", ClientEmail: "push@edgenode-test.iam.gserviceaccount.com",
		KeyID: "0123456789abcdef", Key: key, script: newScript(),
		lifetime: time.Hour, access: make(map[string]time.Time),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/token", f.serveToken)
	mux.HandleFunc("/v1/", f.serveSend)
	f.srv = newServer(mux)
	f.URL, f.TokenURL = f.srv.URL, f.srv.URL+"/token"
	return f
}

// Close stops the fake.
func (f *FCM) Close() { f.srv.Close() }

// Credentials is the service-account JSON key file of the fake's account.
func (f *FCM) Credentials() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(f.Key)
	if err != nil {
		panic(err)
	}
	b, _ := json.MarshalIndent(map[string]string{
		"type":           "service_account",
		"project_id":     f.ProjectID,
		"private_key_id": f.KeyID,
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   f.ClientEmail,
		"client_id":      "100000000000000000001",
		"auth_uri":       "https://accounts.google.com/o/oauth2/auth",
		"token_uri":      f.TokenURL,
	}, "", "  ")
	return b
}

// WriteCredentials writes Credentials to path.
func (f *FCM) WriteCredentials(path string) error { return writeFile(path, f.Credentials()) }

// Client is an HTTP client that trusts the fake.
func (f *FCM) Client() *http.Client { return f.srv.Client() }

// CertPEM is the fake's TLS certificate, to trust as a CA.
func (f *FCM) CertPEM() []byte { return certPEM(f.srv) }

// WriteCert writes CertPEM to path.
func (f *FCM) WriteCert(path string) error { return writeFile(path, f.CertPEM()) }

// SetNow sets the fake's clock, against which assertions and access tokens
// expire.
func (f *FCM) SetNow(now func() time.Time) {
	f.mu.Lock()
	f.now = now
	f.mu.Unlock()
}

// SetTokenLifetime sets expires_in of the access tokens granted from now
// on (default an hour).
func (f *FCM) SetTokenLifetime(d time.Duration) {
	f.mu.Lock()
	f.lifetime = d
	f.mu.Unlock()
}

// RevokeAccessTokens invalidates every access token granted so far: the
// next send with one is answered 401.
func (f *FCM) RevokeAccessTokens() {
	f.mu.Lock()
	clear(f.access)
	f.mu.Unlock()
}

// TokenRequests is how many access tokens the token endpoint granted.
func (f *FCM) TokenRequests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tokens
}

// Script queues answers for the next sends to token that pass the fake's
// checks; afterwards it answers 200 again.
func (f *FCM) Script(token string, rs ...Response) { f.add(token, rs) }

// Requests returns every messages:send request so far, oldest first.
func (f *FCM) Requests() []FCMRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]FCMRequest(nil), f.requests...)
}

// Delivered returns the sends to token answered 200.
func (f *FCM) Delivered(token string) []FCMRequest {
	var out []FCMRequest
	for _, r := range f.Requests() {
		if r.Token == token && r.Status == http.StatusOK {
			out = append(out, r)
		}
	}
	return out
}

// Wait blocks until cond holds for the requests so far, or timeout passes;
// it reports whether cond held.
func (f *FCM) Wait(timeout time.Duration, cond func([]FCMRequest) bool) bool {
	return f.wait(timeout, func() bool { return cond(f.Requests()) })
}

// serveToken is Google's OAuth2 token endpoint for the JWT-bearer grant.
func (f *FCM) serveToken(w http.ResponseWriter, r *http.Request) {
	oauthError := func(status int, code, desc string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
	}
	if r.Method != http.MethodPost {
		oauthError(http.StatusMethodNotAllowed, "invalid_request", "POST required")
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		oauthError(http.StatusBadRequest, "invalid_request", "form body required")
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if r.PostForm.Get("grant_type") != jwtBearer {
		oauthError(http.StatusBadRequest, "unsupported_grant_type", "Invalid grant_type: "+r.PostForm.Get("grant_type"))
		return
	}
	if desc := f.checkAssertion(r.PostForm.Get("assertion")); desc != "" {
		oauthError(http.StatusBadRequest, "invalid_grant", desc)
		return
	}
	var b [24]byte
	rand.Read(b[:])
	tok := "ya29.fake-" + base64.RawURLEncoding.EncodeToString(b[:])
	f.mu.Lock()
	lifetime := f.lifetime
	f.access[tok] = f.now().Add(lifetime)
	f.tokens++
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "expires_in": int(lifetime / time.Second), "token_type": "Bearer"})
}

// checkAssertion verifies the grant's JWT as Google does: RS256 by the
// account's key, iss the account, the FCM scope, aud the token endpoint,
// and a lifetime of at most an hour that has not ended. It returns ""
// or the error_description of the refusal.
func (f *FCM) checkAssertion(s string) string {
	var claims struct {
		Issuer   string `json:"iss"`
		Scope    string `json:"scope"`
		Audience string `json:"aud"`
		IssuedAt *int64 `json:"iat"`
		Expires  *int64 `json:"exp"`
	}
	now := f.clock()
	t, err := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(func() time.Time { return now })).Parse(s, func(t *jwt.Token) (any, error) {
		if kid, ok := t.Header["kid"]; ok && kid != f.KeyID {
			return nil, fmt.Errorf("unknown kid %v", kid)
		}
		return &f.Key.PublicKey, nil
	})
	if err != nil || !t.Valid {
		return fmt.Sprintf("Invalid JWT Signature: %v", err)
	}
	raw, _ := json.Marshal(t.Claims)
	if err := json.Unmarshal(raw, &claims); err != nil {
		return fmt.Sprintf("Invalid JWT: %v", err)
	}
	switch {
	case claims.Issuer != f.ClientEmail:
		return fmt.Sprintf("Invalid JWT: iss %q is not the service account", claims.Issuer)
	case !slices.Contains(strings.Fields(claims.Scope), fcmScope):
		return fmt.Sprintf("Invalid JWT: scope %q lacks %s", claims.Scope, fcmScope)
	case claims.Audience != f.TokenURL:
		return fmt.Sprintf("Invalid JWT: aud %q is not %s", claims.Audience, f.TokenURL)
	case claims.IssuedAt == nil || claims.Expires == nil:
		return "Invalid JWT: iat and exp are required"
	case *claims.Expires-*claims.IssuedAt > 3600:
		return "Invalid JWT: lifetime over an hour"
	case time.Unix(*claims.IssuedAt, 0).After(now.Add(time.Minute)):
		return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe"
	}
	return ""
}

var fcmTTL = regexp.MustCompile(`^[0-9]+(\.[0-9]{1,9})?s$`)

// Fields the fake accepts, as FCM rejects unknown names.
var (
	fcmMessageFields             = []string{"name", "token", "topic", "condition", "data", "notification", "android", "apns", "webpush", "fcm_options", "fcmOptions"}
	fcmNotificationFields        = []string{"title", "body", "image"}
	fcmAndroidFields             = []string{"collapse_key", "collapseKey", "priority", "ttl", "restricted_package_name", "restrictedPackageName", "data", "notification", "fcm_options", "fcmOptions", "direct_boot_ok", "directBootOk"}
	fcmAndroidNotificationFields = []string{"title", "body", "icon", "color", "sound", "tag", "click_action", "clickAction", "channel_id", "channelId", "notification_count", "notificationCount", "notification_priority", "notificationPriority", "visibility", "default_sound", "defaultSound"}
	fcmAPNSFields                = []string{"headers", "payload", "fcm_options", "fcmOptions"}
)

// serveSend is POST /v1/projects/{project}/messages:send.
func (f *FCM) serveSend(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	rec := FCMRequest{At: time.Now(), Header: r.Header.Clone(), Body: body}
	status, code, msg := f.checkSend(r, body, &rec)
	var retryAfter string
	if status == http.StatusOK {
		if a, ok := f.next(rec.Token); ok {
			status, code, retryAfter, msg = a.Status, a.Reason, a.RetryAfter, "scripted answer"
			if code == "" {
				code = fcmErrorCode(status)
			}
		}
	}
	rec.Status, rec.ErrorCode = status, code
	f.mu.Lock()
	f.requests = append(f.requests, rec)
	f.notifyLocked()
	f.mu.Unlock()

	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	if status == http.StatusOK {
		json.NewEncoder(w).Encode(map[string]string{"name": fmt.Sprintf("projects/%s/messages/0:%d%%%s", f.ProjectID, time.Now().UnixNano(), "fake")})
		return
	}
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.WriteHeader(status)
	e := map[string]any{"code": status, "message": msg, "status": rpcStatus(status)}
	if code != rpcStatus(status) {
		e["details"] = []map[string]string{{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}}
	}
	json.NewEncoder(w).Encode(map[string]any{"error": e})
}

// checkSend does what FCM does before it accepts a message; it returns 200
// or the status, errorCode and message of the error answer.
func (f *FCM) checkSend(r *http.Request, body []byte, rec *FCMRequest) (int, string, string) {
	bad := func(format string, a ...any) (int, string, string) {
		return http.StatusBadRequest, "INVALID_ARGUMENT", fmt.Sprintf(format, a...)
	}
	if r.Method != http.MethodPost {
		return http.StatusMethodNotAllowed, "INVALID_ARGUMENT", "POST required"
	}
	if r.URL.Path != "/v1/projects/"+f.ProjectID+"/messages:send" {
		if strings.HasPrefix(r.URL.Path, "/v1/projects/") && strings.HasSuffix(r.URL.Path, "/messages:send") {
			return http.StatusForbidden, "PERMISSION_DENIED", "Permission denied on the project"
		}
		return http.StatusNotFound, "NOT_FOUND", "no such method"
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	exp, known := f.access[tok]
	now := f.now()
	f.mu.Unlock()
	if !ok || !known || !now.Before(exp) {
		return http.StatusUnauthorized, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token."
	}
	var req map[string]json.RawMessage
	if err := json.Unmarshal(body, &req); err != nil {
		return bad("Invalid JSON payload received. %v", err)
	}
	for k := range req {
		if k != "message" && k != "validate_only" && k != "validateOnly" {
			return bad("Invalid JSON payload received. Unknown name %q: Cannot find field.", k)
		}
	}
	if err := json.Unmarshal(req["message"], &rec.Message); err != nil || rec.Message == nil {
		return bad("Invalid JSON payload received. message is required")
	}
	m := rec.Message
	if msg := knownFields(m, fcmMessageFields, "message"); msg != "" {
		return bad("%s", msg)
	}
	targets := 0
	for _, k := range []string{"token", "topic", "condition"} {
		if v, ok := m[k]; ok {
			targets++
			if s, ok := v.(string); !ok || s == "" {
				return bad("message.%s must be a non-empty string", k)
			}
		}
	}
	if targets != 1 {
		return bad("Exactly one of message.token, message.topic or message.condition is required")
	}
	rec.Token, _ = m["token"].(string)
	if msg := stringMap(m["data"], "message.data"); msg != "" {
		return bad("%s", msg)
	}
	if n, ok := m["notification"]; ok {
		if msg := knownFields(n, fcmNotificationFields, "message.notification"); msg != "" {
			return bad("%s", msg)
		}
	}
	if a, ok := m["android"]; ok {
		if msg := knownFields(a, fcmAndroidFields, "message.android"); msg != "" {
			return bad("%s", msg)
		}
		am := a.(map[string]any)
		if p, ok := am["priority"]; ok && !slices.Contains([]any{"normal", "high", "NORMAL", "HIGH"}, p) {
			return bad("Invalid value at 'message.android.priority' (%v)", p)
		}
		if ttl, ok := am["ttl"]; ok {
			if s, _ := ttl.(string); !fcmTTL.MatchString(s) {
				return bad("Invalid value at 'message.android.ttl' (%v)", ttl)
			}
		}
		if msg := stringMap(am["data"], "message.android.data"); msg != "" {
			return bad("%s", msg)
		}
		if n, ok := am["notification"]; ok {
			if msg := knownFields(n, fcmAndroidNotificationFields, "message.android.notification"); msg != "" {
				return bad("%s", msg)
			}
			for _, k := range []string{"notification_count", "notificationCount"} {
				if c, ok := n.(map[string]any)[k]; ok {
					if x, ok := c.(float64); !ok || x != float64(int32(x)) || x < 0 {
						return bad("Invalid value at 'message.android.notification.%s' (%v)", k, c)
					}
				}
			}
		}
	}
	if a, ok := m["apns"]; ok {
		if msg := knownFields(a, fcmAPNSFields, "message.apns"); msg != "" {
			return bad("%s", msg)
		}
		if msg := stringMap(a.(map[string]any)["headers"], "message.apns.headers"); msg != "" {
			return bad("%s", msg)
		}
	}
	return http.StatusOK, "", ""
}

func knownFields(v any, names []string, where string) string {
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Sprintf("Invalid value at '%s': not an object", where)
	}
	for k := range m {
		if !slices.Contains(names, k) {
			return fmt.Sprintf("Invalid JSON payload received. Unknown name %q at '%s': Cannot find field.", k, where)
		}
	}
	return ""
}

// stringMap checks a map<string, string> field: FCM rejects other values.
func stringMap(v any, where string) string {
	if v == nil {
		return ""
	}
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Sprintf("Invalid value at '%s': not an object", where)
	}
	for k, x := range m {
		if _, ok := x.(string); !ok {
			return fmt.Sprintf("Invalid value at '%s[%s]' (%T): must be a string", where, k, x)
		}
	}
	return ""
}

func rpcStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "INVALID_ARGUMENT"
	case http.StatusUnauthorized:
		return "UNAUTHENTICATED"
	case http.StatusForbidden:
		return "PERMISSION_DENIED"
	case http.StatusNotFound:
		return "NOT_FOUND"
	case http.StatusTooManyRequests:
		return "RESOURCE_EXHAUSTED"
	case http.StatusServiceUnavailable:
		return "UNAVAILABLE"
	case http.StatusInternalServerError:
		return "INTERNAL"
	}
	return "UNKNOWN"
}

// fcmErrorCode is FCM's errorCode for a scripted status.
func fcmErrorCode(status int) string {
	switch status {
	case http.StatusNotFound:
		return "UNREGISTERED"
	case http.StatusTooManyRequests:
		return "QUOTA_EXCEEDED"
	case http.StatusServiceUnavailable:
		return "UNAVAILABLE"
	case http.StatusInternalServerError:
		return "INTERNAL"
	case http.StatusUnauthorized:
		return "THIRD_PARTY_AUTH_ERROR"
	}
	return rpcStatus(status)
}

package pushtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// APNS is a fake of Apple's provider API, with a production and a sandbox
// endpoint.
type APNS struct {
	URL        string // production base URL
	SandboxURL string // development base URL
	KeyID      string // the provider key's id, expected as the JWT's kid
	TeamID     string // expected as the JWT's iss
	// Key is the provider signing key; KeyPEM gives it as a .p8 file.
	Key *ecdsa.PrivateKey

	prod, sandbox *httptest.Server
	script
	topic    string
	requests []APNSRequest
}

// APNSRequest is one request the fake answered.
type APNSRequest struct {
	At      time.Time
	Sandbox bool   // sent to SandboxURL
	Token   string // device token from the path
	Header  http.Header
	Body    []byte
	Payload map[string]any // Body decoded
	JWT     string         // the provider token
	Status  int            // the fake's answer
	Reason  string         // the fake's answer's reason, if not 200
}

// NewAPNS starts a fake APNs with a fresh key. Close stops it.
func NewAPNS() *APNS {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	f := &APNS{KeyID: "ABC123DEFG", TeamID: "DEF123GHIJ", Key: key, script: newScript()}
	f.prod = newServer(f.handler(false))
	f.sandbox = newServer(f.handler(true))
	f.URL, f.SandboxURL = f.prod.URL, f.sandbox.URL
	return f
}

// Close stops both endpoints.
func (f *APNS) Close() {
	f.prod.Close()
	f.sandbox.Close()
}

// KeyPEM is the signing key as Apple delivers it: a PKCS #8 PEM (.p8).
func (f *APNS) KeyPEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(f.Key)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// WriteKey writes KeyPEM to path.
func (f *APNS) WriteKey(path string) error { return writeFile(path, f.KeyPEM()) }

// Client is an HTTP client that trusts the fake.
func (f *APNS) Client() *http.Client { return f.prod.Client() }

// CertPEM is the fake's TLS certificate, to trust as a CA.
func (f *APNS) CertPEM() []byte { return certPEM(f.prod) }

// Certificate is the fake's TLS certificate.
func (f *APNS) Certificate() *x509.Certificate { return certOf(f.prod) }

// WriteCert writes CertPEM to path.
func (f *APNS) WriteCert(path string) error { return writeFile(path, f.CertPEM()) }

// RequireTopic makes requests for another topic fail with 400
// TopicDisallowed.
func (f *APNS) RequireTopic(topic string) {
	f.mu.Lock()
	f.topic = topic
	f.mu.Unlock()
}

// SetNow sets the fake's clock, against which provider tokens age.
func (f *APNS) SetNow(now func() time.Time) {
	f.mu.Lock()
	f.now = now
	f.mu.Unlock()
}

// Script queues answers for the next requests to token that pass the
// fake's checks; afterwards it answers 200 again.
func (f *APNS) Script(token string, rs ...Response) { f.add(token, rs) }

// Requests returns every request so far, oldest first.
func (f *APNS) Requests() []APNSRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]APNSRequest(nil), f.requests...)
}

// Delivered returns the requests to token answered 200.
func (f *APNS) Delivered(token string) []APNSRequest {
	var out []APNSRequest
	for _, r := range f.Requests() {
		if r.Token == token && r.Status == http.StatusOK {
			out = append(out, r)
		}
	}
	return out
}

// Wait blocks until cond holds for the requests so far, or timeout passes;
// it reports whether cond held.
func (f *APNS) Wait(timeout time.Duration, cond func([]APNSRequest) bool) bool {
	return f.wait(timeout, func() bool { return cond(f.Requests()) })
}

func (f *APNS) handler(sandbox bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		rec := APNSRequest{At: time.Now(), Sandbox: sandbox, Header: r.Header.Clone(), Body: body}
		status, reason := f.check(r, body, &rec)
		var retryAfter string
		if status == http.StatusOK {
			if a, ok := f.next(rec.Token); ok {
				status, reason, retryAfter = a.Status, a.Reason, a.RetryAfter
				if reason == "" {
					reason = apnsReason(status)
				}
			}
		}
		rec.Status, rec.Reason = status, reason
		f.mu.Lock()
		f.requests = append(f.requests, rec)
		f.notifyLocked()
		f.mu.Unlock()

		w.Header().Set("apns-id", newID())
		if status == http.StatusOK {
			w.WriteHeader(http.StatusOK)
			return
		}
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		answer := map[string]any{"reason": reason}
		if status == http.StatusGone {
			answer["timestamp"] = f.clock().UnixMilli()
		}
		json.NewEncoder(w).Encode(answer)
	})
}

// check does what APNs does before it accepts a notification, in its
// order; it returns 200 or the error answer.
func (f *APNS) check(r *http.Request, body []byte, rec *APNSRequest) (int, string) {
	if r.ProtoMajor != 2 {
		return http.StatusBadRequest, "BadRequest" // APNs speaks HTTP/2 only
	}
	if r.Method != http.MethodPost {
		return http.StatusMethodNotAllowed, "MethodNotAllowed"
	}
	token, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	if !ok {
		return http.StatusNotFound, "BadPath"
	}
	rec.Token = token
	auth, ok := strings.CutPrefix(r.Header.Get("authorization"), "bearer ")
	if !ok || auth == "" {
		return http.StatusForbidden, "MissingProviderToken"
	}
	rec.JWT = auth
	if status, reason := f.checkJWT(auth); status != http.StatusOK {
		return status, reason
	}
	topic := r.Header.Get("apns-topic")
	if topic == "" {
		return http.StatusBadRequest, "MissingTopic"
	}
	f.mu.Lock()
	want := f.topic
	f.mu.Unlock()
	if want != "" && topic != want {
		return http.StatusBadRequest, "TopicDisallowed"
	}
	switch r.Header.Get("apns-push-type") {
	case "alert", "background", "voip", "complication", "fileprovider", "mdm", "location", "liveactivity", "pushtotalk":
	default:
		return http.StatusBadRequest, "InvalidPushType"
	}
	switch r.Header.Get("apns-priority") {
	case "", "1", "5", "10":
	default:
		return http.StatusBadRequest, "BadPriority"
	}
	if v := r.Header.Get("apns-expiration"); v != "" {
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			return http.StatusBadRequest, "BadExpirationDate"
		}
	}
	if len(r.Header.Get("apns-collapse-id")) > 64 {
		return http.StatusBadRequest, "BadCollapseId"
	}
	if b, err := hex.DecodeString(token); err != nil || len(b) == 0 {
		return http.StatusBadRequest, "BadDeviceToken"
	}
	if len(body) == 0 {
		return http.StatusBadRequest, "PayloadEmpty"
	}
	if len(body) > 4096 {
		return http.StatusRequestEntityTooLarge, "PayloadTooLarge"
	}
	if err := json.Unmarshal(body, &rec.Payload); err != nil {
		return http.StatusBadRequest, "BadPayload"
	}
	if _, ok := rec.Payload["aps"].(map[string]any); !ok {
		return http.StatusBadRequest, "BadPayload"
	}
	return http.StatusOK, ""
}

// checkJWT verifies a provider token as APNs does: ES256 with the key
// named by kid, the team as iss, and an iat no older than an hour.
func (f *APNS) checkJWT(s string) (int, string) {
	var claims struct {
		Issuer   string `json:"iss"`
		IssuedAt *int64 `json:"iat"`
	}
	t, err := jwt.NewParser(jwt.WithValidMethods([]string{"ES256"})).Parse(s, func(t *jwt.Token) (any, error) {
		if t.Header["kid"] != f.KeyID {
			return nil, fmt.Errorf("unknown kid %v", t.Header["kid"])
		}
		return &f.Key.PublicKey, nil
	})
	if err != nil || !t.Valid {
		return http.StatusForbidden, "InvalidProviderToken"
	}
	raw, _ := json.Marshal(t.Claims)
	if json.Unmarshal(raw, &claims) != nil || claims.Issuer != f.TeamID || claims.IssuedAt == nil {
		return http.StatusForbidden, "InvalidProviderToken"
	}
	iat := time.Unix(*claims.IssuedAt, 0)
	now := f.clock()
	if iat.After(now.Add(time.Minute)) {
		return http.StatusForbidden, "InvalidProviderToken"
	}
	if now.Sub(iat) > time.Hour {
		return http.StatusForbidden, "ExpiredProviderToken"
	}
	return http.StatusOK, ""
}

func apnsReason(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "BadDeviceToken"
	case http.StatusForbidden:
		return "ExpiredProviderToken"
	case http.StatusGone:
		return "Unregistered"
	case http.StatusTooManyRequests:
		return "TooManyRequests"
	case http.StatusServiceUnavailable:
		return "ServiceUnavailable"
	case http.StatusInternalServerError:
		return "InternalServerError"
	}
	return http.StatusText(status)
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return strings.ToUpper(h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:])
}

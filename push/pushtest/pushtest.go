// Package pushtest runs fake Apple (APNs) and Google (FCM HTTP v1) push
// services in-process, for tests of code that sends push notifications.
//
// The fakes listen on 127.0.0.1 with TLS and HTTP/2 (APNs accepts nothing
// else) and check what the real services check: the provider JWT's ES256
// signature, key id, team and age; the OAuth2 JWT-bearer assertion's RS256
// signature, issuer, scope and audience at the token endpoint; the access
// token on every FCM request; the headers and the JSON payload. A request
// that fails a check gets the real service's error answer. Tests script
// further answers per device token (410 Unregistered, 429 with
// Retry-After, 503, ExpiredProviderToken...), and read every request back.
//
// Both fakes use httptest's certificate; trust it with Client, CertPEM or
// WriteCert.
package pushtest

import (
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"time"
)

// Response is a scripted answer to one request.
type Response struct {
	Status     int    // HTTP status
	Reason     string // APNs reason, or FCM errorCode; "" means the usual one for Status
	RetryAfter string // Retry-After header; "" means none
}

// script holds scripted answers per device token and the requests seen.
type script struct {
	mu      sync.Mutex
	answers map[string][]Response
	changed chan struct{} // closed and replaced on every recorded request
	now     func() time.Time
}

func newScript() script {
	return script{answers: make(map[string][]Response), changed: make(chan struct{}), now: time.Now}
}

// next pops the scripted answer for token, if any.
func (s *script) next(token string) (Response, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.answers[token]
	if len(q) == 0 {
		return Response{}, false
	}
	s.answers[token] = q[1:]
	return q[0], true
}

func (s *script) add(token string, rs []Response) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers[token] = append(s.answers[token], rs...)
}

func (s *script) clock() time.Time {
	s.mu.Lock()
	now := s.now
	s.mu.Unlock()
	return now()
}

// notifyLocked wakes waiters after a request was recorded.
func (s *script) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// wait blocks until cond holds (checked after every request) or the
// timeout passes; it reports whether cond held. cond runs without the lock.
func (s *script) wait(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond() {
			return true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return false
		}
	}
}

// newServer starts a TLS server with HTTP/2 on 127.0.0.1.
func newServer(h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	return srv
}

func certPEM(srv *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o600) }

func certOf(srv *httptest.Server) *x509.Certificate { return srv.Certificate() }

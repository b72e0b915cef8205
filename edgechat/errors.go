package edgechat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/edgenode/edgenode/wire"
)

// Error codes. A refusal by the server carries the code of its answer
// (docs/API.md, "Errors"): invalid_argument, unauthenticated,
// permission_denied, device_revoked, not_found, too_large, rate_limited,
// request_expired, unavailable, internal. The SDK's own errors have these codes; ErrorCode
// tells them apart from Java, Swift or Go.
const (
	CodeClosed       = "closed"        // the client was closed
	CodeOtherAccount = "other_account" // chats.db belongs to another user or server
	CodeTokenSource  = "token_source"  // the TokenSource failed or gave an unusable token
	CodeNoUserID     = "no_user_id"    // no user id in Config or the token
	CodeSchemaTooNew = "schema_too_new"
	CodeNotRetryable = "not_retryable" // Resend of a request that is not failed
	CodeEmpty        = "empty_content"
	CodeBadArgument  = "bad_argument" // a malformed argument to an SDK call
	CodeNetwork      = "network"      // no answer from the server (offline, timeout)
	CodeCanceled     = "canceled"     // Pause or Close cancelled the call
	CodeLocal        = "local"        // the device's database failed
)

// Error is an error of this package with a code; the sentinel errors
// below are Errors, so errors.Is matches them.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return "edgechat: " + e.Message }

// Errors of this package.
var (
	ErrClosed       = &Error{CodeClosed, "closed"}
	ErrNotFound     = &Error{wire.CodeNotFound, "not found"}
	ErrEmptyContent = &Error{CodeEmpty, "empty content"}
	ErrSchemaTooNew = &Error{CodeSchemaTooNew, "database schema is newer than this client"}
	ErrNoUserID     = &Error{CodeNoUserID, "no user id (set Config.UserID or use a token with a numeric sub)"}
	ErrNotRetryable = &Error{CodeNotRetryable, "request is not failed"}
	// ErrOtherAccount: chats.db belongs to another user (or another
	// server). Open it with Config.WipeOtherAccount to start it afresh for
	// this one, or give each account its own DBPath.
	ErrOtherAccount = &Error{CodeOtherAccount, "the database belongs to another account"}
)

// APIError is a non-2xx answer of the server.
type APIError struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	return fmt.Sprintf("edgechat: server answered %d %s: %s", e.Status, e.Code, e.Message)
}

// statusCodes names the code of an answer that carried no error body (a
// proxy's, say).
var statusCodes = map[int]string{
	http.StatusBadRequest:            wire.CodeInvalidArgument,
	http.StatusUnauthorized:          wire.CodeUnauthenticated,
	http.StatusForbidden:             wire.CodePermissionDenied,
	http.StatusNotFound:              wire.CodeNotFound,
	http.StatusRequestEntityTooLarge: wire.CodeTooLarge,
	http.StatusTooManyRequests:       wire.CodeRateLimited,
	http.StatusServiceUnavailable:    wire.CodeUnavailable,
}

// ErrorCode is the code of an error returned by this package: the
// server's code for a refusal (API.md), one of the Code constants for the
// SDK's own, "" for nil.
func ErrorCode(err error) string {
	var e *Error
	var ae *APIError
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ae):
		if ae.Code != "" {
			return ae.Code
		}
		if c, ok := statusCodes[ae.Status]; ok {
			return c
		}
		if ae.Status >= 500 {
			return wire.CodeUnavailable
		}
		return wire.CodeInternal
	case errors.As(err, &e):
		return e.Code
	case errors.Is(err, context.Canceled):
		return CodeCanceled
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne):
		return CodeNetwork
	}
	return CodeLocal
}

// ErrorStatus is the HTTP status of the server's answer behind err, 0 if
// err is not a server's refusal.
func ErrorStatus(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// ErrorRetryAfterMillis is how long the server asked to wait before
// trying again (a 429 or 503's Retry-After), 0 if it did not.
func ErrorRetryAfterMillis(err error) int64 {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.RetryAfter.Milliseconds()
	}
	return 0
}

// IsTransient reports whether err may pass by itself (no answer, 5xx,
// 429): the SDK retries such failures of queued messages.
func IsTransient(err error) bool {
	switch ErrorCode(err) {
	case CodeNetwork, wire.CodeUnavailable, wire.CodeRateLimited, wire.CodeInternal:
		return true
	}
	return false
}

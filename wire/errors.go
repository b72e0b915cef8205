package wire

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Error codes of API.md.
const (
	CodeInvalidArgument  = "invalid_argument"
	CodeUnauthenticated  = "unauthenticated"
	CodePermissionDenied = "permission_denied"
	CodeNotFound         = "not_found"
	CodeTooLarge         = "too_large"
	CodeRateLimited      = "rate_limited"
	CodeRequestExpired   = "request_expired"
	CodeUnavailable      = "unavailable"
	CodeInternal         = "internal"
	CodeDeviceRevoked    = "device_revoked"
)

var codeStatus = map[string]int{
	CodeInvalidArgument:  http.StatusBadRequest,
	CodeUnauthenticated:  http.StatusUnauthorized,
	CodePermissionDenied: http.StatusForbidden,
	CodeNotFound:         http.StatusNotFound,
	CodeTooLarge:         http.StatusRequestEntityTooLarge,
	CodeRateLimited:      http.StatusTooManyRequests,
	CodeRequestExpired:   http.StatusConflict,
	CodeUnavailable:      http.StatusServiceUnavailable,
	CodeInternal:         http.StatusInternalServerError,
	CodeDeviceRevoked:    http.StatusForbidden,
}

// Error is an API error: a code of API.md, a human-readable message and,
// for rate_limited and unavailable, how long the client should wait.
type Error struct {
	Code       string
	Message    string
	RetryAfter time.Duration
}

func (e *Error) Error() string { return "wire: " + e.Code + ": " + e.Message }

// Status is the HTTP status that carries e.
func (e *Error) Status() int {
	if s, ok := codeStatus[e.Code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// RetryAfterSeconds is the Retry-After header value: whole seconds, at least 1.
func (e *Error) RetryAfterSeconds() string {
	s := int64((e.RetryAfter + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}

// ErrorBody is the JSON body of every non-2xx answer.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inner object of ErrorBody, and the payload of the
// WebSocket "error" event.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Body renders e as the API's error body.
func (e *Error) Body() ErrorBody {
	return ErrorBody{Error: ErrorDetail{Code: e.Code, Message: e.Message}}
}

// Errorf builds an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid is shorthand for an invalid_argument error.
func Invalid(format string, args ...any) *Error {
	return Errorf(CodeInvalidArgument, format, args...)
}

// AsError returns err as an *Error when it is (or wraps) one.
func AsError(err error) (*Error, bool) {
	var we *Error
	if errors.As(err, &we) {
		return we, true
	}
	return nil, false
}

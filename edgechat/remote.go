package edgechat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/edgenode/edgenode/wire"
)

// permanent reports whether retrying the same request cannot succeed.
func (e *APIError) permanent() bool {
	switch e.Status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusForbidden, http.StatusNotFound:
		return true
	}
	return false
}

// expired reports a 409 request_expired: the server no longer remembers
// the request's key and its createdAt is too old to check, so it refuses
// the request rather than risk a second copy of a message it may have
// accepted. Nothing was stored.
func (e *APIError) expired() bool {
	return e.Status == http.StatusConflict && e.Code == wire.CodeRequestExpired
}

// storedNothing reports whether the answer proves that the server stored
// nothing for the call: a refusal before or instead of the commit. A 5xx,
// or any other status (a proxy's 502 or 504 included), leaves the outcome
// unknown.
func (e *APIError) storedNothing() bool {
	switch e.Status {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound,
		http.StatusMethodNotAllowed, http.StatusConflict, http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		return true
	}
	return false
}

// remote is the Messages Remote DataSource of the seed: the REST calls, on
// whichever edge the edge set says is current.
type remote struct {
	http   *http.Client
	auth   *auth
	edges  *edgeSet
	device string // this installation's device id (Account.device_id), set before any call
}

// do makes one call. A 401 asks the TokenSource for a new token and makes
// the call once more with it; a second 401, or no new token, leaves auth
// failed and returns the 401.
func (r *remote) do(ctx context.Context, method, path string, body, out any) error {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return err
		}
	}
	tok, _ := r.auth.current()
	err := r.once(ctx, method, path, tok, b, out)
	if ae, ok := isAPIError(err); ok && ae.Code == wire.CodeDeviceRevoked {
		// This installation was removed from the account: no token
		// brings it back (the app signs in again with a new database).
		r.auth.fail(ae.Code, ae.Message)
		return err
	}
	if ae, ok := isAPIError(err); !ok || ae.Status != http.StatusUnauthorized {
		return err
	}
	fresh, rerr := r.auth.refresh(TokenUnauthorized, tok)
	if rerr != nil {
		// The 401's code stays (ErrorCode: unauthenticated); the message
		// says why no new token came.
		return fmt.Errorf("%w (no new token: %v)", err, rerr)
	}
	err = r.once(ctx, method, path, fresh, b, out)
	if ae, ok := isAPIError(err); ok && ae.Status == http.StatusUnauthorized {
		r.auth.fail(wire.CodeUnauthenticated, "the server refused the TokenSource's token: "+ae.Message)
	}
	return err
}

func (r *remote) once(ctx context.Context, method, path, tok string, body []byte, out any) error {
	base := r.edges.current()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set(wire.DeviceIDHeader, r.device)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.http.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			// The edge did not answer: the next call tries the next one.
			r.edges.failed(base)
		}
		return fmt.Errorf("edgechat: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("edgechat: %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &APIError{Status: resp.StatusCode}
		var eb wire.ErrorBody
		if json.Unmarshal(b, &eb) == nil {
			e.Code, e.Message = eb.Error.Code, eb.Error.Message
		}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			e.RetryAfter = time.Duration(s) * time.Second
		}
		if resp.StatusCode == http.StatusServiceUnavailable {
			r.edges.failed(base)
		}
		return e
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("edgechat: %s %s: decode: %w", method, path, err)
		}
	}
	return nil
}

func (r *remote) postMessage(ctx context.Context, req wire.NewMessageRequest) (wire.NewMessageResponse, error) {
	var out wire.NewMessageResponse
	err := r.do(ctx, http.MethodPost, "/v1/messages", req, &out)
	return out, err
}

func (r *remote) sync(ctx context.Context, cursor int64, limit int) (wire.SyncResponse, error) {
	var out wire.SyncResponse
	err := r.do(ctx, http.MethodGet, fmt.Sprintf("/v1/messages?lastSyncedMessage=%d&limit=%d", cursor, limit), nil, &out)
	return out, err
}

func (r *remote) markRead(ctx context.Context, contact, upTo int64) error {
	return r.do(ctx, http.MethodPost, fmt.Sprintf("/v1/conversations/%d/read", contact), wire.ReadRequest{UpToMessageID: upTo}, nil)
}

func (r *remote) typing(ctx context.Context, contact int64, typing bool) error {
	return r.do(ctx, http.MethodPost, fmt.Sprintf("/v1/conversations/%d/typing", contact), wire.TypingRequest{Typing: typing}, nil)
}

func (r *remote) status(ctx context.Context, user int64) (wire.ContactStatus, error) {
	var out wire.ContactStatus
	err := r.do(ctx, http.MethodGet, fmt.Sprintf("/v1/users/%d/status", user), nil, &out)
	return out, err
}

func (r *remote) registerDevice(ctx context.Context, d wire.DeviceRequest) error {
	return r.do(ctx, http.MethodPost, "/v1/devices", d, nil)
}

func (r *remote) unregisterDevice(ctx context.Context, token string) error {
	return r.do(ctx, http.MethodDelete, "/v1/devices/"+url.PathEscape(token), nil, nil)
}

func isAPIError(err error) (*APIError, bool) {
	var e *APIError
	ok := errors.As(err, &e)
	return e, ok
}

package edgechat

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgenode/edgenode/wire"
)

// TokenSource gives the SDK bearer tokens for its user: the app implements
// it over its login service (Java and Swift implement it through gomobile).
type TokenSource interface {
	// Token returns a token for the client's user. reason is
	// TokenStart (Start or Resume), TokenExpiring (the current token
	// expires within a minute, or a tenth of its life) or
	// TokenUnauthorized (the server refused the current token). It is
	// called from a goroutine of the SDK, one call at a time, and may
	// block (a network call to the login service); return an error when
	// no token can be had (the user must log in again).
	Token(reason string) (string, error)
}

// TokenSource reasons.
const (
	TokenStart        = "start"
	TokenExpiring     = "expiring"
	TokenUnauthorized = "unauthorized"
)

// auth holds the client's token: the one Config.Token gave, replaced by
// SetToken or the TokenSource. After a refusal that no new token cured it
// is failed: sending and the socket wait for a token instead of burning
// attempts with a dead one.
type auth struct {
	me     int64
	notify *notifier

	refreshMu sync.Mutex // one TokenSource call at a time

	mu      sync.Mutex
	token   string
	src     TokenSource
	failed  bool
	changed chan struct{} // closed when the token or src changes
}

func newAuth(me int64, token string, src TokenSource, n *notifier) *auth {
	return &auth{me: me, token: token, src: src, notify: n, changed: make(chan struct{})}
}

// current is the token to send and whether auth is failed.
func (a *auth) current() (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.token, a.failed
}

// waitChange is closed when the token or the TokenSource changes.
func (a *auth) waitChange() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.changed
}

func (a *auth) setSource(src TokenSource) {
	a.mu.Lock()
	a.src = src
	a.signalLocked()
	a.mu.Unlock()
}

func (a *auth) signalLocked() {
	close(a.changed)
	a.changed = make(chan struct{})
}

// set installs tok after checking that it names this client's user.
func (a *auth) set(tok string) error {
	if sub := userFromToken(tok); tok == "" || (sub != 0 && sub != a.me) {
		err := &Error{CodeOtherAccount, fmt.Sprintf("the token is for user %d, this client is user %d", sub, a.me)}
		if tok == "" {
			err = &Error{CodeTokenSource, "empty token"}
		}
		return err
	}
	a.mu.Lock()
	a.token, a.failed = tok, false
	a.signalLocked()
	a.mu.Unlock()
	return nil
}

// fail marks auth failed and tells the app, once per token.
func (a *auth) fail(code, msg string) {
	a.mu.Lock()
	was := a.failed
	a.failed = true
	a.mu.Unlock()
	if !was {
		a.notify.authFailed(code, msg)
	}
}

// refresh asks the TokenSource for a new token because of reason. stale is
// the token the caller used: when another caller already replaced it, that
// token is returned without asking again. Without a TokenSource, or when
// it fails, auth becomes failed (for TokenUnauthorized) and the error is
// returned.
func (a *auth) refresh(reason, stale string) (string, error) {
	a.refreshMu.Lock()
	defer a.refreshMu.Unlock()
	a.mu.Lock()
	tok, src := a.token, a.src
	a.mu.Unlock()
	if reason == TokenUnauthorized && tok != stale {
		return tok, nil
	}
	if src == nil {
		err := &Error{wire.CodeUnauthenticated, "the server refused the token and there is no TokenSource"}
		if reason == TokenUnauthorized {
			a.fail(err.Code, err.Message)
		}
		return "", err
	}
	tok, err := src.Token(reason)
	if err == nil {
		err = a.set(tok)
	} else {
		err = &Error{CodeTokenSource, "TokenSource: " + err.Error()}
	}
	if err != nil {
		if reason == TokenUnauthorized {
			a.fail(ErrorCode(err), err.Error())
		}
		return "", err
	}
	return tok, nil
}

// refreshLoop asks the TokenSource for a new token before the current one
// expires: a minute before, or a tenth of its life when that is shorter.
func (a *auth) refreshLoop(ctx context.Context, now func() time.Time) {
	for ctx.Err() == nil {
		tok, _ := a.current()
		changed := a.waitChange()
		var due <-chan time.Time
		var t *time.Timer
		a.mu.Lock()
		hasSrc := a.src != nil
		a.mu.Unlock()
		if exp, iat, ok := tokenTimes(tok); ok && hasSrc {
			lead := time.Minute
			if !iat.IsZero() {
				lead = min(lead, exp.Sub(iat)/10)
			}
			t = time.NewTimer(max(exp.Add(-lead).Sub(now()), 0))
			due = t.C
		}
		fired := false
		select {
		case <-ctx.Done():
		case <-changed:
		case <-due:
			fired = true
		}
		if t != nil {
			t.Stop()
		}
		if !fired {
			continue
		}
		if _, err := a.refresh(TokenExpiring, tok); err != nil {
			// Not failed yet: the token may still work. Try again soon.
			select {
			case <-ctx.Done():
				return
			case <-changed:
			case <-time.After(5 * time.Second):
			}
		}
	}
}

// claims reads a JWT's claims without verifying it (the server verifies;
// the client only needs to know whose it is and when it expires).
func claims(tok string) (sub int64, exp, iat time.Time) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return 0, exp, iat
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return 0, exp, iat
	}
	var c struct {
		Sub string  `json:"sub"`
		Exp float64 `json:"exp"`
		Iat float64 `json:"iat"`
	}
	if json.Unmarshal(b, &c) != nil {
		return 0, exp, iat
	}
	sub, _ = strconv.ParseInt(c.Sub, 10, 64)
	if c.Exp > 0 {
		exp = time.Unix(int64(c.Exp), 0)
	}
	if c.Iat > 0 {
		iat = time.Unix(int64(c.Iat), 0)
	}
	return sub, exp, iat
}

// userFromToken is the user id of a JWT's sub claim, 0 if none.
func userFromToken(tok string) int64 { sub, _, _ := claims(tok); return sub }

// tokenTimes is a JWT's exp (and iat, zero if absent).
func tokenTimes(tok string) (exp, iat time.Time, ok bool) {
	_, exp, iat = claims(tok)
	return exp, iat, !exp.IsZero()
}

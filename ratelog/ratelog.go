// Package ratelog keeps repeated warnings and errors from flooding a log.
//
// A Handler passes the first Burst records of each kind (level, and the
// message without its digits, so that addresses and counts in the text do
// not make every line a kind of its own) per Window, at level Warn and above, and counts the rest; when
// the window ends it writes one summary record per kind that had any
// suppressed: the same level and message with "(repeated)" appended and
// suppressed=N, window=1m0s. Records below Warn always pass: they are
// bounded by what the node does, not by what its peers or clients send.
//
// Junk packets to the gossip port, or heartbeats to a node that is down,
// would otherwise write a line each: thousands per second.
package ratelog

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Defaults.
const (
	DefaultBurst  = 10
	DefaultWindow = time.Minute
)

// Options configure a Handler.
type Options struct {
	Burst  int           // records of one kind passed per window; 0 = DefaultBurst
	Window time.Duration // 0 = DefaultWindow
	// Now is the clock (tests); nil = time.Now.
	Now func() time.Time
}

// Handler is a slog.Handler that rate-limits repeated records.
type Handler struct {
	next slog.Handler
	s    *state
}

type key struct {
	level slog.Level
	msg   string
}

type entry struct {
	msg        string    // the first record's message
	start      time.Time // window start
	passed     int
	suppressed int
	h          slog.Handler // where the summary goes (the first suppressed record's)
	ctx        context.Context
}

type state struct {
	opts Options
	mu   sync.Mutex
	kind map[key]*entry
	stop chan struct{}
	once sync.Once
}

// New wraps next. The returned handler starts a goroutine that writes the
// summaries of windows that ended without a later record of their kind;
// Close stops it.
func New(next slog.Handler, opts Options) *Handler {
	if opts.Burst <= 0 {
		opts.Burst = DefaultBurst
	}
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &Handler{next: next, s: &state{opts: opts, kind: map[key]*entry{}, stop: make(chan struct{})}}
	go h.s.loop()
	return h
}

// Close stops the summary goroutine after writing every pending summary.
func (h *Handler) Close() {
	h.s.once.Do(func() { close(h.s.stop) })
	h.Flush(true)
}

func (s *state) loop() {
	t := time.NewTicker(s.opts.Window / 4)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			flush(s, false)
		}
	}
}

// Flush writes the summaries of ended windows (all of them with all) and
// forgets kinds that were quiet for a whole window.
func (h *Handler) Flush(all bool) { flush(h.s, all) }

type summary struct {
	h   slog.Handler
	ctx context.Context
	r   slog.Record
}

func flush(s *state, all bool) {
	now := s.opts.Now()
	var out []summary
	s.mu.Lock()
	for k, e := range s.kind {
		if !all && now.Sub(e.start) < s.opts.Window {
			continue
		}
		if e.suppressed > 0 {
			out = append(out, summary{e.h, e.ctx, summaryRecord(k.level, e, now, s.opts.Window)})
		}
		delete(s.kind, k)
	}
	s.mu.Unlock()
	for _, o := range out {
		_ = o.h.Handle(o.ctx, o.r)
	}
}

func summaryRecord(level slog.Level, e *entry, now time.Time, window time.Duration) slog.Record {
	r := slog.NewRecord(now, level, e.msg+" (repeated)", 0)
	r.AddAttrs(slog.Int("suppressed", e.suppressed), slog.Duration("window", window))
	return r
}

// Enabled is the wrapped handler's.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// Handle passes r unless it is one too many of its kind in this window.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return h.next.Handle(ctx, r)
	}
	s := h.s
	k := key{r.Level, withoutDigits(r.Message)}
	now := s.opts.Now()
	var sum *summary
	s.mu.Lock()
	e := s.kind[k]
	if e != nil && now.Sub(e.start) >= s.opts.Window {
		if e.suppressed > 0 {
			sum = &summary{e.h, e.ctx, summaryRecord(k.level, e, now, s.opts.Window)}
		}
		e = nil
	}
	if e == nil {
		e = &entry{start: now, msg: r.Message}
		s.kind[k] = e
	}
	pass := e.passed < s.opts.Burst
	if pass {
		e.passed++
	} else {
		if e.suppressed == 0 {
			e.h, e.ctx = h.next, context.WithoutCancel(ctx)
		}
		e.suppressed++
	}
	s.mu.Unlock()
	if sum != nil {
		_ = sum.h.Handle(sum.ctx, sum.r)
	}
	if !pass {
		return nil
	}
	return h.next.Handle(ctx, r)
}

// withoutDigits is msg with its ASCII digits dropped (msg itself, with no
// copy, when it has none).
func withoutDigits(msg string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return -1
		}
		return r
	}, msg)
}

// WithAttrs shares the rate limits of h.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &Handler{next: h.next.WithAttrs(as), s: h.s}
}

// WithGroup shares the rate limits of h.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name), s: h.s}
}

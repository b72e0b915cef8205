package ratelog

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) { b.mu.Lock(); defer b.mu.Unlock(); return b.b.Write(p) }
func (b *syncBuf) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.TrimRight(b.b.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func count(lines []string, sub string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

func TestRepeatedRecordsAreSummarised(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var buf syncBuf
	h := New(slog.NewTextHandler(&buf, nil), Options{Burst: 3, Window: time.Minute, Now: clk.now})
	defer h.Close()
	log := slog.New(h)
	raft := log.With("component", "raft")

	for i := range 1350 {
		raft.Error("failed to heartbeat to", "peer", "b", "i", i)
	}
	for i := range 5 {
		log.Warn("member: junk packet from=127.0.0.1:" + strconv.Itoa(40000+i))
	}
	for range 100 {
		log.Info("promoting voter") // below Warn: never limited
	}
	lines := buf.lines()
	if n := count(lines, `msg="failed to heartbeat to"`); n != 3 {
		t.Fatalf("%d heartbeat errors passed, want 3:\n%s", n, strings.Join(lines, "\n"))
	}
	if n := count(lines, `component=raft`); n != 3 {
		t.Fatalf("attributes of the derived logger lost: %d lines with component=raft", n)
	}
	if n := count(lines, "junk packet"); n != 3 {
		t.Fatalf("%d junk-packet warnings passed, want 3", n)
	}
	if n := count(lines, "promoting voter"); n != 100 {
		t.Fatalf("%d info records passed, want all 100", n)
	}
	if n := count(lines, "repeated"); n != 0 {
		t.Fatalf("a summary before the window ended:\n%s", strings.Join(lines, "\n"))
	}

	// The window ends: one summary per kind, at the kind's level, through
	// the handler of its first suppressed record.
	clk.add(time.Minute)
	h.Flush(false)
	lines = buf.lines()
	want := `level=ERROR msg="failed to heartbeat to (repeated)" component=raft suppressed=1347 window=1m0s`
	if n := count(lines, want); n != 1 {
		t.Fatalf("no summary %q:\n%s", want, strings.Join(lines, "\n"))
	}
	if n := count(lines, `msg="member: junk packet from=127.0.0.1:40000 (repeated)" suppressed=2`); n != 1 {
		t.Fatalf("no junk-packet summary:\n%s", strings.Join(lines, "\n"))
	}

	// A new window passes records again; a quiet kind writes no summary.
	before := len(lines)
	raft.Error("failed to heartbeat to", "peer", "b")
	clk.add(2 * time.Minute)
	h.Flush(false)
	lines = buf.lines()
	if got := lines[before:]; len(got) != 1 || !strings.Contains(got[0], `msg="failed to heartbeat to"`) {
		t.Fatalf("after the window: %q", got)
	}
}

// TestSummaryOnTheNextRecord: a record of a kind whose window ended writes
// that window's summary first, even before the flusher runs.
func TestSummaryOnTheNextRecord(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var buf syncBuf
	h := New(slog.NewTextHandler(&buf, nil), Options{Burst: 1, Window: time.Hour, Now: clk.now})
	defer h.Close()
	log := slog.New(h)
	log.Warn("x")
	log.Warn("x")
	log.Warn("x")
	clk.add(time.Hour)
	log.Warn("x")
	lines := buf.lines()
	if len(lines) != 3 || !strings.Contains(lines[1], `msg="x (repeated)" suppressed=2`) || !strings.Contains(lines[2], `msg=x`) {
		t.Fatalf("lines: %q", lines)
	}
}

// TestCloseWritesPendingSummaries: nothing counted is lost at exit.
func TestCloseWritesPendingSummaries(t *testing.T) {
	var buf syncBuf
	h := New(slog.NewTextHandler(&buf, nil), Options{Burst: 1})
	log := slog.New(h)
	log.Error("y")
	log.Error("y")
	h.Close()
	if lines := buf.lines(); len(lines) != 2 || !strings.Contains(lines[1], `suppressed=1`) {
		t.Fatalf("lines: %q", lines)
	}
}

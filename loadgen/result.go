package loadgen

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// ConnectResult describes the ramp-up: every socket opened and whether it
// became ready.
type ConnectResult struct {
	Attempted   int64            `json:"attempted"`
	Ready       int64            `json:"ready"`
	Failed      int64            `json:"failed"`
	Errors      map[string]int64 `json:"errors,omitempty"`
	Seconds     float64          `json:"seconds"` // wall time of the ramp
	TimeToReady Summary          `json:"timeToReady"`
	Hist        *HistSnapshot    `json:"timeToReadyHist,omitempty"`
}

// SendResult counts the sends scheduled inside the measurement window
// (after the warm-up). Latencies run from the scheduled time.
type SendResult struct {
	Offered        int64         `json:"offered"`          // scheduled (open loop) or started (closed loop)
	Overload       int64         `json:"overload"`         // skipped: --max-inflight reached
	Accepted       int64         `json:"accepted"`         // answered 201
	Failed         int64         `json:"failed"`           // any other outcome, by kind in Errors
	Delivered      int64         `json:"delivered"`        // matched on the recipient's socket
	Undelivered    int64         `json:"undelivered"`      // 201 but not delivered before the drain ended
	AcceptedInWin  int64         `json:"acceptedInWindow"` // 201s that arrived inside the window
	OfferedPerSec  float64       `json:"offeredPerSec"`
	AcceptedPerSec float64       `json:"acceptedPerSec"` // AcceptedInWin / window
	DeliverPerSec  float64       `json:"deliveredPerSec"`
	Send201        Summary       `json:"send201"`
	Deliver        Summary       `json:"deliver"`
	Send201Hist    *HistSnapshot `json:"send201Hist,omitempty"`
	DeliverHist    *HistSnapshot `json:"deliverHist,omitempty"`
}

// MemoryResult is the server's resident memory around the sockets.
type MemoryResult struct {
	PID            int     `json:"pid"`
	Sockets        int64   `json:"sockets"`
	BeforeKiB      int64   `json:"rssBeforeKiB"`
	AfterKiB       int64   `json:"rssAfterConnectKiB"`
	EndKiB         int64   `json:"rssEndKiB,omitempty"`
	BytesPerSocket float64 `json:"bytesPerSocket"`
	EndPerSocket   float64 `json:"endBytesPerSocket,omitempty"` // (end-before)/sockets, at the end of the hold
	CPUCores       float64 `json:"cpuCoresDuringRun"`           // server CPU time / wall time from the start of the timeline to its end
}

// CPUResult is the CPU time of the nodes named by --cpu-pids over the
// timeline.
type CPUResult struct {
	PIDs  []int   `json:"pids"`
	Cores float64 `json:"cores"` // CPU time of all of them / wall time
	// MicrosPerSend is Cores over the sends accepted per second inside
	// the window: the servers' CPU per message at a steady offered rate.
	MicrosPerSend float64 `json:"microsPerSend,omitempty"`
}

// Result is the outcome of a worker or, merged, of the whole run.
type Result struct {
	Mode           string            `json:"mode"` // "open-loop", "closed-loop", "idle"
	Config         *Config           `json:"config,omitempty"`
	Procs          int               `json:"procs"`
	Users          int               `json:"users"`
	Devices        int               `json:"devices,omitempty"` // sockets per user (each its own device)
	Senders        int               `json:"senders"`
	WindowSeconds  float64           `json:"windowSeconds"`
	Connect        ConnectResult     `json:"connect"`
	Sends          SendResult        `json:"sends"`
	SocketDrops    int64             `json:"socketDrops"`
	Reconnects     int64             `json:"reconnects"`
	Errors         map[string]int64  `json:"errors"`
	ErrorSamples   map[string]string `json:"errorSamples,omitempty"`
	Memory         *MemoryResult     `json:"memory,omitempty"`
	ServerCPU      *CPUResult        `json:"serverCpu,omitempty"`
	ForeignFrames  int64             `json:"foreignMessages"`     // new_message not sent by this run (queued from earlier runs)
	DuplicateMsgs  int64             `json:"duplicateDeliveries"` // delivered again after being matched
	WorkerFailures []string          `json:"workerFailures,omitempty"`
	ClientCPU      float64           `json:"clientCpuCores"` // this tool's CPU time / wall time during the timeline, all workers
}

// Merge combines worker results into one: counts add up, histograms merge,
// rates are recomputed over the shared window.
func Merge(parts []*Result) (*Result, error) {
	out := &Result{Errors: map[string]int64{}, ErrorSamples: map[string]string{}, Connect: ConnectResult{Errors: map[string]int64{}}}
	var ttr, s201, dlv []*HistSnapshot
	for _, p := range parts {
		if p == nil {
			continue
		}
		if out.Mode == "" {
			out.Mode = p.Mode
		}
		out.Procs++
		out.Users += p.Users
		out.Devices = max(out.Devices, p.Devices)
		out.Senders += p.Senders
		out.WindowSeconds = max(out.WindowSeconds, p.WindowSeconds)
		c := &out.Connect
		c.Attempted += p.Connect.Attempted
		c.Ready += p.Connect.Ready
		c.Failed += p.Connect.Failed
		c.Seconds = max(c.Seconds, p.Connect.Seconds)
		addCounts(c.Errors, p.Connect.Errors)
		ttr = append(ttr, p.Connect.Hist)
		s, q := &out.Sends, &p.Sends
		s.Offered += q.Offered
		s.Overload += q.Overload
		s.Accepted += q.Accepted
		s.Failed += q.Failed
		s.Delivered += q.Delivered
		s.Undelivered += q.Undelivered
		s.AcceptedInWin += q.AcceptedInWin
		s201 = append(s201, q.Send201Hist)
		dlv = append(dlv, q.DeliverHist)
		out.SocketDrops += p.SocketDrops
		out.Reconnects += p.Reconnects
		out.ForeignFrames += p.ForeignFrames
		out.DuplicateMsgs += p.DuplicateMsgs
		addCounts(out.Errors, p.Errors)
		for k, v := range p.ErrorSamples {
			if _, ok := out.ErrorSamples[k]; !ok {
				out.ErrorSamples[k] = v
			}
		}
		out.WorkerFailures = append(out.WorkerFailures, p.WorkerFailures...)
		out.ClientCPU += p.ClientCPU
	}
	for _, m := range []struct {
		snaps []*HistSnapshot
		sum   *Summary
		snap  **HistSnapshot
	}{
		{ttr, &out.Connect.TimeToReady, &out.Connect.Hist},
		{s201, &out.Sends.Send201, &out.Sends.Send201Hist},
		{dlv, &out.Sends.Deliver, &out.Sends.DeliverHist},
	} {
		h, err := MergeSnapshots(m.snaps...)
		if err != nil {
			return nil, err
		}
		*m.sum = Summarize(h)
		*m.snap = ExportHist(h)
	}
	out.Finish()
	return out, nil
}

// Finish computes the rates from the counts.
func (r *Result) Finish() {
	if r.WindowSeconds > 0 {
		r.Sends.OfferedPerSec = float64(r.Sends.Offered) / r.WindowSeconds
		r.Sends.AcceptedPerSec = float64(r.Sends.AcceptedInWin) / r.WindowSeconds
		r.Sends.DeliverPerSec = float64(r.Sends.Delivered) / r.WindowSeconds
	}
}

func addCounts(dst, src map[string]int64) {
	for k, v := range src {
		dst[k] += v
	}
}

// WriteText prints the final summary.
func (r *Result) WriteText(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	devs := ""
	if r.Devices > 1 {
		devs = fmt.Sprintf(" with %d devices each", r.Devices)
	}
	p("edgeload %s: %d users%s (%d sending) in %d process(es), window %.1fs\n", r.Mode, r.Users, devs, r.Senders, r.Procs, r.WindowSeconds)
	c := r.Connect
	p("connect:   %d/%d ready, %d failed in %.2fs; time to ready %s\n", c.Ready, c.Attempted, c.Failed, c.Seconds, fmtSummary(c.TimeToReady))
	if len(c.Errors) > 0 {
		p("           connect errors: %s\n", fmtCounts(c.Errors))
	}
	if m := r.Memory; m != nil {
		p("memory:    server pid %d RSS %.1f MiB before, %.1f MiB after %d sockets: %.0f bytes (%.2f KiB) per socket\n",
			m.PID, float64(m.BeforeKiB)/1024, float64(m.AfterKiB)/1024, m.Sockets, m.BytesPerSocket, m.BytesPerSocket/1024)
		if m.BytesPerSocket < 0 {
			p("           (negative: the server returned memory from earlier load; measure sockets on a freshly started node)\n")
		}
		p("           server CPU %.2f cores during the timeline\n", m.CPUCores)
		if m.EndKiB > 0 {
			p("           at the end: RSS %.1f MiB, %.0f bytes (%.2f KiB) per socket\n", float64(m.EndKiB)/1024, m.EndPerSocket, m.EndPerSocket/1024)
		}
	}
	if c := r.ServerCPU; c != nil {
		p("servers:   CPU %.3f cores during the timeline (pids %v), %.0f µs per accepted send\n", c.Cores, c.PIDs, c.MicrosPerSend)
	}
	if r.Mode != "idle" {
		s := r.Sends
		p("sends:     offered %d (%.0f/s), accepted %d; %.0f/s accepted inside the window\n", s.Offered, s.OfferedPerSec, s.Accepted, s.AcceptedPerSec)
		p("           failed %d, overload (skipped at --max-inflight) %d, delivered %d (%.0f/s), undelivered %d\n", s.Failed, s.Overload, s.Delivered, s.DeliverPerSec, s.Undelivered)
		p("send→201:     %s\n", fmtSummary(s.Send201))
		p("send→deliver: %s\n", fmtSummary(s.Deliver))
	}
	p("client:    edgeload used %.2f cores during the timeline\n", r.ClientCPU)
	p("sockets:   %d drops, %d reconnects", r.SocketDrops, r.Reconnects)
	if r.ForeignFrames > 0 || r.DuplicateMsgs > 0 {
		p("; %d messages from earlier runs, %d duplicate deliveries", r.ForeignFrames, r.DuplicateMsgs)
	}
	p("\n")
	if len(r.Errors) > 0 {
		p("errors:    %s\n", fmtCounts(r.Errors))
		for _, k := range slices.Sorted(maps.Keys(r.ErrorSamples)) {
			p("           e.g. %s: %s\n", k, r.ErrorSamples[k])
		}
	} else {
		p("errors:    none\n")
	}
	for _, f := range r.WorkerFailures {
		p("worker failure: %s\n", f)
	}
}

func fmtSummary(s Summary) string {
	if s.Count == 0 {
		return "n=0"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (n=%d)", fmtMs(s.P50), fmtMs(s.P90), fmtMs(s.P99), fmtMs(s.P999), fmtMs(s.Max), s.Count)
}

func fmtMs(ms float64) string {
	switch {
	case ms >= 1000:
		return fmt.Sprintf("%.2fs", ms/1000)
	case ms >= 10:
		return fmt.Sprintf("%.1fms", ms)
	default:
		return fmt.Sprintf("%.2fms", ms)
	}
}

func fmtCounts(m map[string]int64) string {
	keys := slices.Sorted(maps.Keys(m))
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return b.String()
}

// Progress is a worker's state, sent every second.
type Progress struct {
	Phase      string  `json:"phase"`
	Ready      int64   `json:"ready"`      // sockets ready now
	ConnectOK  int64   `json:"connectOK"`  // ramp-up sockets ready so far
	ConnectErr int64   `json:"connectErr"` // ramp-up failures so far
	Dispatched int64   `json:"dispatched"` // sends started (warm-up included)
	Accepted   int64   `json:"accepted"`   // 201s (warm-up included)
	Delivered  int64   `json:"delivered"`
	Errors     int64   `json:"errors"` // every error kind, overload included
	Overload   int64   `json:"overload"`
	Inflight   int64   `json:"inflight"`
	Drops      int64   `json:"drops"`
	P50Send    float64 `json:"p50SendMs"` // this interval
	P99Send    float64 `json:"p99SendMs"`
	P99Deliver float64 `json:"p99DeliverMs"`
	P99Ready   float64 `json:"p99ReadyMs"`
}

// SumProgress adds worker progress; interval percentiles take the maximum
// over workers (an upper bound of the true percentile).
func SumProgress(ps []Progress) Progress {
	var t Progress
	for i, p := range ps {
		if i == 0 {
			t.Phase = p.Phase
		}
		t.Ready += p.Ready
		t.ConnectOK += p.ConnectOK
		t.ConnectErr += p.ConnectErr
		t.Dispatched += p.Dispatched
		t.Accepted += p.Accepted
		t.Delivered += p.Delivered
		t.Errors += p.Errors
		t.Overload += p.Overload
		t.Inflight += p.Inflight
		t.Drops += p.Drops
		t.P50Send = max(t.P50Send, p.P50Send)
		t.P99Send = max(t.P99Send, p.P99Send)
		t.P99Deliver = max(t.P99Deliver, p.P99Deliver)
		t.P99Ready = max(t.P99Ready, p.P99Ready)
	}
	return t
}

// ProgressLine renders one live line from two consecutive totals dt
// seconds apart.
func ProgressLine(elapsed float64, cur, prev Progress, dt float64, users int, sending bool) string {
	rate := func(a, b int64) float64 {
		if dt <= 0 {
			return 0
		}
		return float64(a-b) / dt
	}
	s := fmt.Sprintf("[%6.1fs %-8s] ready %d/%d", elapsed, cur.Phase, cur.Ready, users)
	if cur.Phase == "connect" {
		return s + fmt.Sprintf(" (+%.0f/s, %d failed) p99 ready %s", rate(cur.ConnectOK, prev.ConnectOK), cur.ConnectErr, fmtMs(cur.P99Ready))
	}
	if !sending || (cur.Dispatched == 0 && cur.Phase != "warmup" && cur.Phase != "measure") {
		return s + fmt.Sprintf(" | drops %d errors %d", cur.Drops, cur.Errors)
	}
	return s + fmt.Sprintf(" | sent %.0f/s 201 %.0f/s deliv %.0f/s | inflight %d | 201 p50 %s p99 %s deliv p99 %s | errors %d (overload %d) drops %d",
		rate(cur.Dispatched, prev.Dispatched), rate(cur.Accepted, prev.Accepted), rate(cur.Delivered, prev.Delivered),
		cur.Inflight, fmtMs(cur.P50Send), fmtMs(cur.P99Send), fmtMs(cur.P99Deliver), cur.Errors, cur.Overload, cur.Drops)
}

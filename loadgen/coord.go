package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The coordinator and its workers speak JSON lines. The coordinator writes
// the WorkerConfig as the first line of the worker's stdin, then commands:
//
//	go <unix nanos>   start the timeline (warm-up, window, drain) at that instant
//	stop              end the timeline early (Ctrl-C)
//	close             close the sockets and exit
//
// The worker writes Msg lines on stdout: "progress" every second,
// "connected" once its ramp-up ended, "done" with its Result once its
// timeline and drain ended (sockets still open, so the coordinator can read
// the server's memory), "error" if it cannot run, and with --report-every
// "interval" as each interval of the measurement window ends.

// Msg is one line from a worker.
type Msg struct {
	Kind     string          `json:"kind"`
	Progress *Progress       `json:"progress,omitempty"`
	Connect  *ConnectResult  `json:"connect,omitempty"`
	Result   *Result         `json:"result,omitempty"`
	Interval *IntervalReport `json:"interval,omitempty"`
	Error    string          `json:"error,omitempty"`
}

// RunWorker runs one worker over the line protocol until "close" or the
// end of in.
func RunWorker(in io.Reader, out io.Writer) error {
	var mu sync.Mutex
	enc := json.NewEncoder(out)
	send := func(m Msg) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(m)
	}
	br := bufio.NewReader(in)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("worker: reading config: %w", err)
	}
	var cfg WorkerConfig
	if err := json.Unmarshal(line, &cfg); err != nil {
		send(Msg{Kind: "error", Error: "bad config: " + err.Error()})
		return err
	}
	w, err := NewWorker(cfg)
	if err != nil {
		send(Msg{Kind: "error", Error: err.Error()})
		return err
	}
	defer w.Close()
	w.OnInterval = func(r IntervalReport) { send(Msg{Kind: "interval", Interval: &r}) }

	cmds := make(chan string, 4)
	go func() {
		defer close(cmds)
		for {
			l, err := br.ReadString('\n')
			if l = strings.TrimSpace(l); l != "" {
				cmds <- l
			}
			if err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	goCh := make(chan time.Time, 1)
	closeCh := make(chan struct{})
	go func() {
		defer close(closeCh)
		for c := range cmds {
			switch {
			case strings.HasPrefix(c, "go "):
				ns, err := strconv.ParseInt(strings.TrimPrefix(c, "go "), 10, 64)
				if err == nil {
					goCh <- time.Unix(0, ns)
				}
			case c == "stop":
				cancel()
			case c == "close":
				cancel()
				return
			}
		}
		cancel() // stdin closed: the coordinator is gone
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	go func() {
		for {
			select {
			case <-closeCh:
				return
			case <-tick.C:
				p := w.Progress()
				send(Msg{Kind: "progress", Progress: &p})
			}
		}
	}()

	w.Connect(ctx)
	cr := w.ConnectResult()
	send(Msg{Kind: "connected", Connect: &cr})
	select {
	case start := <-goCh:
		cpu0 := selfCPU()
		w.Run(ctx, start)
		r := w.Result()
		if wall := time.Since(start).Seconds(); wall > 0 {
			r.ClientCPU = (selfCPU() - cpu0) / wall
		}
		send(Msg{Kind: "done", Result: r})
	case <-closeCh:
		return nil
	}
	<-closeCh
	return nil
}

// Spawn starts worker i and returns its stdin, its stdout and a function
// that waits for it to exit.
type Spawn func(i int) (stdin io.WriteCloser, stdout io.ReadCloser, wait func() error, err error)

// InProcess runs workers as goroutines of this process.
func InProcess(i int) (io.WriteCloser, io.ReadCloser, func() error, error) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := RunWorker(inR, outW)
		outW.Close()
		inR.Close()
		done <- err
	}()
	return inW, outR, func() error { return <-done }, nil
}

type workerMsg struct {
	i int
	m Msg
}

// Coordinate runs cfg over cfg.Procs workers started by spawn, prints a
// progress line every second to log, and returns the merged result.
func Coordinate(ctx context.Context, cfg Config, spawn Spawn, log io.Writer) (*Result, error) {
	return CoordinateWithReports(ctx, cfg, spawn, log, nil)
}

// CoordinateWithReports is Coordinate that, when cfg.ReportEvery > 0 and
// reports is not nil, also writes one JSON line (an IntervalReport merged
// over the workers) to reports as each interval of the measurement window
// ends.
func CoordinateWithReports(ctx context.Context, cfg Config, spawn Spawn, log io.Writer, reports io.Writer) (*Result, error) {
	n := cfg.Procs
	var iw *intervalWriter
	if cfg.ReportEvery > 0 && reports != nil {
		iw = newIntervalWriter(reports, n)
	}
	runBase := time.Now().UnixMicro()
	msgs := make(chan workerMsg, 64*n)
	stdins := make([]io.WriteCloser, n)
	waits := make([]func() error, n)
	var readers sync.WaitGroup
	var memory *MemoryResult
	if cfg.ServerPID > 0 {
		rss, err := ReadRSS(cfg.ServerPID)
		if err != nil {
			return nil, err
		}
		memory = &MemoryResult{PID: cfg.ServerPID, BeforeKiB: rss}
	}
	for i := 0; i < n; i++ {
		in, out, wait, err := spawn(i)
		if err != nil {
			for j := 0; j < i; j++ {
				stdins[j].Close()
				_ = waits[j]()
			}
			return nil, fmt.Errorf("starting worker %d: %w", i, err)
		}
		stdins[i], waits[i] = in, wait
		wc := cfg.Split(i, runBase)
		b, _ := json.Marshal(wc)
		if _, err := in.Write(append(b, '\n')); err != nil {
			return nil, fmt.Errorf("configuring worker %d: %w", i, err)
		}
		readers.Add(1)
		go func() {
			defer readers.Done()
			dec := json.NewDecoder(out)
			for {
				var m Msg
				if err := dec.Decode(&m); err != nil {
					if !errors.Is(err, io.EOF) {
						msgs <- workerMsg{i, Msg{Kind: "error", Error: "reading worker output: " + err.Error()}}
					}
					msgs <- workerMsg{i, Msg{Kind: "exit"}}
					return
				}
				msgs <- workerMsg{i, m}
			}
		}()
	}
	broadcast := func(cmd string) {
		for _, in := range stdins {
			_, _ = io.WriteString(in, cmd+"\n")
		}
	}

	senders, _ := cfg.SenderCount()
	sending := !cfg.Idle && senders > 0
	t0 := time.Now()
	latest := make([]Progress, n)
	var prev Progress
	prevAt := t0
	connected, done, exited := 0, 0, 0
	results := make([]*Result, n)
	var failures []string
	var connects []ConnectResult
	ended := make([]bool, n) // connected or failed
	finished := make([]bool, n)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var settle <-chan time.Time
	var runStart time.Time
	var serverCPU0, pidsCPU0 float64
	var serverCPU *CPUResult
	started, stopped, closed := false, false, false
	ctxDone := ctx.Done()
	for exited < n {
		select {
		case <-ctxDone:
			ctxDone = nil
			if !started {
				broadcast("close")
				closed = true
			} else if !stopped {
				broadcast("stop")
				stopped = true
			}
		case <-tick.C:
			cur := SumProgress(latest)
			if settle != nil && cur.Phase == "ready" {
				cur.Phase = "settle"
			}
			now := time.Now()
			fmt.Fprintln(log, ProgressLine(now.Sub(t0).Seconds(), cur, prev, now.Sub(prevAt).Seconds(), cfg.Users*max(cfg.Devices, 1), sending))
			prev, prevAt = cur, now
		case wm := <-msgs:
			i, m := wm.i, wm.m
			switch m.Kind {
			case "progress":
				latest[i] = *m.Progress
			case "interval":
				if m.Interval != nil {
					iw.add(*m.Interval)
				}
			case "connected":
				connects = append(connects, *m.Connect)
				if !ended[i] {
					ended[i] = true
					connected++
				}
			case "done":
				results[i] = m.Result
				if !finished[i] {
					finished[i] = true
					done++
				}
			case "error":
				failures = append(failures, fmt.Sprintf("worker %d: %s", i, m.Error))
				fmt.Fprintf(log, "worker %d: %s\n", i, m.Error)
			case "exit":
				exited++
				if !ended[i] {
					ended[i] = true
					connected++
				}
				if !finished[i] {
					finished[i] = true
					done++
					if results[i] == nil {
						failures = append(failures, fmt.Sprintf("worker %d exited without a result", i))
					}
				}
			}
			if !started && !closed && settle == nil && connected == n {
				settle = time.After(cfg.Settle.D())
			}
			if done == n && !closed {
				if len(cfg.CPUPIDs) > 0 && started {
					if cpu, err := cpuOf(cfg.CPUPIDs); err == nil {
						if wall := time.Since(runStart).Seconds(); wall > 0 {
							serverCPU = &CPUResult{PIDs: cfg.CPUPIDs, Cores: (cpu - pidsCPU0) / wall}
						}
					} else {
						fmt.Fprintf(log, "reading servers' CPU: %v\n", err)
					}
				}
				if cfg.ServerPID > 0 && started {
					if cpu, err := ReadCPUSeconds(cfg.ServerPID); err == nil {
						if wall := time.Since(runStart).Seconds(); wall > 0 {
							memory.CPUCores = (cpu - serverCPU0) / wall
						}
					}
				}
				if memory != nil {
					if rss, err := ReadRSS(cfg.ServerPID); err == nil {
						memory.EndKiB = rss
					}
				}
				broadcast("close")
				closed = true
			}
		case <-settle:
			settle = nil
			var ready int64
			for _, c := range connects {
				ready += c.Ready
			}
			if memory != nil {
				rss, err := ReadRSS(cfg.ServerPID)
				if err != nil {
					fmt.Fprintf(log, "reading server memory: %v\n", err)
				}
				memory.AfterKiB, memory.Sockets = rss, ready
			}
			if ctx.Err() != nil {
				broadcast("close")
				closed = true
				break
			}
			start := time.Now().Add(200 * time.Millisecond)
			runStart = start
			if cfg.ServerPID > 0 {
				serverCPU0, _ = ReadCPUSeconds(cfg.ServerPID)
			}
			pidsCPU0, _ = cpuOf(cfg.CPUPIDs)
			broadcast("go " + strconv.FormatInt(start.UnixNano(), 10))
			started = true
		}
	}
	for _, in := range stdins {
		in.Close()
	}
	for i, wait := range waits {
		if err := wait(); err != nil {
			failures = append(failures, fmt.Sprintf("worker %d: %v", i, err))
		}
	}
	readers.Wait()
	if err := iw.flush(); err != nil {
		failures = append(failures, "interval reports: "+err.Error())
	}
	var parts []*Result
	for _, r := range results {
		if r != nil {
			parts = append(parts, r)
		}
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("no worker produced a result: %s", strings.Join(failures, "; "))
	}
	res, err := Merge(parts)
	if err != nil {
		return nil, err
	}
	res.WorkerFailures = append(res.WorkerFailures, failures...)
	if memory != nil && memory.Sockets > 0 {
		memory.BytesPerSocket = float64(memory.AfterKiB-memory.BeforeKiB) * 1024 / float64(memory.Sockets)
		if memory.EndKiB > 0 {
			memory.EndPerSocket = float64(memory.EndKiB-memory.BeforeKiB) * 1024 / float64(memory.Sockets)
		}
	}
	res.Memory = memory
	if serverCPU != nil && res.Sends.AcceptedPerSec > 0 {
		serverCPU.MicrosPerSend = serverCPU.Cores * 1e6 / res.Sends.AcceptedPerSec
	}
	res.ServerCPU = serverCPU
	c := cfg
	res.Config = &c
	return res, nil
}

// ReadRSS returns VmRSS of a process in KiB.
func ReadRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(b)
}

func parseVmRSS(status []byte) (int64, error) {
	for _, l := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, errors.New("no VmRSS line in /proc status")
}

// cpuOf sums the CPU time of pids.
func cpuOf(pids []int) (float64, error) {
	var sum float64
	for _, p := range pids {
		s, err := ReadCPUSeconds(p)
		if err != nil {
			return 0, err
		}
		sum += s
	}
	return sum, nil
}

// ReadCPUSeconds returns the user+system CPU time of a process.
func ReadCPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime and stime (fields 14 and 15, in clock ticks of
// 1/100 s on Linux) from /proc/PID/stat.
func parseStatCPU(stat []byte) (float64, error) {
	s := string(stat)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state): utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	u, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed /proc stat times")
	}
	return (u + st) / 100, nil
}

func selfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// Command edgeload is edgenode's load generator: it simulates users who each
// hold the WebSocket of API.md (/v1/socket/updates) and acknowledge every
// event they receive, while a share of them send 1:1 messages
// (POST /v1/messages) to random other connected users at an open-loop rate.
//
// It reports accepted sends per second (201s), send→201 and send→deliver
// latency (p50, p90, p99, p99.9, max from HDR histograms), time-to-ready of
// the sockets, errors by kind, and the server's resident memory per socket;
// a progress line goes to stderr every second, the summary to stdout, and
// the full result (histograms included) to --json.
//
// # Examples
//
// Start a node with a known secret, then drive it (the standard workload:
// 2,000 users, 150-byte messages between random pairs):
//
//	SECRET=$(head -c 32 /dev/urandom | base64)
//	go run -tags hashicorpmetrics ./cmd/edgenode --data-dir $(mktemp -d) \
//	    --http-addr 127.0.0.1:18080 --jwt-secret "$SECRET" &
//	go run ./cmd/edgeload --targets http://127.0.0.1:18080 --jwt-secret "$SECRET" \
//	    --users 2000 --senders 1000 --rate 2000 --warmup 3s --duration 20s \
//	    --server-pid $(pgrep -n edgenode) --json open-2000.json
//
// Maximum throughput (closed loop: 512 workers each send as soon as the
// previous send was answered):
//
//	edgeload --targets http://127.0.0.1:18080 --jwt-secret "$SECRET" \
//	    --users 2000 --senders 1.0 --rate 0 --concurrency 512 --duration 20s
//
// The node limits each user to --send-rate (default 50/s, burst 200): keep
// rate/senders below it, or raise it on the node, unless the limiter is what
// you measure (it answers 429, reported as http_429_rate_limited).
//
// A three-node cluster: sockets and sends spread round-robin over the nodes:
//
//	edgeload --targets http://127.0.0.1:18080,http://127.0.0.1:18081,http://127.0.0.1:18082 \
//	    --jwt-secret "$SECRET" --users 2000 --rate 5000 --duration 30s
//
// 19,000 idle sockets (every process here may hold at most 20,000 files, so
// the sockets are spread over 2 worker processes, which connect from
// 127.0.0.2 and 127.0.0.3 to spread the ephemeral ports):
//
//	edgeload --targets http://127.0.0.1:18080 --jwt-secret "$SECRET" --idle \
//	    --users 19000 --procs 2 --connect-rate 2000 --duration 30s --server-pid $PID
//
// Connect storm (10,000 sockets in 10 s, time-to-ready percentiles):
//
//	edgeload ... --idle --users 10000 --procs 2 --connect-rate 1000 --duration 5s
//
// # How it measures
//
// Phases: ramp-up (sockets opened at --connect-rate, each on the timeline;
// time-to-ready runs from a socket's scheduled time to its "ready" frame),
// settle (--settle, then the server's VmRSS is read again when --server-pid
// is given: memory per socket = (after - before) / ready sockets), warm-up
// (sends that are not recorded), the measurement window (--duration), and a
// drain (up to --drain) for sends and deliveries still outstanding.
//
// Sends are open loop when --rate > 0: send k is scheduled at start + k/rate
// whatever the server does, and both latencies run from that scheduled time,
// so a slow server shows up as latency instead of a lower offered rate (no
// coordinated omission). When --max-inflight sends are already outstanding,
// a due send is skipped and counted as error kind "overload" (it never
// blocks the timeline). --rate 0 runs closed loop: --concurrency workers
// each send as soon as their previous send was answered.
//
// Matching deliveries: the content of each message is its requestId in 16
// hex digits followed by '.' up to --size bytes. The sender registers the
// requestId before it posts; the receiving socket reads the prefix of the
// delivered content and looks it up, so a delivery that arrives before the
// 201 is matched too. Nothing else is embedded. requestIds start above the
// run's start time in microseconds, so a rerun against the same data
// directory never collides with the idempotency keys of an earlier run;
// messages still queued from an earlier run are counted as "messages from
// earlier runs" and acknowledged. Recipients are chosen among the users of
// the same worker process, which holds the pending sends in memory.
//
// Acknowledgements: every event with an id is acknowledged with
// {"type":"ack","payload":{"upTo":ID}} of the highest id seen. --ack batch
// (default) sends one ack each time the socket has consumed what it read
// and is about to wait for more; --ack event acks every event; --ack
// interval sends at most one per socket per --ack-every.
//
// Throughput: "accepted/s" counts 201s that arrived inside the window,
// divided by the window. The other counts (offered, accepted, failed,
// overload, delivered, undelivered) are of the sends scheduled inside the
// window. The error map counts the whole run, warm-up included.
//
// Interval reports: --report-every 1m --report-file F cuts the measurement
// window into intervals of that length and, as each one ends, appends one
// JSON line to F (merged over the worker processes): the interval's start
// and end, sends attempted (scheduled in it), accepted (201s that arrived in
// it), errors by kind (http_<status>_<code>, timeout, overload, socket_...)
// and their total, deliveries that arrived in it with their send→deliver
// latency (p50, p99, max... in ms, field "deliver"), the same for send→201,
// and the sockets ready at its end. A long run (a soak, scripts/soak.sh)
// keeps its sockets and is still read minute by minute:
//
//	edgeload ... --users 10000 --senders 1.0 --rate 2000 --duration 60m \
//	    --report-every 1m --report-file soak.jsonl
//
// Scale: --procs K re-executes edgeload K times as workers, each with a
// slice of the users and of the rate; with loopback targets, worker i
// connects from 127.0.0.(i+2). The parent merges their results (histograms
// are merged from exported snapshots).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgenode/edgenode/loadgen"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && args[0] == "--worker" {
		signal.Ignore(os.Interrupt) // the coordinator tells the worker to stop
		if err := loadgen.RunWorker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(stderr, "edgeload worker:", err)
			return 1
		}
		return 0
	}
	cfg, out, err := parseFlags(args, stderr)
	if err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		fmt.Fprintln(stderr, "edgeload:", err)
		return 2
	}
	if err := cfg.Validate(fdLimit()); err != nil {
		fmt.Fprintln(stderr, "edgeload: invalid flags:\n"+err.Error())
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills
	}()
	if path := os.Getenv("EDGELOAD_CPUPROFILE"); path != "" {
		// Profiling the load generator itself (it shares the box with the
		// node): EDGELOAD_CPUPROFILE=file writes a CPU profile of the run.
		if f, err := os.Create(path); err == nil {
			if pprof.StartCPUProfile(f) == nil {
				defer func() { pprof.StopCPUProfile(); f.Close() }()
			}
		}
	}
	spawn := loadgen.InProcess
	if cfg.Procs > 1 {
		spawn = subprocess
	}
	var reports io.Writer
	if out.reportFile != "" {
		f, err := os.OpenFile(out.reportFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintln(stderr, "edgeload:", err)
			return 1
		}
		defer f.Close()
		reports = f
	}
	res, err := loadgen.CoordinateWithReports(ctx, cfg, spawn, stderr, reports)
	if err != nil {
		fmt.Fprintln(stderr, "edgeload:", err)
		return 1
	}
	res.WriteText(stdout)
	if jsonPath := out.json; jsonPath != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(stderr, "edgeload:", err)
			return 1
		}
	}
	if len(res.WorkerFailures) > 0 {
		return 1
	}
	return 0
}

// outputs are the files a run writes besides stdout.
type outputs struct {
	json       string // --json
	reportFile string // --report-file
}

func parseFlags(args []string, stderr io.Writer) (loadgen.Config, outputs, error) {
	cfg := loadgen.DefaultConfig()
	fs := flag.NewFlagSet("edgeload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	targets := fs.String("targets", strings.Join(cfg.Targets, ","), "comma-separated base URLs of edge nodes; sockets are spread round-robin")
	fs.StringVar(&cfg.JWTSecret, "jwt-secret", os.Getenv("EDGENODE_JWT_SECRET"), "HS256 secret the node verifies tokens with (env EDGENODE_JWT_SECRET)")
	ttl := fs.Duration("token-ttl", cfg.TokenTTL.D(), "lifetime of the generated tokens (exp)")
	fs.Int64Var(&cfg.FirstUser, "first-user", cfg.FirstUser, "id of the first simulated user")
	fs.IntVar(&cfg.Users, "users", cfg.Users, "number of simulated users, each with one WebSocket")
	fs.IntVar(&cfg.Devices, "devices", 1, "WebSockets per user, each its own device (Device-Id d0, d1, ...): a message counts as delivered once every device of its recipient got it, and its send→deliver time is recorded per device")
	fs.StringVar(&cfg.Senders, "senders", cfg.Senders, "users who send: a fraction (0.5, 50%) or a count (1000)")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "total offered sends per second, open loop; 0 = closed loop at max throughput")
	fs.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "closed loop (--rate 0): number of sending workers")
	fs.IntVar(&cfg.MaxInflight, "max-inflight", cfg.MaxInflight, "open loop: sends outstanding at most; beyond it due sends are skipped as \"overload\"")
	fs.IntVar(&cfg.Size, "size", cfg.Size, "message content bytes (at least 16)")
	timeout := fs.Duration("timeout", cfg.Timeout.D(), "per-send HTTP timeout")
	fs.Float64Var(&cfg.ConnectRate, "connect-rate", cfg.ConnectRate, "sockets opened per second during ramp-up; 0 = all at once")
	readyTimeout := fs.Duration("ready-timeout", cfg.ReadyTimeout.D(), "time a socket may take from dial to its ready frame")
	warmup := fs.Duration("warmup", cfg.Warmup.D(), "sending time before the measurement window (not recorded)")
	duration := fs.Duration("duration", cfg.Duration.D(), "measurement window (idle: how long the sockets are held)")
	drain := fs.Duration("drain", cfg.Drain.D(), "after the window, wait at most this long for outstanding deliveries")
	settle := fs.Duration("settle", cfg.Settle.D(), "pause after the ramp-up before reading the server's memory and starting to send")
	fs.StringVar(&cfg.Ack, "ack", cfg.Ack, "when sockets acknowledge: batch (after each read batch), event, or interval (see --ack-every)")
	ackEvery := fs.Duration("ack-every", cfg.AckEvery.D(), "with --ack interval: at most one ack per socket per this period")
	fs.BoolVar(&cfg.Reconnect, "reconnect", cfg.Reconnect, "reopen dropped sockets (with backoff)")
	fs.BoolVar(&cfg.Idle, "idle", cfg.Idle, "connect the sockets, send nothing, hold them for --duration and report memory per socket")
	fs.IntVar(&cfg.Procs, "procs", cfg.Procs, "worker processes (each takes a slice of users and rate; loopback source addresses 127.0.0.2...)")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "pid of a local node: report its VmRSS per socket")
	fs.Func("cpu-pids", "comma-separated pids of local nodes: report their summed CPU over the timeline and per accepted send", func(v string) error {
		for _, f := range strings.Split(v, ",") {
			p, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				return fmt.Errorf("not a pid: %q", f)
			}
			cfg.CPUPIDs = append(cfg.CPUPIDs, p)
		}
		return nil
	})
	jsonPath := fs.String("json", "", "write the full result (histograms included) to this file")
	reportEvery := fs.Duration("report-every", 0, "cut the measurement window into intervals of this length and report each (needs --report-file); 0 = off")
	reportFile := fs.String("report-file", "", "with --report-every: append one JSON line per interval to this file")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: edgeload [flags]   (see `go doc ./cmd/edgeload` for examples)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, outputs{}, err
	}
	if fs.NArg() > 0 {
		return cfg, outputs{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if (*reportEvery > 0) != (*reportFile != "") {
		return cfg, outputs{}, errors.New("--report-every and --report-file go together")
	}
	cfg.Targets = nil
	for _, t := range strings.Split(*targets, ",") {
		if t = strings.TrimSpace(t); t != "" {
			cfg.Targets = append(cfg.Targets, t)
		}
	}
	cfg.TokenTTL = loadgen.Duration(*ttl)
	cfg.Timeout = loadgen.Duration(*timeout)
	cfg.ReadyTimeout = loadgen.Duration(*readyTimeout)
	cfg.Warmup = loadgen.Duration(*warmup)
	cfg.Duration = loadgen.Duration(*duration)
	cfg.Drain = loadgen.Duration(*drain)
	cfg.Settle = loadgen.Duration(*settle)
	cfg.AckEvery = loadgen.Duration(*ackEvery)
	cfg.ReportEvery = loadgen.Duration(*reportEvery)
	if cfg.Idle {
		cfg.Warmup = 0
	}
	return cfg, outputs{json: *jsonPath, reportFile: *reportFile}, nil
}

// fdLimit is this process's open-file limit (Go raises the soft limit to
// the hard one at start-up).
func fdLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur > 1<<30 {
		return 0
	}
	return int(r.Cur)
}

// subprocess starts worker i as a copy of this executable.
func subprocess(i int) (io.WriteCloser, io.ReadCloser, func() error, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, nil, err
	}
	cmd := exec.Command(exe, "--worker")
	cmd.Stderr = os.Stderr
	cmd.Env = append(os.Environ(), fmt.Sprintf("EDGELOAD_WORKER=%d", i))
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, err
	}
	return in, out, func() error {
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			return fmt.Errorf("worker %d did not exit; killed", i)
		}
	}, nil
}

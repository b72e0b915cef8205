package loadgen

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/edgenode/edgenode/wire"
)

// NonceLen is the length of the prefix every generated message content
// starts with: the request id in 16 lower-case hex digits. It is how a
// receiving socket matches a delivered message to the send that produced it.
const NonceLen = 16

// Ack modes: when a socket acknowledges the events it received.
const (
	// AckBatch acknowledges the highest id seen each time the socket has
	// consumed everything it read from the network and is about to block
	// for more: one ack per read batch.
	AckBatch = "batch"
	// AckEvent sends one ack per event, right after reading it.
	AckEvent = "event"
	// AckInterval coalesces: at most one ack per socket per AckEvery.
	AckInterval = "interval"
)

// Config is one run, as given on the command line.
type Config struct {
	Targets   []string `json:"targets"`
	JWTSecret string   `json:"-"`
	TokenTTL  Duration `json:"tokenTTL"`

	FirstUser int64 `json:"firstUser"`
	Users     int   `json:"users"`
	// Devices is the sockets per user, each naming its own device
	// (Device-Id d0, d1, ...): every message must reach each of the
	// recipient's devices, and its send→deliver time is recorded once per
	// device. 1 (the default): one socket without a device id.
	Devices int    `json:"devices,omitempty"`
	Senders string `json:"senders"` // fraction ("0.5", "50%") or count ("1000")

	Rate        float64  `json:"rate"` // sends/s offered in total; 0 = closed loop
	Concurrency int      `json:"concurrency"`
	MaxInflight int      `json:"maxInflight"`
	Size        int      `json:"size"`
	Timeout     Duration `json:"timeout"`

	ConnectRate  float64  `json:"connectRate"` // sockets/s; 0 = all at once
	ReadyTimeout Duration `json:"readyTimeout"`
	Warmup       Duration `json:"warmup"`
	Duration     Duration `json:"duration"`
	Drain        Duration `json:"drain"`
	Settle       Duration `json:"settle"`

	Ack      string   `json:"ack"`
	AckEvery Duration `json:"ackEvery"`

	Reconnect bool `json:"reconnect"`
	Idle      bool `json:"idle"`
	Procs     int  `json:"procs"`
	ServerPID int  `json:"serverPid,omitempty"`
	// CPUPIDs are local nodes whose CPU time over the timeline is summed
	// and reported per accepted send (Result.ServerCPU).
	CPUPIDs []int `json:"cpuPids,omitempty"`

	// ReportEvery > 0 cuts the measurement window into intervals of this
	// length and reports each one as it ends (see IntervalReport).
	ReportEvery Duration `json:"reportEvery,omitempty"`
}

// DefaultConfig has the defaults of every flag.
func DefaultConfig() Config {
	return Config{
		Targets:      []string{"http://127.0.0.1:8080"},
		TokenTTL:     Duration(24 * time.Hour),
		FirstUser:    1000000,
		Users:        2000,
		Senders:      "0.5",
		Rate:         1000,
		Concurrency:  256,
		MaxInflight:  1000,
		Size:         150,
		Timeout:      Duration(10 * time.Second),
		ConnectRate:  1000,
		ReadyTimeout: Duration(15 * time.Second),
		Warmup:       Duration(2 * time.Second),
		Duration:     Duration(10 * time.Second),
		Drain:        Duration(5 * time.Second),
		Settle:       Duration(2 * time.Second),
		Ack:          AckBatch,
		AckEvery:     Duration(5 * time.Millisecond),
		Reconnect:    true,
		Procs:        1,
	}
}

// SenderCount resolves Senders against Users: a value with a '.' or a '%'
// is a fraction of the users, anything else a count.
func (c *Config) SenderCount() (int, error) {
	s := strings.TrimSpace(c.Senders)
	if s == "" {
		return 0, errors.New("--senders is empty")
	}
	if strings.HasSuffix(s, "%") {
		f, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		if err != nil || f < 0 || f > 100 {
			return 0, fmt.Errorf("--senders %q: want a percentage 0-100%%", c.Senders)
		}
		return int(float64(c.Users)*f/100 + 0.5), nil
	}
	if strings.ContainsAny(s, ".eE") {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f < 0 || f > 1 {
			return 0, fmt.Errorf("--senders %q: a fraction must be between 0 and 1", c.Senders)
		}
		return int(float64(c.Users)*f + 0.5), nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("--senders %q: want a fraction (0.5, 50%%) or a count", c.Senders)
	}
	if n > c.Users {
		return 0, fmt.Errorf("--senders %d is more than --users %d", n, c.Users)
	}
	return n, nil
}

// fdReserve is what a worker keeps free beyond sockets and HTTP
// connections: stdio, pipes, epoll, /proc reads.
const fdReserve = 64

// Validate checks the configuration. fdLimit is the per-process open-file
// limit (0 skips the check): every worker process must fit its sockets and
// HTTP connections under it.
func (c *Config) Validate(fdLimit int) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.Targets) == 0 {
		bad("--targets: at least one base URL is required")
	}
	for _, t := range c.Targets {
		if _, err := ParseTarget(t); err != nil {
			bad("--targets: %v", err)
		}
	}
	if c.JWTSecret == "" {
		bad("--jwt-secret is required (the node's HS256 secret)")
	}
	if c.TokenTTL <= 0 {
		bad("--token-ttl must be positive")
	}
	if c.Users < 1 {
		bad("--users must be at least 1")
	}
	if c.Devices < 0 || c.Devices > 10 {
		bad("--devices must be between 1 and 10 (the server links at most 10 per user)")
	}
	if c.FirstUser < 1 || c.FirstUser > wire.MaxID-int64(c.Users)+1 {
		bad("--first-user: user ids must lie between 1 and 2^53-1")
	}
	if c.Procs < 1 || c.Procs > 253 {
		bad("--procs must be between 1 and 253")
	} else if c.Users >= 1 && c.Procs > c.Users {
		bad("--procs %d is more than --users %d", c.Procs, c.Users)
	}
	senders, err := c.SenderCount()
	if err != nil {
		errs = append(errs, err)
	}
	if c.Idle {
		senders = 0
	}
	if senders > 0 {
		if c.Procs >= 1 && c.Users/c.Procs < 2 {
			bad("each worker process needs at least 2 users to pair senders with recipients (--users %d, --procs %d)", c.Users, c.Procs)
		}
		if c.Rate < 0 {
			bad("--rate must be >= 0 (0 = closed loop at max throughput)")
		}
		if c.Rate == 0 && c.Concurrency < c.Procs {
			bad("--concurrency must be at least --procs (%d) for a closed-loop run (--rate 0)", c.Procs)
		}
		if c.Rate > 0 && c.MaxInflight < c.Procs {
			bad("--max-inflight must be at least --procs (%d)", c.Procs)
		}
		if c.Size < NonceLen || c.Size > wire.DefaultMaxContentBytes {
			bad("--size must be between %d (the nonce prefix) and %d bytes", NonceLen, wire.DefaultMaxContentBytes)
		}
		if c.Timeout <= 0 {
			bad("--timeout must be positive")
		}
	}
	if c.ConnectRate < 0 {
		bad("--connect-rate must be >= 0 (0 = all at once)")
	}
	if c.ReadyTimeout <= 0 {
		bad("--ready-timeout must be positive")
	}
	if c.Duration <= 0 {
		bad("--duration must be positive")
	}
	if c.Warmup < 0 || c.Drain < 0 || c.Settle < 0 {
		bad("--warmup, --drain and --settle must not be negative")
	}
	switch c.Ack {
	case AckBatch, AckEvent:
	case AckInterval:
		if c.AckEvery <= 0 {
			bad("--ack-every must be positive with --ack interval")
		}
	default:
		bad("--ack must be batch, event or interval")
	}
	if c.ServerPID < 0 {
		bad("--server-pid must be a process id")
	}
	for _, p := range c.CPUPIDs {
		if p <= 0 {
			bad("--cpu-pids must be process ids")
		}
	}
	if c.ReportEvery < 0 || (c.ReportEvery > 0 && c.ReportEvery.D() < 100*time.Millisecond) {
		bad("--report-every must be at least 100ms (or 0: no interval reports)")
	}
	if fdLimit > 0 && len(errs) == 0 {
		conns := 0
		if senders > 0 {
			conns = c.httpConns()
		}
		need := func(procs int) int {
			return (c.Users*max(c.Devices, 1)+procs-1)/procs + (conns+procs-1)/procs + fdReserve
		}
		if n := need(c.Procs); n > fdLimit {
			min := c.Procs
			for min < 253 && need(min) > fdLimit {
				min++
			}
			bad("each worker process would need %d open files (sockets + HTTP connections + %d spare), over the limit of %d: use --procs %d or more",
				n, fdReserve, fdLimit, min)
		}
	}
	return errors.Join(errs...)
}

// httpConns is the HTTP connection budget of the whole run: the in-flight
// cap in open loop, the worker count in closed loop.
func (c *Config) httpConns() int {
	if c.Rate > 0 {
		return c.MaxInflight
	}
	return c.Concurrency
}

// Target is a parsed base URL.
type Target struct {
	Base     string // scheme://host:port, no trailing slash
	WS       string // ws(s)://host:port/v1/socket/updates
	Host     string // host without port
	Loopback bool
}

// ParseTarget parses one --targets entry.
func ParseTarget(s string) (Target, error) {
	u, err := url.Parse(strings.TrimRight(s, "/"))
	if err != nil {
		return Target{}, fmt.Errorf("%q: %v", s, err)
	}
	var ws string
	switch u.Scheme {
	case "http":
		ws = "ws"
	case "https":
		ws = "wss"
	default:
		return Target{}, fmt.Errorf("%q: scheme must be http or https", s)
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return Target{}, fmt.Errorf("%q: want a base URL like http://127.0.0.1:8080", s)
	}
	host := u.Hostname()
	loop := host == "localhost"
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() && ip.To4() != nil {
		loop = true
	}
	base := u.Scheme + "://" + u.Host
	return Target{Base: base, WS: ws + "://" + u.Host + "/v1/socket/updates", Host: host, Loopback: loop}, nil
}

// WorkerConfig is the share of the run one worker process executes.
type WorkerConfig struct {
	Config
	JWTSecret   string  `json:"jwtSecret"` // shadows Config's, which is not serialised
	Index       int     `json:"index"`
	UserOffset  int     `json:"userOffset"` // first user is FirstUser+UserOffset
	UserCount   int     `json:"userCount"`
	SenderCount int     `json:"senderCount"` // the first SenderCount users of the slice send
	WorkerRate  float64 `json:"workerRate"`
	WorkerConc  int     `json:"workerConcurrency"`
	WorkerCap   int     `json:"workerMaxInflight"`
	SourceIP    string  `json:"sourceIp,omitempty"` // local address for loopback targets
	RunBase     int64   `json:"runBase"`            // request ids start above it
}

// share splits total over n parts and returns part i (the parts differ by at
// most one and sum to total).
func share(total, n, i int) int {
	return total*(i+1)/n - total*i/n
}

// Split returns the configuration of worker i of c.Procs. runBase makes
// request ids unique across runs (pass the start time in microseconds).
func (c *Config) Split(i int, runBase int64) WorkerConfig {
	senders, _ := c.SenderCount()
	if c.Idle {
		senders = 0
	}
	w := WorkerConfig{
		Config:      *c,
		JWTSecret:   c.JWTSecret,
		Index:       i,
		UserOffset:  c.Users * i / c.Procs,
		UserCount:   share(c.Users, c.Procs, i),
		SenderCount: share(senders, c.Procs, i),
		RunBase:     runBase,
	}
	if senders > 0 {
		w.WorkerRate = c.Rate * float64(w.SenderCount) / float64(senders)
		w.WorkerConc = share(c.Concurrency, c.Procs, i)
		w.WorkerCap = share(c.MaxInflight, c.Procs, i)
		if w.SenderCount > 0 {
			w.WorkerConc = max(w.WorkerConc, 1)
			w.WorkerCap = max(w.WorkerCap, 1)
		}
	}
	if c.Procs > 1 {
		w.SourceIP = fmt.Sprintf("127.0.0.%d", 2+i)
	}
	return w
}

// Duration is a time.Duration that reads and writes JSON as "1.5s".
type Duration time.Duration

func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(strconv.Quote(time.Duration(d).String())), nil
}

func (d *Duration) UnmarshalJSON(b []byte) error {
	s, err := strconv.Unquote(string(b))
	if err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// Package connlimit bounds the client connections a node holds open: in
// total, per source IP, and within the process's file-descriptor limit, so
// that connections that never finish a request (or never send one) cannot
// starve health checks and everyone else.
//
// A connection over a cap is accepted and closed at once (with a short
// HTTP 503 answer when Options.Refusal is set), never left waiting in the
// kernel's backlog. When accept itself fails because the process is out of
// file descriptors (EMFILE), the listener frees a spare descriptor it keeps
// for the purpose, accepts the pending connection, closes it and takes the
// spare again: the backlog keeps moving instead of net/http retrying accept
// in a loop while every connection in the queue times out.
package connlimit

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Options configure a Listener.
type Options struct {
	// MaxConns caps open connections in total; 0 means FileLimit() minus
	// Reserve (at least 64).
	MaxConns int
	// MaxPerIP caps open connections from one source IP (IPv6 addresses
	// count per /64); 0 means MaxConns/4 (at least 1).
	MaxPerIP int
	// Reserve is the descriptors left to everything else the process opens
	// (raft logs and snapshots, the mesh, gossip, push connections) when
	// MaxConns is derived from the file limit; 0 means 256 or a 64th of
	// the limit, whichever is more.
	Reserve int
	// Refusal is written to a refused connection before it is closed (for
	// plain HTTP, a 503 answer); nil closes it without a word (TLS).
	Refusal []byte
	// OnRefuse is called for each refused connection with the reason:
	// "total", "per_ip" or "fd" (out of descriptors at accept).
	OnRefuse func(reason string)
}

// Limits reports the caps a Listener applies.
type Limits struct{ MaxConns, MaxPerIP int }

// Listener is a net.Listener with caps. Connections it returns release
// their place when closed (once, however often Close is called), including
// after an HTTP server hijacked them for a WebSocket.
type Listener struct {
	net.Listener
	opts   Options
	limits Limits

	mu    sync.Mutex
	open  int
	perIP map[netip.Prefix]int
	spare *os.File // freed to accept and drop a connection on EMFILE
}

// FileLimit is the process's soft RLIMIT_NOFILE (0 if unknown). Go raises
// the soft limit to the hard one at start.
func FileLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return 0
	}
	return int(rl.Cur)
}

// New wraps ln.
func New(ln net.Listener, opts Options) *Listener {
	l := &Listener{Listener: ln, opts: opts, perIP: map[netip.Prefix]int{}}
	l.limits = resolve(opts, FileLimit())
	l.spare, _ = os.Open(os.DevNull)
	return l
}

// resolve turns Options into the caps, given the file limit fds (0 if
// unknown).
func resolve(o Options, fds int) Limits {
	total := o.MaxConns
	if total <= 0 {
		total = 1 << 20
		if fds > 0 {
			reserve := o.Reserve
			if reserve <= 0 {
				reserve = max(256, fds/64)
			}
			total = max(64, fds-reserve)
		}
	}
	per := o.MaxPerIP
	if per <= 0 {
		per = max(1, total/4)
	}
	return Limits{MaxConns: total, MaxPerIP: min(per, total)}
}

// Limits are the caps in force.
func (l *Listener) Limits() Limits { return l.limits }

// Open is the number of connections open now.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// Accept returns the next connection within the caps.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				l.shed()
				continue
			}
			return nil, err
		}
		key := sourceKey(c.RemoteAddr())
		reason := ""
		l.mu.Lock()
		switch {
		case l.open >= l.limits.MaxConns:
			reason = "total"
		case l.perIP[key] >= l.limits.MaxPerIP:
			reason = "per_ip"
		default:
			l.open++
			l.perIP[key]++
		}
		l.mu.Unlock()
		if reason != "" {
			l.refuse(c, reason)
			continue
		}
		return &conn{Conn: c, l: l, key: key}, nil
	}
}

// Close closes the listener and its spare descriptor.
func (l *Listener) Close() error {
	l.mu.Lock()
	if l.spare != nil {
		l.spare.Close()
		l.spare = nil
	}
	l.mu.Unlock()
	return l.Listener.Close()
}

func (l *Listener) refuse(c net.Conn, reason string) {
	if l.opts.Refusal != nil {
		// The answer fits the socket's send buffer: the write does not
		// wait for the client, and the deadline makes sure of it.
		_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = c.Write(l.opts.Refusal)
	}
	c.Close()
	if l.opts.OnRefuse != nil {
		l.opts.OnRefuse(reason)
	}
}

// shed accepts and drops one pending connection using the spare
// descriptor, or waits a moment when there is none.
func (l *Listener) shed() {
	l.mu.Lock()
	spare := l.spare
	l.spare = nil
	l.mu.Unlock()
	if spare == nil {
		time.Sleep(10 * time.Millisecond)
	} else {
		spare.Close()
		if c, err := l.Listener.Accept(); err == nil {
			l.refuse(c, "fd")
		}
	}
	if f, err := os.Open(os.DevNull); err == nil {
		l.mu.Lock()
		if l.spare == nil {
			l.spare = f
			f = nil
		}
		l.mu.Unlock()
		if f != nil {
			f.Close()
		}
	} else {
		time.Sleep(10 * time.Millisecond) // still out of descriptors
	}
}

func (l *Listener) release(key netip.Prefix) {
	l.mu.Lock()
	l.open--
	if n := l.perIP[key] - 1; n > 0 {
		l.perIP[key] = n
	} else {
		delete(l.perIP, key)
	}
	l.mu.Unlock()
}

// sourceKey is what the per-IP cap counts: the IPv4 address, or the /64 of
// an IPv6 one (a single host commonly holds a whole /64).
func sourceKey(a net.Addr) netip.Prefix {
	var ip netip.Addr
	if ta, ok := a.(*net.TCPAddr); ok {
		ip = ta.AddrPort().Addr().Unmap()
	} else if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		ip = ap.Addr().Unmap()
	} else {
		return netip.Prefix{}
	}
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

type conn struct {
	net.Conn
	l    *Listener
	key  netip.Prefix
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.key) })
	return err
}

// HTTPRefusal is a complete HTTP/1.1 503 answer in the API's error model,
// for Options.Refusal.
func HTTPRefusal() []byte {
	body := `{"error":{"code":"unavailable","message":"too many connections; try again later"}}` + "\n"
	return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

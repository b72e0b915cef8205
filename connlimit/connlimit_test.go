package connlimit

import (
	"bufio"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// serve accepts on l and holds every connection it gets until the test ends.
func serve(t *testing.T, l net.Listener) <-chan net.Conn {
	t.Helper()
	got := make(chan net.Conn, 100)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(got)
				return
			}
			got <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		for c := range got {
			c.Close()
		}
	})
	return got
}

func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// refused reports whether c was answered 503 and closed.
func refused(t *testing.T, c net.Conn) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "1"
}

func accepted(t *testing.T, got <-chan net.Conn, what string) net.Conn {
	t.Helper()
	select {
	case c := <-got:
		return c
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: not accepted", what)
		return nil
	}
}

func TestCapsPerIPAndInTotal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	reasons := map[string]int{}
	l := New(ln, Options{MaxConns: 4, MaxPerIP: 2, Refusal: HTTPRefusal(), OnRefuse: func(r string) {
		mu.Lock()
		reasons[r]++
		mu.Unlock()
	}})
	if got := l.Limits(); got != (Limits{MaxConns: 4, MaxPerIP: 2}) {
		t.Fatalf("limits %+v", got)
	}
	got := serve(t, l)
	addr := ln.Addr().String()

	dialFrom(t, "127.0.0.2", addr)
	a1 := accepted(t, got, "first from .2")
	dialFrom(t, "127.0.0.2", addr)
	accepted(t, got, "second from .2")
	if c := dialFrom(t, "127.0.0.2", addr); !refused(t, c) {
		t.Fatal("a third connection from one IP was not refused with 503")
	}
	dialFrom(t, "127.0.0.3", addr)
	accepted(t, got, "first from .3")
	dialFrom(t, "127.0.0.3", addr)
	accepted(t, got, "second from .3")
	if c := dialFrom(t, "127.0.0.4", addr); !refused(t, c) {
		t.Fatal("a fifth connection was not refused with 503")
	}
	if n := l.Open(); n != 4 {
		t.Fatalf("%d open, want 4", n)
	}
	// Closing releases the place, once however often it is closed.
	a1.Close()
	a1.Close()
	if n := l.Open(); n != 3 {
		t.Fatalf("%d open after a close, want 3", n)
	}
	dialFrom(t, "127.0.0.2", addr)
	accepted(t, got, "from .2 after a close")
	mu.Lock()
	defer mu.Unlock()
	if reasons["per_ip"] != 1 || reasons["total"] != 1 {
		t.Fatalf("refusals %v, want one per_ip and one total", reasons)
	}
}

func TestLimitsFromTheFileLimit(t *testing.T) {
	for _, c := range []struct {
		o    Options
		fds  int
		want Limits
	}{
		{Options{}, 1024, Limits{768, 192}},
		{Options{}, 65536, Limits{64512, 16128}},
		{Options{}, 20000, Limits{19688, 4922}},
		{Options{}, 200, Limits{64, 16}},
		{Options{MaxPerIP: 10}, 1024, Limits{768, 10}},
		{Options{MaxConns: 100, MaxPerIP: 1000}, 1024, Limits{100, 100}},
		{Options{Reserve: 24}, 1024, Limits{1000, 250}},
	} {
		if got := resolve(c.o, c.fds); got != c.want {
			t.Errorf("resolve(%+v, %d) = %+v, want %+v", c.o, c.fds, got, c.want)
		}
	}
}

// TestOutOfDescriptors: with the process out of file descriptors, the
// connections waiting in the backlog are answered 503 and closed instead
// of waiting there until their clients give up.
func TestOutOfDescriptors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	fd := 0
	l := New(ln, Options{MaxConns: 1000, MaxPerIP: 1000, Refusal: HTTPRefusal(), OnRefuse: func(r string) {
		mu.Lock()
		if r == "fd" {
			fd++
		}
		mu.Unlock()
	}})
	const clients = 10
	var conns []net.Conn
	for range clients {
		conns = append(conns, dialFrom(t, "127.0.0.2", ln.Addr().String()))
	}
	// Leave room for two more descriptors, then accept.
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	next := f.Fd()
	f.Close()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	low := old
	low.Cur = uint64(next) + 2
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Skipf("cannot lower the file limit: %v", err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
				t.Errorf("restoring the file limit: %v", err)
			}
		}
	}
	defer restore()
	got := serve(t, l)
	var wg sync.WaitGroup
	answered := make([]bool, clients)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answered[i] = refused(t, c)
		}()
	}
	wg.Wait()
	restore()
	n := 0
	for _, a := range answered {
		if a {
			n++
		}
	}
	held := len(got)
	if n+held < clients || n < clients-3 {
		t.Fatalf("out of descriptors: %d of %d waiting connections answered 503, %d accepted", n, clients, held)
	}
	mu.Lock()
	defer mu.Unlock()
	if fd != n {
		t.Fatalf("%d refusals counted as fd, %d seen", fd, n)
	}
}

//go:build linux

package edge

import (
	"sync"
	"syscall"
)

// poller watches idle sockets for readable bytes with one epoll instance
// and one goroutine, so that an idle socket needs no goroutine of its own.
// Registrations are one-shot: a readable socket is reported once, drained
// by a read burst, then re-armed.
type poller struct {
	epfd int

	mu    sync.Mutex
	socks map[int32]*socket // by registration token, not fd: fds are reused
	next  int32
}

func newPoller() *poller {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil // sockets then read with a goroutine each
	}
	p := &poller{epfd: fd, socks: make(map[int32]*socket)}
	go p.loop()
	return p
}

const pollEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// add registers sk; false if the poller cannot take it.
func (p *poller) add(sk *socket) bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	p.next++
	if p.next <= 0 {
		p.next = 1
	}
	for p.socks[p.next] != nil {
		p.next++
	}
	sk.tok = p.next
	p.socks[sk.tok] = sk
	p.mu.Unlock()
	ok := p.ctl(sk, syscall.EPOLL_CTL_ADD)
	if !ok {
		p.mu.Lock()
		delete(p.socks, sk.tok)
		p.mu.Unlock()
	}
	return ok
}

// rearm reports sk again once it has bytes to read.
func (p *poller) rearm(sk *socket) {
	if !p.ctl(sk, syscall.EPOLL_CTL_MOD) {
		// The connection is closing; the writer cleans up.
		sk.closeWith(closeNormal, "", "client closed")
	}
}

// remove forgets sk; called before its connection closes.
func (p *poller) remove(sk *socket) {
	if p == nil || sk.tok == 0 {
		return
	}
	p.ctl(sk, syscall.EPOLL_CTL_DEL)
	p.mu.Lock()
	delete(p.socks, sk.tok)
	p.mu.Unlock()
}

func (p *poller) ctl(sk *socket, op int) bool {
	ev := syscall.EpollEvent{Events: pollEvents, Fd: sk.tok}
	var err error
	cerr := sk.rc.Control(func(fd uintptr) {
		err = syscall.EpollCtl(p.epfd, op, int(fd), &ev)
	})
	return cerr == nil && err == nil
}

func (p *poller) loop() {
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := syscall.EpollWait(p.epfd, events, -1)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return
		}
		p.mu.Lock()
		for i := 0; i < n; i++ {
			if sk := p.socks[events[i].Fd]; sk != nil {
				runTask(task{sk, taskRead})
			}
		}
		p.mu.Unlock()
	}
}

//go:build !linux

package edge

// poller is Linux-only (epoll); elsewhere every socket reads with a
// goroutine of its own.
type poller struct{}

func newPoller() *poller              { return nil }
func (p *poller) add(sk *socket) bool { return false }
func (p *poller) rearm(sk *socket)    {}
func (p *poller) remove(sk *socket)   {}

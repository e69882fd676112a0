package api

import (
	"net"
	"sync"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// limitListener accepts at most n connections at a time. Beyond that it
// stops calling Accept, so further clients wait in the kernel's backlog
// without a byte of theirs read into omertad's memory; fasthttp's own
// Concurrency limit would accept them first and answer 503.
//
// It also reads each unix connection's peer credentials once, at accept:
// SO_PEERCRED does not change over a connection's life.
type limitListener struct {
	net.Listener
	slots     chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
}

func newLimitListener(ln net.Listener, n int) *limitListener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, n), closed: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	lc := &limitedConn{Conn: c, release: func() { <-l.slots }}
	if uc, ok := c.(*net.UnixConn); ok {
		lc.unix = true
		lc.peer, lc.peerErr = peerOf(uc)
	}
	return lc, nil
}

// Close stops accepting, also waking an Accept that waits for a slot.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

type limitedConn struct {
	net.Conn
	unix    bool
	peer    apitype.Peer
	peerErr error

	releaseOnce sync.Once
	release     func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.releaseOnce.Do(c.release)
	return err
}

package ui

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"github.com/coreos/go-systemd/v22/activation"
)

// Listen returns the console's listener: the socket systemd passed
// (omerta-console.socket, LISTEN_FDS set) when there is one, else a TCP
// listener on addr. Exactly one passed socket is expected; the passing
// environment is cleared so that nothing the console starts inherits it.
func Listen(addr string) (ln net.Listener, activated bool, err error) {
	if os.Getenv("LISTEN_FDS") != "" {
		lns, err := activation.Listeners()
		if err != nil {
			return nil, false, fmt.Errorf("socket activation: %w", err)
		}
		var got []net.Listener
		for _, l := range lns {
			if l != nil {
				got = append(got, l)
			}
		}
		switch len(got) {
		case 1:
			return got[0], true, nil
		case 0:
			return nil, false, errors.New("socket activation: LISTEN_FDS is set but no listening socket was passed")
		default:
			for _, l := range got {
				l.Close()
			}
			return nil, false, fmt.Errorf("socket activation: %d sockets passed, the console takes exactly one", len(got))
		}
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, false, fmt.Errorf("listening on %s: %w", addr, err)
	}
	return l, false, nil
}

// limitListener accepts at most n connections at a time; beyond that it
// stops calling Accept, so further clients wait in the kernel's backlog
// without a byte of theirs read into the console's memory.
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
	return &limitedConn{Conn: c, release: func() { <-l.slots }}, nil
}

// Close stops accepting, also waking an Accept that waits for a slot.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

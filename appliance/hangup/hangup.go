// Package hangup tells a streamed answer that its client went away, for
// omertad's API and for the console alike.
package hangup

import (
	"net"
	"sync/atomic"
	"time"
)

// Watcher watches the connection of a streamed answer for the client going
// away. While fasthttp writes a body stream nothing reads the connection,
// and a write to a peer that has closed its end usually succeeds (the
// kernel takes it), so without this a dead stream is found only at the
// second write after the hangup: a heartbeat or two later, 15 to 30 s in
// which it holds one of the few stream slots. A read returns as soon as
// the peer closes or resets the connection.
//
// A stream's client has nothing more to send: its request was read whole
// before the handler ran, and nobody pipelines a request behind an event
// stream. So any byte, like any error, counts as the client gone; the
// answer is sent with Connection: close, so that a byte read here is
// never missed by a next request on the connection.
type Watcher struct {
	conn     net.Conn
	gone     chan struct{}
	done     chan struct{}
	stopping atomic.Bool
}

// Watch starts watching conn; Stop must be called before the stream
// writer returns. A nil conn (an app.Test request) is never gone. For TLS,
// conn is the *tls.Conn, whose Read may run beside its Write.
func Watch(conn net.Conn) *Watcher {
	h := &Watcher{conn: conn, gone: make(chan struct{}), done: make(chan struct{})}
	if conn == nil {
		close(h.done)
		return h
	}
	// fasthttp left the deadline of reading the request on the conn.
	_ = conn.SetReadDeadline(time.Time{})
	go h.watch()
	return h
}

func (h *Watcher) watch() {
	defer close(h.done)
	var b [1]byte
	_, _ = h.conn.Read(b[:])
	if !h.stopping.Load() {
		close(h.gone)
	}
}

// Gone is closed when the client went away.
func (h *Watcher) Gone() <-chan struct{} { return h.gone }

// Stop ends the watch and waits for its read to return.
func (h *Watcher) Stop() {
	h.stopping.Store(true)
	if h.conn != nil {
		_ = h.conn.SetReadDeadline(time.Now())
	}
	<-h.done
}

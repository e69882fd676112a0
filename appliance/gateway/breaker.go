package gateway

import (
	"sync"
	"time"
)

// BreakerState is a circuit breaker's state.
type BreakerState int

// The states: closed lets requests through; open refuses them until the
// cooldown has passed; half-open lets one probe through, whose outcome
// closes or reopens the circuit.
const (
	BreakerClosed BreakerState = iota
	BreakerHalfOpen
	BreakerOpen
)

func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerHalfOpen:
		return "half-open"
	}
	return "open"
}

// breaker is one backend's circuit breaker. Failures are connection
// errors, timeouts and 5xx answers; any other answer is a success (the
// backend is alive even when it refuses the request).
type breaker struct {
	threshold int
	cooldown  time.Duration

	mu       sync.Mutex
	state    BreakerState
	failures int // consecutive, while closed
	openedAt time.Time
	probing  bool // half-open: the probe is in flight
}

func newBreaker(threshold int, cooldown time.Duration) *breaker {
	return &breaker{threshold: threshold, cooldown: cooldown}
}

// allow says whether a request may go to the backend now, and if not,
// how long until the circuit lets a probe through. An allowed request
// must end with success, failure or abandon.
func (b *breaker) allow(now time.Time) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case BreakerOpen:
		if wait := b.cooldown - now.Sub(b.openedAt); wait > 0 {
			return false, wait
		}
		b.state, b.probing = BreakerHalfOpen, true
		return true, 0
	case BreakerHalfOpen:
		if b.probing {
			return false, b.cooldown
		}
		b.probing = true
	}
	return true, 0
}

// success records an answer; it returns the state it left, if it changed.
func (b *breaker) success() (from BreakerState, changed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	from = b.state
	b.failures, b.probing = 0, false
	b.state = BreakerClosed
	return from, from != BreakerClosed
}

// failure records a failure; it returns the state it left, if it changed.
func (b *breaker) failure(now time.Time) (from BreakerState, changed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	from = b.state
	switch b.state {
	case BreakerClosed:
		b.failures++
		if b.failures < b.threshold {
			return from, false
		}
	case BreakerOpen:
		return from, false // a request let through before it opened
	}
	b.state, b.openedAt, b.probing, b.failures = BreakerOpen, now, false, 0
	return from, true
}

// abandon ends an allowed request that told nothing about the backend
// (the agent went away first): a half-open circuit may probe again.
func (b *breaker) abandon() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == BreakerHalfOpen {
		b.probing = false
	}
}

// State returns the current state.
func (b *breaker) State() BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

package netpolicy

import (
	"sync"
	"sync/atomic"
	"time"
)

// Stats counts the resolver's work since Start.
type Stats struct {
	Queries  uint64 // queries received from known agents
	Answered uint64 // allowed names answered (NOERROR)
	Denied   uint64 // names the policy does not allow (NXDOMAIN)
	Refused  uint64 // unknown source, malformed, over a limit
	Failed   uint64 // upstream or kernel failure (SERVFAIL)
	Opened   uint64 // addresses put into (or refreshed in) agents' sets
}

type counters struct {
	queries, answered, denied, refused, failed, opened atomic.Uint64
}

// Stats returns the counters.
func (m *Manager) Stats() Stats {
	c := &m.stats
	return Stats{Queries: c.queries.Load(), Answered: c.answered.Load(), Denied: c.denied.Load(),
		Refused: c.refused.Load(), Failed: c.failed.Load(), Opened: c.opened.Load()}
}

// Denial is one query the resolver refused, for the console's "denied and
// why". Name is the question's name in DNS presentation format (bytes that
// are not printable ASCII written as \DDD); escape it for display anyway.
type Denial struct {
	At     time.Time
	Agent  string
	Name   string
	Reason string
}

// denialLogSize bounds the denials kept.
const denialLogSize = 256

// denialLog is a ring of the latest denials.
type denialLog struct {
	mu   sync.Mutex
	ring []Denial
	next int
	full bool
}

func (d *denialLog) init(n int) { d.ring = make([]Denial, n) }

func (d *denialLog) add(x Denial) {
	if len(x.Name) > maxNameLen+2 {
		x.Name = x.Name[:maxNameLen] + "..."
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ring[d.next] = x
	d.next = (d.next + 1) % len(d.ring)
	d.full = d.full || d.next == 0
}

// Denials returns the latest denials, oldest first.
func (m *Manager) Denials() []Denial {
	d := &m.denials
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.full {
		return append([]Denial(nil), d.ring[:d.next]...)
	}
	return append(append([]Denial(nil), d.ring[d.next:]...), d.ring[:d.next]...)
}

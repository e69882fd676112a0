package agents

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultBusBuffer is each subscriber's buffer of events.
const DefaultBusBuffer = 256

// EventType classifies an Event.
type EventType string

// The event types.
const (
	// EventAgentState: an agent's observed state changed (Data is
	// AgentStateData).
	EventAgentState EventType = "agent.state"
	// EventAgentDeleted: an agent's deletion completed.
	EventAgentDeleted EventType = "agent.deleted"
	// EventTask: a task changed state (Data is TaskData).
	EventTask EventType = "task"
	// EventTelemetry: a telemetry sample of one agent (Data is Sample).
	EventTelemetry EventType = "telemetry"
	// EventAgentPolicy: an agent's compliance with the policies in force
	// changed (Data is PolicyData).
	EventAgentPolicy EventType = "agent.policy"
	// EventGPU: one agent's GPU use at a telemetry pass of the GPU
	// service (Data is GPUSample).
	EventGPU EventType = "telemetry.gpu"
)

// Event is one thing that happened, for the SSE stream.
type Event struct {
	Seq   uint64    `json:"seq"`
	At    time.Time `json:"at"`
	Type  EventType `json:"type"`
	Agent string    `json:"agent,omitempty"`
	Task  string    `json:"task,omitempty"`
	Data  any       `json:"data,omitempty"`
}

// AgentStateData is an EventAgentState's data.
type AgentStateData struct {
	Desired    Desired `json:"desired"`
	Generation int64   `json:"generation"`
	State      State   `json:"state"`
	Reason     string  `json:"reason,omitempty"`
}

// TaskData is an EventTask's data.
type TaskData struct {
	State    TaskState `json:"state"`
	ExitCode *int64    `json:"exitCode,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// Filter selects events: by type (none means all) and by agent (empty
// means all).
type Filter struct {
	Types []EventType
	Agent string
	Task  string
}

func (f Filter) match(e Event) bool {
	return (len(f.Types) == 0 || slices.Contains(f.Types, e.Type)) &&
		(f.Agent == "" || f.Agent == e.Agent) && (f.Task == "" || f.Task == e.Task)
}

// Bus delivers events to subscribers without ever blocking the publisher:
// a subscriber whose buffer is full is dropped and marked lagged (its
// channel closes), so that a slow SSE client cannot stall the reconciler.
type Bus struct {
	buf  int
	seq  atomic.Uint64
	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

// NewBus returns a bus whose subscribers each buffer n events.
func NewBus(n int) *Bus {
	if n < 1 {
		n = 1
	}
	return &Bus{buf: n, subs: map[*Subscription]struct{}{}}
}

// Subscription is one subscriber's stream.
type Subscription struct {
	// C delivers the events; it is closed when the subscription ends
	// (its context ended, Close, or it lagged).
	C      <-chan Event
	ch     chan Event
	filter Filter
	lagged atomic.Bool
	bus    *Bus
}

// Lagged reports whether the subscription was dropped for falling behind;
// the subscriber missed events and should say so (and resubscribe).
func (s *Subscription) Lagged() bool { return s.lagged.Load() }

// Close ends the subscription.
func (s *Subscription) Close() { s.bus.remove(s, false) }

// Subscribe returns a subscription to the events f selects, ended when
// ctx ends.
func (b *Bus) Subscribe(ctx context.Context, f Filter) *Subscription {
	ch := make(chan Event, b.buf)
	s := &Subscription{C: ch, ch: ch, filter: f, bus: b}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	context.AfterFunc(ctx, s.Close)
	return s
}

// Publish numbers e and delivers it to every matching subscriber that has
// room; the others are dropped.
func (b *Bus) Publish(e Event) {
	e.Seq = b.seq.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		if !s.filter.match(e) {
			continue
		}
		select {
		case s.ch <- e:
		default:
			s.lagged.Store(true)
			delete(b.subs, s)
			close(s.ch)
		}
	}
}

// Subscribers counts the live subscriptions.
func (b *Bus) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

func (b *Bus) remove(s *Subscription, lagged bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.subs[s]; !ok {
		return
	}
	if lagged {
		s.lagged.Store(true)
	}
	delete(b.subs, s)
	close(s.ch)
}

func (s *Service) publish(e Event) {
	e.At = s.now()
	s.bus.Publish(e)
}

func (s *Service) publishState(id string, d Desired, gen int64, st State, reason string) {
	s.publish(Event{Type: EventAgentState, Agent: id,
		Data: AgentStateData{Desired: d, Generation: gen, State: st, Reason: reason}})
}

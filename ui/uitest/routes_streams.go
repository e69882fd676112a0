package uitest

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// Heartbeat is the fake's time between keep-alive comments.
var Heartbeat = 200 * time.Millisecond

// Publish sends an event to the matching subscribers.
func (f *Fake) Publish(ev apitype.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.publishLocked(ev)
}

func (f *Fake) publishLocked(ev apitype.Event) {
	f.seq++
	ev.Seq = f.seq
	if ev.At.IsZero() {
		ev.At = time.Now().UTC()
	}
	for s := range f.subs {
		if s.logs != nil || (len(s.types) > 0 && !slices.Contains(s.types, ev.Type)) ||
			(s.agent != "" && s.agent != ev.Agent) || (s.task != "" && s.task != ev.Task) {
			continue
		}
		select {
		case s.ch <- ev:
		default: // a slow subscriber misses it, as omertad's would lag
		}
	}
}

// AppendLog adds text to an agent's log and to its followers.
func (f *Fake) AppendLog(agent, text string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logs[agent] += text
	for s := range f.subs {
		if s.logsOf == agent {
			select {
			case s.logs <- text:
			default:
			}
		}
	}
}

func (f *Fake) closeSubs() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		delete(f.subs, s)
	}
}

func (f *Fake) subscribe(s *subscriber) func() {
	f.mu.Lock()
	f.subs[s] = true
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		delete(f.subs, s)
		f.mu.Unlock()
	}
}

func sseStart(w http.ResponseWriter) (http.Flusher, bool) {
	fl, ok := w.(http.Flusher)
	if !ok {
		fail(w, http.StatusInternalServerError, "no streaming")
		return nil, false
	}
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	w.Write([]byte(": fake omertad\n\n"))
	fl.Flush()
	return fl, true
}

func (f *Fake) streamRoutes() {
	f.route("GET /api/v1/events", "events.read", func(w http.ResponseWriter, r *http.Request, _ principal) {
		q := r.URL.Query()
		s := &subscriber{ch: make(chan apitype.Event, 64), agent: q.Get("agent"), task: q.Get("task")}
		if t := q.Get("types"); t != "" {
			s.types = strings.Split(t, ",")
		}
		fl, ok := sseStart(w)
		if !ok {
			return
		}
		defer f.subscribe(s)()
		hb := time.NewTicker(Heartbeat)
		defer hb.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-hb.C:
				if _, err := w.Write([]byte(": heartbeat\n\n")); err != nil {
					return
				}
			case ev := <-s.ch:
				b, _ := json.Marshal(ev)
				if _, err := w.Write([]byte("id: " + strconv.FormatUint(ev.Seq, 10) + "\nevent: " + ev.Type + "\ndata: " + string(b) + "\n\n")); err != nil {
					return
				}
			}
			fl.Flush()
		}
	})
	f.route("GET /api/v1/agents/{id}/logs", "agents.logs", func(w http.ResponseWriter, r *http.Request, _ principal) {
		id := r.PathValue("id")
		f.mu.Lock()
		text, ok := f.logs[id]
		_, exists := f.agents[id]
		f.mu.Unlock()
		if !exists {
			fail(w, http.StatusNotFound, "no agent "+strconv.Quote(id))
			return
		}
		if r.URL.Query().Get("follow") != "true" {
			if !ok {
				fail(w, http.StatusNotFound, "no log yet")
				return
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write([]byte(text))
			return
		}
		s := &subscriber{logsOf: id, logs: make(chan string, 64)}
		fl, ok := sseStart(w)
		if !ok {
			return
		}
		defer f.subscribe(s)()
		b, _ := json.Marshal(text)
		w.Write([]byte("event: " + apitype.EventLog + "\ndata: " + string(b) + "\n\n"))
		fl.Flush()
		hb := time.NewTicker(Heartbeat)
		defer hb.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-hb.C:
				if _, err := w.Write([]byte(": heartbeat\n\n")); err != nil {
					return
				}
			case t := <-s.logs:
				b, _ := json.Marshal(t)
				if _, err := w.Write([]byte("event: " + apitype.EventLog + "\ndata: " + string(b) + "\n\n")); err != nil {
					return
				}
			}
			fl.Flush()
		}
	})
}

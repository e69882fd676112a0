package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/agents"
	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
)

// nextEvent reads events until one satisfies ok, or fails after 10 s.
func nextEvent(t *testing.T, s *apiclient.EventStream, ok func(apitype.Event) bool) apitype.Event {
	t.Helper()
	type res struct {
		ev  apitype.Event
		err error
	}
	deadline := time.After(10 * time.Second)
	for {
		ch := make(chan res, 1)
		go func() { ev, err := s.Next(); ch <- res{ev, err} }()
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatalf("event stream: %v", r.err)
			}
			if ok(r.ev) {
				return r.ev
			}
		case <-deadline:
			t.Fatal("no matching event within 10s")
		}
	}
}

// goroutineIn reports whether a goroutine's stack names any of fns.
func goroutineIn(fns ...string) bool {
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, f := range fns {
		if strings.Contains(stacks, f) {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEventStream: a subscriber sees an agent's state change and its
// task's progress, and closing the stream ends the subscription and its
// goroutines on the server.
func TestEventStream(t *testing.T) {
	e := newAgentsEnv(t)
	ctx := context.Background()
	s, err := e.c.Events(ctx, apiclient.EventFilter{Types: []string{apitype.EventAgentState, apitype.EventTask}, Agent: "tool"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the subscription", func() bool { return e.svc.Bus().Subscribers() == 1 })
	e.deploy(t, "tool")
	ev := nextEvent(t, s, func(ev apitype.Event) bool {
		var d apitype.AgentStateEvent
		return ev.Type == apitype.EventAgentState && json.Unmarshal(ev.Data, &d) == nil && d.State == "running"
	})
	if ev.Agent != "tool" || ev.Seq == 0 || ev.At.IsZero() {
		t.Errorf("state event = %+v", ev)
	}
	task, err := e.c.RunTask(ctx, "tool", apitype.TaskCreate{Input: json.RawMessage(`{}`)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	ev = nextEvent(t, s, func(ev apitype.Event) bool {
		var d apitype.TaskEvent
		return ev.Type == apitype.EventTask && json.Unmarshal(ev.Data, &d) == nil && d.State == apitype.TaskSucceeded
	})
	if ev.Task != task.ID {
		t.Errorf("task event = %+v, want task %s", ev, task.ID)
	}
	if !goroutineIn("api.(*Server).streamEvents") {
		t.Fatal("no stream goroutine while the stream is open: the check below would prove nothing")
	}
	s.Close()
	// The server notices at its next write (a heartbeat at most 50 ms
	// later) and lets go of the subscription and its stream slot.
	waitFor(t, "the subscription to end", func() bool { return e.svc.Bus().Subscribers() == 0 })
	waitFor(t, "the stream slot", func() bool { return len(e.srv.agents.streams) == 0 })
	waitFor(t, "the stream's goroutines to end", func() bool { return !goroutineIn("api.(*Server).streamEvents", "fasthttp.NewStreamReader") })
}

// TestEventStreamTelemetry: telemetry samples arrive as events with the
// API's field names.
func TestEventStreamTelemetry(t *testing.T) {
	e := newAgentsEnv(t)
	s, err := e.c.Events(context.Background(), apiclient.EventFilter{Types: []string{apitype.EventTelemetry}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e.deploy(t, "tool")
	ev := nextEvent(t, s, func(ev apitype.Event) bool { return ev.Type == apitype.EventTelemetry && ev.Agent == "tool" })
	if !strings.Contains(string(ev.Data), `"memory_bytes"`) || !strings.Contains(string(ev.Data), `"container":"tool-g1"`) {
		t.Errorf("telemetry data = %s", ev.Data)
	}
}

// TestEventStreamLagged: a subscriber that falls behind is told so and
// its stream ends; the publisher never waits for it.
func TestEventStreamLagged(t *testing.T) {
	bus := agents.NewBus(2)
	e := newAgentsEnv(t, func(d *AgentsDeps) { d.Events = bus })
	s, err := e.c.Events(context.Background(), apiclient.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	waitFor(t, "the subscription", func() bool { return bus.Subscribers() == 1 })
	for range 100 {
		bus.Publish(agents.Event{Type: agents.EventTask, Task: "t-1", Data: agents.TaskData{State: agents.TaskRunning}})
	}
	ev := nextEvent(t, s, func(ev apitype.Event) bool { return ev.Type == apitype.EventLagged })
	if !strings.Contains(string(ev.Data), "missed events") {
		t.Errorf("lagged event = %s", ev.Data)
	}
	if _, err := s.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("after lagged: %v, want the end of the stream", err)
	}
}

// TestStreamsBounded: streams beyond MaxStreams are refused with 503, and
// a slot frees when a stream ends.
func TestStreamsBounded(t *testing.T) {
	e := newAgentsEnv(t, func(d *AgentsDeps) { d.MaxStreams = 1 })
	ctx := context.Background()
	s, err := e.c.Events(ctx, apiclient.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Events(ctx, apiclient.EventFilter{}); statusOf(err) != 503 {
		t.Fatalf("second stream = %v, want 503", err)
	}
	e.deploy(t, "tool")
	if _, err := e.c.FollowAgentLogs(ctx, "tool", 10); statusOf(err) != 503 {
		t.Fatalf("log stream beyond the bound = %v, want 503", err)
	}
	s.Close()
	waitFor(t, "the slot", func() bool { return len(e.srv.agents.streams) == 0 })
	s2, err := e.c.Events(ctx, apiclient.EventFilter{})
	if err != nil {
		t.Fatalf("stream after one closed: %v", err)
	}
	s2.Close()
}

// TestShutdownEndsStreams: open streams do not hold omertad's stop until
// its deadline; each client is told.
func TestShutdownEndsStreams(t *testing.T) {
	e := newAgentsEnv(t)
	s, err := e.c.Events(context.Background(), apiclient.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Shutdown took %v with a stream open", took)
	}
	ev := nextEvent(t, s, func(apitype.Event) bool { return true })
	if ev.Type != apitype.EventShutdown {
		t.Errorf("last event = %+v, want shutdown", ev)
	}
}

// TestFollowLogs: a followed log shows its tail, then what the agent
// writes, a rune cut between two writes intact; closing it frees the
// server's side.
func TestFollowLogs(t *testing.T) {
	e := newAgentsEnv(t)
	a := e.deploy(t, "tool")
	a = e.waitState(t, "tool", "running")
	cid := a.Status.Container
	if err := e.rt.AppendLog(cid, "old 1\nold 2\n"); err != nil {
		t.Fatal(err)
	}
	ls, err := e.c.FollowAgentLogs(context.Background(), "tool", 1)
	if err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	read := func(want string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for !strings.Contains(got.String(), want) {
			ch := make(chan string, 1)
			go func() {
				s, err := ls.Next()
				if err != nil {
					s = "ERROR " + err.Error()
				}
				ch <- s
			}()
			select {
			case s := <-ch:
				got.WriteString(s)
			case <-deadline:
				t.Fatalf("log so far %q; want %q", got.String(), want)
			}
		}
	}
	read("old 2\n")
	if strings.Contains(got.String(), "old 1") {
		t.Errorf("tail 1 showed %q", got.String())
	}
	euro := "€" // three bytes, written in two pieces
	e.rt.AppendLog(cid, "new "+euro[:1])
	time.Sleep(300 * time.Millisecond)
	e.rt.AppendLog(cid, euro[1:]+" line\n")
	read("new € line\n")
	ls.Close()
	waitFor(t, "the stream slot", func() bool { return len(e.srv.agents.streams) == 0 })
	if _, err := e.c.FollowAgentLogs(context.Background(), "ghost", 1); statusOf(err) != 404 {
		t.Errorf("following an unknown agent = %v, want 404", err)
	}
}

func TestSplitRune(t *testing.T) {
	for _, tt := range []struct{ in, text, rest string }{
		{"abc", "abc", ""}, {"a€", "a€", ""}, {"a\xe2\x82", "a", "\xe2\x82"}, {"a\xe2", "a", "\xe2"},
		{"\xf0\x9f\x98", "", "\xf0\x9f\x98"}, {"\x82\x82", "\x82\x82", ""}, {"", "", ""},
	} {
		text, rest := splitRune([]byte(tt.in))
		if string(text) != tt.text || string(rest) != tt.rest {
			t.Errorf("splitRune(%q) = %q, %q; want %q, %q", tt.in, text, rest, tt.text, tt.rest)
		}
	}
}

// TestHangupFreesStreamSlot: a client that hangs up gives its stream slot
// back at once, not at the next heartbeat (here an hour away): a browser
// leaving a live page must not keep one of the few slots.
func TestHangupFreesStreamSlot(t *testing.T) {
	e := newAgentsEnv(t, func(d *AgentsDeps) { d.MaxStreams = 1; d.Heartbeat = time.Hour })
	e.deploy(t, "tool")
	e.waitState(t, "tool", "running")
	for _, path := range []string{"/api/v1/events?types=agent.state", "/api/v1/agents/tool/logs?follow=true&tail=1"} {
		for i := range 3 { // each time the one slot must be free again
			if status := openAndDrop(t, e.sock, path); status != 200 {
				t.Fatalf("%s, stream %d after %d dropped: HTTP %d; the dropped stream still holds the slot", path, i+1, i, status)
			}
			deadline := time.Now().Add(2 * time.Second)
			for len(e.srv.agents.streams) != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("%s: the slot is still held 2 s after the client hung up", path)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	waitFor(t, "the subscriptions to end", func() bool { return e.svc.Bus().Subscribers() == 0 })
}

// openAndDrop asks for a stream on the socket, reads the status line and
// the stream's first line, and hangs up, as a browser leaving the page.
func openAndDrop(t *testing.T, sock, path string) int {
	t.Helper()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("GET " + path + " HTTP/1.1\r\nHost: omertad\r\nAccept: text/event-stream\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer to %s: %v", path, err)
	}
	if resp.StatusCode == 200 {
		if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
			t.Fatalf("reading the stream of %s: %v", path, err)
		}
		if !resp.Close {
			t.Errorf("%s: a stream's answer without Connection: close", path)
		}
	}
	return resp.StatusCode
}

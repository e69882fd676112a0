package agents

import (
	"context"
	"testing"
	"time"
)

func TestBusDropsASlowSubscriber(t *testing.T) {
	b := NewBus(2)
	ctx := context.Background()
	slow := b.Subscribe(ctx, Filter{})
	fast := b.Subscribe(ctx, Filter{})
	got := make(chan int, 100)
	go func() {
		for e := range fast.C {
			got <- int(e.Seq)
		}
		close(got)
	}()
	done := make(chan struct{})
	go func() {
		for range 50 {
			b.Publish(Event{Type: EventTelemetry})
			time.Sleep(time.Millisecond)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked on a slow subscriber")
	}
	if !slow.Lagged() {
		t.Error("the slow subscriber is not marked lagged")
	}
	n := 0
	for range slow.C { // closed after what fit in its buffer
		n++
	}
	if n != 2 {
		t.Errorf("the slow subscriber got %d events, want its buffer's 2", n)
	}
	fast.Close()
	count := 0
	for range got {
		count++
	}
	if count != 50 || fast.Lagged() {
		t.Errorf("the fast subscriber got %d of 50 (lagged %v)", count, fast.Lagged())
	}
	if b.Subscribers() != 0 {
		t.Errorf("%d subscribers left", b.Subscribers())
	}
}

func TestBusFilterAndContext(t *testing.T) {
	b := NewBus(8)
	ctx, cancel := context.WithCancel(context.Background())
	s := b.Subscribe(ctx, Filter{Types: []EventType{EventAgentState}, Agent: "a"})
	b.Publish(Event{Type: EventAgentState, Agent: "b"})
	b.Publish(Event{Type: EventTelemetry, Agent: "a"})
	b.Publish(Event{Type: EventAgentState, Agent: "a"})
	e := <-s.C
	if e.Agent != "a" || e.Type != EventAgentState || e.Seq != 3 {
		t.Errorf("got %+v", e)
	}
	cancel()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-s.C:
			if !ok {
				if s.Lagged() {
					t.Error("a cancelled subscription is marked lagged")
				}
				return
			}
		case <-deadline:
			t.Fatal("the subscription outlived its context")
		}
	}
}

func TestServiceEvents(t *testing.T) {
	e := newEnv(t)
	sub := e.s.Bus().Subscribe(context.Background(), Filter{Agent: "tool"})
	e.deploy(t, "")
	e.runTask(t, TaskRequest{})
	var kinds []string
	for len(sub.C) > 0 {
		ev := <-sub.C
		switch d := ev.Data.(type) {
		case AgentStateData:
			kinds = append(kinds, string(ev.Type)+":"+string(d.State))
		case TaskData:
			kinds = append(kinds, string(ev.Type)+":"+string(d.State))
		}
	}
	want := []string{"agent.state:pending", "agent.state:running", "task:PENDING", "task:RUNNING", "task:SUCCEEDED"}
	if len(kinds) != len(want) {
		t.Fatalf("events %v, want %v", kinds, want)
	}
	for i := range want {
		if kinds[i] != want[i] {
			t.Fatalf("events %v, want %v", kinds, want)
		}
	}
}

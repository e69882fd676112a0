package api

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkListAgents200 is GET /api/v1/agents with 200 agents of the
// real agents service on its store, through the client on the socket:
// what the console forwards for the agents page and the API.
func BenchmarkListAgents200(b *testing.B) {
	e := newAgentsEnvEvery(b, 10*time.Second) // omertad's pace, not the tests'

	for i := range 200 {
		e.deploy(b, fmt.Sprintf("tool-%03d", i))
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		l, err := e.c.Agents(ctx)
		if err != nil || len(l.Agents) != 200 {
			b.Fatalf("%d agents, %v", len(l.Agents), err)
		}
	}
}

// BenchmarkListAgents200Uncached makes the list's answer afresh each
// time, as after any change to the database.
func BenchmarkListAgents200Uncached(b *testing.B) {
	e := newAgentsEnvEvery(b, 10*time.Second)
	for i := range 200 {
		e.deploy(b, fmt.Sprintf("tool-%03d", i))
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.srv.agentListJSON(ctx, nil); err != nil {
			b.Fatal(err)
		}
	}
}

package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/gpu"
)

// TestEventStreamGPUTelemetry: a GPU telemetry pass, published by the
// agents service as the GPU service hands it over, reaches a subscriber
// to telemetry.gpu as one event per agent in the API's field names; one
// subscribed to telemetry alone does not get it.
func TestEventStreamGPUTelemetry(t *testing.T) {
	e := newAgentsEnv(t)
	ctx := context.Background()
	s, err := e.c.Events(ctx, apiclient.EventFilter{Types: []string{apitype.EventGPUTelemetry}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	other, err := e.c.Events(ctx, apiclient.EventFilter{Types: []string{apitype.EventTask}})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	waitFor(t, "the subscriptions", func() bool { return e.svc.Bus().Subscribers() == 2 })
	e.svc.PublishGPUUsage(gpu.Usage{Agents: []gpu.AgentUsage{
		{Agent: "tool", MemoryBytes: 3 * gib, Devices: []gpu.DeviceUsage{
			{UUID: "GPU-1", Label: "GPU 1", MemoryBytes: 2 * gib, SMPercent: 87, MemoryPercent: 40, Processes: 2},
			{UUID: "MIG-2", Label: "GPU 2 MIG 0 (1g.10gb)", MemoryBytes: 1 * gib, SMPercent: -1, MemoryPercent: -1, Processes: 1},
		}},
		{Agent: "idle", Devices: nil},
	}})
	got := map[string]apitype.GPUTelemetry{}
	for len(got) < 2 {
		ev := nextEvent(t, s, func(ev apitype.Event) bool { return ev.Type == apitype.EventGPUTelemetry })
		var d apitype.GPUTelemetry
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(ev.Data), "memoryBytes") || !strings.Contains(string(ev.Data), `"devices":[`) {
			t.Errorf("telemetry.gpu data = %s, want the API's names and a list", ev.Data)
		}
		got[ev.Agent] = d
	}
	tool := got["tool"]
	want := []apitype.GPUDeviceTelemetry{
		{UUID: "GPU-1", Label: "GPU 1", MemoryBytes: 2 * gib, SMPercent: 87, MemoryPercent: 40, Processes: 2},
		{UUID: "MIG-2", Label: "GPU 2 MIG 0 (1g.10gb)", MemoryBytes: 1 * gib, SMPercent: -1, MemoryPercent: -1, Processes: 1},
	}
	if tool.MemoryBytes != 3*gib || tool.At.IsZero() || len(tool.Devices) != 2 || tool.Devices[0] != want[0] || tool.Devices[1] != want[1] {
		t.Errorf("tool's GPU telemetry = %+v", tool)
	}
	if idle := got["idle"]; idle.Devices == nil || len(idle.Devices) != 0 {
		t.Errorf("idle's GPU telemetry = %+v", idle)
	}
	// The task subscriber sees nothing of it: the next thing it gets is
	// the shutdown at the end, not a GPU event.
	e.srv.Shutdown(ctx)
	if ev := nextEvent(t, other, func(apitype.Event) bool { return true }); ev.Type != apitype.EventShutdown {
		t.Errorf("task subscriber got %+v, want only the shutdown", ev)
	}
}

// ?types= names telemetry.gpu among the types it takes when it refuses.
func TestEventTypesRefusal(t *testing.T) {
	e := newAgentsEnv(t)
	code, body := raw(t, e.sock, "GET /api/v1/events?types=gpu HTTP/1.1\r\nHost: x\r\n\r\n")
	if code != http.StatusBadRequest || !strings.Contains(body, `\"gpu\" is not one of agent.deleted, agent.state, task, telemetry, telemetry.gpu`) {
		t.Errorf("?types=gpu = %d %s", code, body)
	}
}

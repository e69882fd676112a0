package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/agents"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/hangup"
)

// EventSource is what GET /events subscribes to; *agents.Bus is one.
type EventSource interface {
	Subscribe(ctx context.Context, f agents.Filter) *agents.Subscription
}

// Bounds of the event stream.
const (
	// DefaultHeartbeat is the time between keep-alive comments, which
	// keep proxies from closing a quiet stream. A client that goes away
	// is seen at once (see hangup), not at the next heartbeat.
	DefaultHeartbeat = 15 * time.Second
	// DefaultMaxStreams bounds the event and log streams open at once:
	// as many as the console forwards (its Limits.Streams, 32), so that
	// the console's bound is the one a browser meets, and well below
	// Limits.Conns, so that streams cannot take every connection the
	// API serves.
	DefaultMaxStreams = 32
	maxFilterValue    = 256
)

var eventTypes = map[string]agents.EventType{
	apitype.EventAgentState:   agents.EventAgentState,
	apitype.EventAgentDeleted: agents.EventAgentDeleted,
	apitype.EventTask:         agents.EventTask,
	apitype.EventTelemetry:    agents.EventTelemetry,
	apitype.EventGPUTelemetry: agents.EventGPU,
}

// eventTypeNames lists the types ?types= takes, for its refusal.
var eventTypeNames = func() string {
	names := make([]string, 0, len(eventTypes))
	for n := range eventTypes {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}()

// eventRoutes serves GET /events: server-sent events (agent state changes,
// task progress, telemetry, GPU telemetry per agent), filtered by ?types=a,b, ?agent= and ?task=.
// Each event is "id: SEQ", "event: TYPE", "data: JSON" (apitype.Event); a
// comment line every heartbeat keeps proxies from closing the stream. A
// client too slow to keep up gets an "lagged" event and the end of the
// stream: it missed events and must resubscribe (and re-read state).
func (s *Server) eventRoutes(r fiber.Router) {
	r.Get("/events", s.events)
}

func (s *Server) events(c *fiber.Ctx) error {
	f, err := eventFilter(c)
	if err != nil {
		return err
	}
	sc, restricted, err := s.restricted(c)
	if err != nil {
		return s.fail(c, err)
	}
	release, err := s.streamSlot()
	if err != nil {
		return err
	}
	visible := func(string) bool { return true }
	if restricted {
		visible = s.agentVisible(sc)
	}
	sub := s.deps.Agents.Events.Subscribe(context.Background(), f)
	conn := streamHeaders(c)
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer release()
		defer sub.Close()
		sw := newStreamWriter(w, conn, s.limits.Write)
		defer sw.close()
		s.streamEvents(sw, sub, visible)
	})
	return nil
}

// streamHeaders sets the headers of an event stream and returns its
// connection. The connection closes after the stream (see hangup).
func streamHeaders(c *fiber.Ctx) net.Conn {
	c.Set(fiber.HeaderContentType, "text/event-stream; charset=utf-8")
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set("X-Accel-Buffering", "no")
	c.Response().SetConnectionClose()
	return c.Context().Conn()
}

// streamSlot takes one of the stream slots, or refuses with 503.
func (s *Server) streamSlot() (func(), error) {
	select {
	case s.agents.streams <- struct{}{}:
		return func() { <-s.agents.streams }, nil
	default:
		return nil, fiber.NewError(fiber.StatusServiceUnavailable, fmt.Sprintf("too many streams open (%d); close one and try again", cap(s.agents.streams)))
	}
}

func eventFilter(c *fiber.Ctx) (agents.Filter, error) {
	var f agents.Filter
	if v := c.Query("types"); v != "" {
		for _, t := range strings.Split(v, ",") {
			et, ok := eventTypes[t]
			if !ok {
				return f, fiber.NewError(fiber.StatusBadRequest, "query parameter types: "+quoteValue(t)+" is not one of "+eventTypeNames)
			}
			f.Types = append(f.Types, et)
		}
	}
	f.Agent, f.Task = c.Query("agent"), c.Query("task")
	if len(f.Agent) > maxFilterValue || len(f.Task) > maxFilterValue {
		return f, fiber.NewError(fiber.StatusBadRequest, "query parameters agent and task: at most "+strconv.Itoa(maxFilterValue)+" bytes")
	}
	return f, nil
}

func (s *Server) streamEvents(w *streamWriter, sub *agents.Subscription, visible func(agent string) bool) {
	if !w.write(": omertad events\nretry: 3000\n\n") {
		return
	}
	hb := time.NewTicker(s.agents.heartbeat)
	defer hb.Stop()
	for {
		select {
		case <-s.agents.done:
			w.write("event: " + apitype.EventShutdown + "\ndata: {}\n\n")
			return
		case <-w.gone():
			return
		case <-hb.C:
			if !w.write(": heartbeat\n\n") {
				return
			}
		case e, ok := <-sub.C:
			if !ok {
				if sub.Lagged() {
					w.write("event: " + apitype.EventLagged + "\ndata: {\"error\":\"this stream fell behind and missed events; subscribe again\"}\n\n")
				}
				return
			}
			if e.Agent != "" && !visible(e.Agent) {
				continue
			}
			msg, err := sseMessage(e)
			if err != nil {
				s.log.Error("encoding an event", "type", e.Type, "err", err)
				continue
			}
			if !w.write(msg) {
				return
			}
		}
	}
}

// sseMessage is e as one server-sent event. JSON holds no raw newline, so
// the data is one line.
func sseMessage(e agents.Event) (string, error) {
	data, err := json.Marshal(eventData(e.Data))
	if err != nil {
		return "", err
	}
	ev := apitype.Event{Seq: e.Seq, At: e.At, Type: string(e.Type), Agent: e.Agent, Task: e.Task, Data: data}
	b, err := json.Marshal(ev)
	if err != nil {
		return "", err
	}
	return "id: " + strconv.FormatUint(e.Seq, 10) + "\nevent: " + string(e.Type) + "\ndata: " + string(b) + "\n\n", nil
}

// eventData mirrors the domain's event data in the API's shapes.
func eventData(d any) any {
	switch x := d.(type) {
	case agents.AgentStateData:
		return apitype.AgentStateEvent{Desired: string(x.Desired), Generation: x.Generation, State: string(x.State), Reason: x.Reason}
	case agents.TaskData:
		return apitype.TaskEvent{State: string(x.State), ExitCode: x.ExitCode, Error: x.Error}
	case agents.Sample:
		return telemetryView(x)
	case agents.GPUSample:
		return gpuTelemetryView(x)
	case nil:
		return struct{}{}
	}
	return d
}

func telemetryView(x agents.Sample) apitype.Telemetry {
	return apitype.Telemetry{
		Container: x.Container, At: x.At, CPUSeconds: x.CPUSeconds, CPUPercent: x.CPUPercent,
		MemoryBytes: x.MemoryBytes, MemoryLimit: x.MemoryLimit, Pids: x.Pids, PidsLimit: x.PidsLimit, OOMKills: x.OOMKills,
	}
}

// gpuTelemetryView is a telemetry.gpu event's data; Devices is never null.
func gpuTelemetryView(x agents.GPUSample) apitype.GPUTelemetry {
	out := apitype.GPUTelemetry{At: x.At, MemoryBytes: x.MemoryBytes, Devices: make([]apitype.GPUDeviceTelemetry, 0, len(x.Devices))}
	for _, d := range x.Devices {
		out.Devices = append(out.Devices, apitype.GPUDeviceTelemetry{UUID: d.UUID, Label: d.Label, MemoryBytes: d.MemoryBytes,
			SMPercent: d.SMPercent, MemoryPercent: d.MemoryPercent, Processes: d.Processes})
	}
	return out
}

// streamWriter writes a streamed response. fasthttp sets one write
// deadline (Limits.Write) per response; a stream lives longer, so each
// write here gives the connection a new deadline: a stream stays open as
// long as the client reads, and a client that stops reading is cut off
// after Limits.Write. A client that hangs up is seen at once by the
// writer's hangup watch (gone), and as a failed Flush.
type streamWriter struct {
	w       *bufio.Writer
	conn    net.Conn
	timeout time.Duration
	hup     *hangup.Watcher
}

func newStreamWriter(w *bufio.Writer, conn net.Conn, timeout time.Duration) *streamWriter {
	return &streamWriter{w: w, conn: conn, timeout: timeout, hup: hangup.Watch(conn)}
}

// gone is closed when the client has gone away.
func (s *streamWriter) gone() <-chan struct{} { return s.hup.Gone() }

// close ends the hangup watch; the stream writer calls it before it
// returns.
func (s *streamWriter) close() { s.hup.Stop() }

func (s *streamWriter) write(msg string) bool {
	return s.writeBytes([]byte(msg))
}

func (s *streamWriter) writeBytes(b []byte) bool {
	if s.conn != nil {
		s.conn.SetWriteDeadline(time.Now().Add(s.timeout))
	}
	if _, err := s.w.Write(b); err != nil {
		return false
	}
	return s.w.Flush() == nil
}

package probe

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/store"
)

// Monitor probes the machine when omertad starts and then on a timer, stores
// each probe and records drift from the baseline in the store and the audit
// log. It serves the latest probe and the drift events over the API.
type Monitor struct {
	st       *store.Store
	probe    Options
	interval time.Duration
	profile  config.Profile
	matrix   *Matrix
	log      *slog.Logger
}

// MonitorOption configures a Monitor.
type MonitorOption func(*Monitor)

// WithProbeOptions sets how each probe runs (root, NVML, netlink, ...).
func WithProbeOptions(o Options) MonitorOption { return func(m *Monitor) { m.probe = o } }

// WithInterval sets the time between probes (config probe.interval); 0
// probes only once, at start.
func WithInterval(d time.Duration) MonitorOption { return func(m *Monitor) { m.interval = d } }

// WithProfile sets the profile the API's verdict is for.
func WithProfile(p config.Profile) MonitorOption { return func(m *Monitor) { m.profile = p } }

// WithMatrix replaces the built-in compatibility matrix.
func WithMatrix(mx *Matrix) MonitorOption { return func(m *Monitor) { m.matrix = mx } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) MonitorOption { return func(m *Monitor) { m.log = l } }

// NewMonitor returns a monitor over st. Defaults: the live machine, hourly,
// profile user, the built-in matrix.
func NewMonitor(st *store.Store, opts ...MonitorOption) *Monitor {
	m := &Monitor{st: st, interval: time.Hour, profile: config.ProfileUser, log: slog.Default()}
	for _, o := range opts {
		o(m)
	}
	if m.matrix == nil {
		m.matrix = DefaultMatrix()
	}
	return m
}

// Name names the monitor among the daemon's services.
func (m *Monitor) Name() string { return "probe" }

// Run probes now and then every interval until ctx ends. A failed probe is
// logged and retried at the next tick: the daemon must not stop because a
// probe could not be stored once. It returns nil when ctx ends.
func (m *Monitor) Run(ctx context.Context) error {
	m.once(ctx)
	if m.interval <= 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			m.once(ctx)
		}
	}
}

func (m *Monitor) once(ctx context.Context) {
	id, events, err := m.ProbeOnce(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Error("hardware probe failed", "err", err)
		}
		return
	}
	for _, e := range events {
		m.log.Warn("hardware drift", "kind", e.Kind, "subject", e.Subject, "before", e.Before, "after", e.After, "message", e.Message)
	}
	m.log.Info("hardware probed", "probe_id", id, "drift_events", len(events))
}

// ProbeOnce probes, compares with the baseline and stores the probe with
// the drift events that are new since the previous probe. The first probe
// stored on a machine without a first-boot baseline becomes the reference.
func (m *Monitor) ProbeOnce(ctx context.Context) (int64, []DriftEvent, error) {
	res, err := Run(ctx, m.probe)
	if err != nil {
		return 0, nil, err
	}
	base, err := Baseline(ctx, m.st)
	if err != nil {
		return 0, nil, err
	}
	if base == nil {
		id, err := save(ctx, m.st, res, false, nil)
		return id, nil, err
	}
	prev, err := Latest(ctx, m.st)
	if err != nil {
		return 0, nil, err
	}
	events := newEvents(Diff(base.Result, prev.Result), Diff(base.Result, res))
	id, err := save(ctx, m.st, res, false, &driftRecord{baselineID: base.ID, events: events})
	if err != nil {
		return 0, nil, err
	}
	return id, events, nil
}

// ProbeView is the body of GET /api/v1/probe.
type ProbeView struct {
	ProbeID    int64     `json:"probe_id"`
	At         time.Time `json:"at"`
	BaselineID int64     `json:"baseline_id"`
	Verdict    Verdict   `json:"verdict"`
	Result     *Result   `json:"result"`
}

// DriftView is the body of GET /api/v1/probe/drift.
type DriftView struct {
	Events []StoredDrift `json:"events"`
}

// Routes registers GET /probe (the latest probe and its verdict) and GET
// /probe/drift (drift events, newest first, ?limit= up to 1000) on r, which
// is the daemon's /api/v1 group.
func (m *Monitor) Routes(r fiber.Router) {
	r.Get("/probe", m.getProbe)
	r.Get("/probe/drift", m.getDrift)
}

func (m *Monitor) getProbe(c *fiber.Ctx) error {
	ctx := c.UserContext()
	latest, err := Latest(ctx, m.st)
	if err != nil {
		return err
	}
	if latest == nil {
		return fiber.NewError(fiber.StatusNotFound, "no probe stored yet")
	}
	base, err := Baseline(ctx, m.st)
	if err != nil {
		return err
	}
	return c.JSON(ProbeView{
		ProbeID: latest.ID, At: latest.At, BaselineID: base.ID,
		Verdict: Evaluate(latest.Result, m.matrix, m.profile), Result: latest.Result,
	})
}

func (m *Monitor) getDrift(c *fiber.Ctx) error {
	limit := 100
	if s := c.Query("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return fiber.NewError(fiber.StatusBadRequest, fmt.Sprintf("limit: %q is not a number from 1 to 1000", s))
		}
		limit = n
	}
	ev, err := DriftEvents(c.UserContext(), m.st, limit)
	if err != nil {
		return err
	}
	return c.JSON(DriftView{Events: ev})
}

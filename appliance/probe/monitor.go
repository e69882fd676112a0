package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/store"
)

// Monitor probes the machine when omertad starts and then on a timer, stores
// each probe and records drift from the baseline in the store and the audit
// log. Current and Drift answer the API's questions about them; the HTTP
// side lives in appliance/api.
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

// ErrNoProbe is returned (wrapped) by Current before the first probe is
// stored.
var ErrNoProbe = errors.New("no probe stored yet")

// Current is the latest stored probe, judged against the monitor's profile.
type Current struct {
	Probe      *Stored
	BaselineID int64
	Verdict    Verdict
}

// Current returns the latest stored probe with its verdict, or ErrNoProbe.
func (m *Monitor) Current(ctx context.Context) (Current, error) {
	latest, err := Latest(ctx, m.st)
	if err != nil {
		return Current{}, err
	}
	if latest == nil {
		return Current{}, ErrNoProbe
	}
	base, err := Baseline(ctx, m.st)
	if err != nil {
		return Current{}, err
	}
	// Latest found a row, so Baseline (the flagged row or the first one)
	// finds one too, unless a row vanished in between.
	if base == nil {
		return Current{}, fmt.Errorf("probe %d is stored but no baseline is", latest.ID)
	}
	return Current{Probe: latest, BaselineID: base.ID, Verdict: Evaluate(latest.Result, m.matrix, m.profile)}, nil
}

// MaxDriftLimit is the most drift events one Drift call returns.
const MaxDriftLimit = 1000

// Drift returns up to limit (1 to MaxDriftLimit) drift events, newest first.
func (m *Monitor) Drift(ctx context.Context, limit int) ([]StoredDrift, error) {
	if limit < 1 || limit > MaxDriftLimit {
		return nil, fmt.Errorf("drift limit %d: must be from 1 to %d", limit, MaxDriftLimit)
	}
	return DriftEvents(ctx, m.st, limit)
}

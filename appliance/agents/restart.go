package agents

import (
	"time"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
)

// restartPolicy is a manifest's spec.restart with its defaults filled in.
type restartPolicy struct {
	mode     string
	initial  time.Duration
	max      time.Duration
	failures int
	window   time.Duration
}

func policyOf(m *manifest.Manifest) restartPolicy {
	r := m.Spec.Restart
	p := restartPolicy{mode: r.Policy, initial: manifest.DefaultBackoffInitial.D(), max: manifest.DefaultBackoffMax.D(),
		failures: manifest.DefaultCrashFailures, window: manifest.DefaultCrashWindow.D()}
	if p.mode == "" {
		p.mode = manifest.RestartOnFailure
	}
	if b := r.Backoff; b != nil {
		if b.Initial > 0 {
			p.initial = b.Initial.D()
		}
		if b.Max > 0 {
			p.max = b.Max.D()
		}
	}
	if c := r.CrashLoop; c != nil {
		if c.Failures > 0 {
			p.failures = c.Failures
		}
		if c.Window > 0 {
			p.window = c.Window.D()
		}
	}
	return p
}

// failure is what happened to the agent's process.
type failure int

const (
	// failStart: the container could not be created or started.
	failStart failure = iota
	// failExit: the process exited with an error or was killed.
	failExit
	// cleanExit: the process exited with status 0.
	cleanExit
)

// apply decides what follows a failure at t: a restart after a backoff,
// the crash-loop state, or nothing (policy never; on-failure after a
// clean exit). It updates st and reports whether the agent entered the
// crash-loop state.
func (p restartPolicy) apply(st *statusRow, t time.Time, f failure) (crashLoop bool) {
	switch {
	case p.mode == manifest.RestartNever && f == failStart:
		st.State, st.NextStartAt = StateFailed, time.Time{}
		return false
	case p.mode == manifest.RestartNever, p.mode == manifest.RestartOnFailure && f == cleanExit:
		st.State, st.NextStartAt = StateExited, time.Time{}
		return false
	}
	st.Failures = append(p.recent(st.Failures, t), t)
	if len(st.Failures) >= p.failures {
		st.State, st.NextStartAt, st.CrashLoopSince = StateCrashLoop, time.Time{}, t
		return true
	}
	st.State, st.NextStartAt = StateBackoff, t.Add(p.delay(len(st.Failures)))
	return false
}

// recent keeps the failures inside the window ending at t (at most
// maxFailures of them).
func (p restartPolicy) recent(ts []time.Time, t time.Time) []time.Time {
	var out []time.Time
	for _, f := range ts {
		if t.Sub(f) < p.window {
			out = append(out, f)
		}
	}
	if len(out) >= maxFailures {
		out = out[len(out)-maxFailures+1:]
	}
	return out
}

// delay is the backoff before the restart that follows the n-th recent
// failure: initial, doubled each time, at most max.
func (p restartPolicy) delay(n int) time.Duration {
	d := p.initial
	for i := 1; i < n && d < p.max; i++ {
		d *= 2
	}
	return min(d, p.max)
}

// clearFailures is what an operator's restart, enable or patch does: the
// slate is clean again.
func clearFailures(st *statusRow) {
	st.Failures, st.NextStartAt, st.CrashLoopSince = nil, time.Time{}, time.Time{}
}

package agents

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/store"
)

// maxReconnect bounds the wait between passes while containerd is down.
const maxReconnect = 30 * time.Second

// Run is the reconciler: a pass at once (with GPUs, once the GPU
// service's first refresh is done, so that the first pass restores the
// running agents' grants), then one every interval and whenever a verb
// asks, until ctx ends; telemetry is sampled meanwhile. While containerd
// does not answer it waits longer between passes (up to 30 s) and marks
// the agents unknown; it never gives up. It returns nil when ctx ends,
// after the tasks still running were cancelled.
func (s *Service) Run(ctx context.Context) error {
	defer s.tasks.stop()
	if !s.awaitGPUs(ctx) {
		return nil
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { defer wg.Done(); s.sampleLoop(ctx) }()
	wait := s.interval
	for {
		// Before the pass: judging compliance needs no containerd.
		s.maybeCheckCompliance(ctx)
		err := s.Reconcile(ctx)
		switch {
		case err == nil:
			wait = s.interval
		case errors.Is(err, ErrUnavailable):
			wait = min(max(2*wait, s.interval), maxReconnect)
		case ctx.Err() != nil:
		default:
			s.log.Warn("agents: reconcile pass failed", "err", err)
			wait = s.interval
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-s.kick:
			t.Stop()
		case <-t.C:
		}
	}
}

// Reconcile runs one pass: every agent's containers are brought to its
// desired state (started, restarted per policy, stopped, removed), then
// whatever the namespace holds that no agent owns is removed. Agents that a
// verb is working on are left for the next pass. The error wraps
// ErrUnavailable when containerd does not answer.
func (s *Service) Reconcile(ctx context.Context) error {
	s.cycle.Lock()
	defer s.cycle.Unlock()
	began := time.Now()
	defer func() { s.met.pass.Observe(time.Since(began).Seconds()) }()
	rows, err := loadAgents(ctx, s.st.Read(), "")
	if err != nil {
		return err
	}
	s.tel.track(rows)
	list, err := s.rt.List(ctx)
	if err != nil {
		if unreachable(err) || errors.Is(err, runtime.ErrTimeout) {
			s.markUnknown(ctx, rows, err)
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return fromRuntime("listing containers", err)
	}
	if s.setDown(false) {
		s.log.Info("agents: containerd answers again")
	}
	s.restoreGPUs(ctx, rows, list)
	byID := make(map[string]runtime.Status, len(list))
	for _, c := range list {
		byID[c.ID] = c
	}
	for _, r := range rows {
		unlock, ok := s.locks.tryLock(r.ID)
		if !ok {
			continue
		}
		err := s.reconcileAgent(ctx, r.ID, byID)
		unlock()
		if err != nil && ctx.Err() == nil {
			s.log.Warn("agents: reconciling", "agent", r.ID, "err", err)
		}
	}
	s.specs.keep(func(k specKey) bool { return liveSpec(rows, k) })
	if err := s.sweep(ctx); err != nil {
		return err
	}
	return nil
}

func liveSpec(rows []agentRow, k specKey) bool {
	for _, r := range rows {
		if r.ID == k.agent {
			return k.gen == r.Gen || k.gen == r.PrevGen || k.gen > r.LastGen
		}
	}
	return false
}

// reconcileAgent brings one agent to its desired state; the caller holds
// its lock. The row is read again under the lock: the pass's snapshot may
// predate a verb that finished since.
func (s *Service) reconcileAgent(ctx context.Context, id string, byID map[string]runtime.Status) error {
	row, err := loadAgent(ctx, s.st.Read(), id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	switch {
	case row.Desired == DesiredDeleted:
		return s.finishDelete(ctx, id)
	case row.PrevGen > 0:
		return s.finishPatch(ctx, id)
	case row.Desired == DesiredDisabled:
		return s.reconcileDisabled(ctx, row, byID)
	}
	cur, err := s.observe(ctx, containerID(id, row.Gen), row.St, byID)
	if err != nil {
		return err
	}
	return s.reconcileEnabled(ctx, row, cur)
}

// observe is the container's state: from the pass's listing when it runs
// or shows an exit already handled, asked again otherwise (the listing may
// be stale, and a stopped task's OOM kill is only in a fresh status). nil
// means there is no container.
func (s *Service) observe(ctx context.Context, cid string, st statusRow, byID map[string]runtime.Status) (*runtime.Status, error) {
	if c, ok := byID[cid]; ok && (c.State == runtime.Running ||
		c.State == runtime.Stopped && !c.ExitedAt.IsZero() && c.ExitedAt.Equal(st.LastExitAt)) {
		return &c, nil
	}
	c, err := s.rt.Status(ctx, cid)
	if errors.Is(err, runtime.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fromRuntime("reading "+quote(cid), err)
	}
	return &c, nil
}

func (s *Service) reconcileDisabled(ctx context.Context, row agentRow, byID map[string]runtime.Status) error {
	cid := containerID(row.ID, row.Gen)
	if c, ok := byID[cid]; ok && (c.State == runtime.Running || c.State == runtime.Paused) {
		if err := s.rt.Stop(ctx, cid, s.grace); err != nil && !errors.Is(err, runtime.ErrNotFound) {
			return fromRuntime("stopping "+quote(cid), err)
		}
	}
	if row.St.State == StateStopped && row.St.Reason == "" {
		return nil
	}
	st := row.St
	st.State, st.Reason = StateStopped, ""
	return s.saveStatus(ctx, row, st, nil)
}

// reconcileEnabled keeps an enabled agent running per its restart policy.
func (s *Service) reconcileEnabled(ctx context.Context, row agentRow, cur *runtime.Status) error {
	m, err := s.cachedManifest(ctx, row.ID, row.Gen)
	if err != nil {
		return err
	}
	st := row.St
	cid := containerID(row.ID, row.Gen)
	if cur != nil && cur.State == runtime.Running {
		return s.markRunning(ctx, row, cid)
	}
	if !st.CrashLoopSince.IsZero() {
		return s.saveIfChanged(ctx, row, st, StateCrashLoop)
	}
	wasRunning := st.State == StateRunning
	if cur != nil && cur.State == runtime.Stopped && newExit(st, *cur) {
		at := exitTime(*cur, s.now())
		f := s.recordExit(ctx, &st, cid, *cur)
		looped := policyOf(m).apply(&st, at, f)
		err := s.saveStatus(ctx, row, st, func(tx *sql.Tx, st *statusRow) error {
			if looped {
				return s.auditCrashLoop(ctx, tx, row.ID, st)
			}
			return nil
		})
		if err != nil {
			return err
		}
		row.St = st
	}
	switch st.State {
	case StateExited, StateFailed, StateCrashLoop:
		return nil
	case StateBackoff:
		if s.now().Before(st.NextStartAt) {
			return nil
		}
	}
	// A restart: after a backoff, or of a container that ran and is gone.
	restart := st.State == StateBackoff || wasRunning
	return s.bringUpRow(ctx, row, restart)
}

// markRunning records a running container: the OOM kills telemetry saw in
// it, and the outcome of a deploy a crash left unrecorded.
func (s *Service) markRunning(ctx context.Context, row agentRow, cid string) error {
	st := row.St
	st.State, st.Reason, st.NextStartAt, st.CrashLoopSince = StateRunning, "", time.Time{}, time.Time{}
	if n, ok := s.tel.oomOf(cid); ok && n > st.TaskOOM {
		st.OOMKills += n - st.TaskOOM
		st.TaskOOM = n
	}
	if st.State == row.St.State && st.Reason == row.St.Reason && st.OOMKills == row.St.OOMKills &&
		row.St.NextStartAt.IsZero() && row.St.CrashLoopSince.IsZero() && st.PendingOp == "" {
		return nil
	}
	return s.saveStatus(ctx, row, st, func(tx *sql.Tx, st *statusRow) error {
		return s.recordDeploy(ctx, tx, row.ID, st, true, "")
	})
}

func (s *Service) saveIfChanged(ctx context.Context, row agentRow, st statusRow, state State) error {
	if st.State == state {
		return nil
	}
	st.State = state
	return s.saveStatus(ctx, row, st, nil)
}

// newExit reports whether a stopped container's exit is one the status
// has not handled yet.
func newExit(st statusRow, c runtime.Status) bool {
	if c.ExitedAt.IsZero() {
		return st.State == StateRunning
	}
	return !c.ExitedAt.Equal(st.LastExitAt)
}

func exitTime(c runtime.Status, now time.Time) time.Time {
	if c.ExitedAt.IsZero() || c.ExitedAt.After(now) {
		return now
	}
	return c.ExitedAt
}

// recordExit notes an exit in st: its status, its time and the OOM kills
// of the task that ended, and classifies it.
func (s *Service) recordExit(ctx context.Context, st *statusRow, cid string, c runtime.Status) failure {
	code := int64(c.ExitCode)
	st.LastExitCode, st.LastExitAt = &code, c.ExitedAt
	oom := c.OOMKilled
	if m, err := s.rt.Metrics(ctx, cid); err == nil {
		if n := int64(m.OOMKills); n > st.TaskOOM {
			st.OOMKills += n - st.TaskOOM
			st.TaskOOM = n
		}
		oom = oom || m.OOMKills > 0
	} else if oom && st.TaskOOM == 0 {
		st.OOMKills++
		st.TaskOOM = 1
	}
	switch {
	case oom:
		st.Reason = fmt.Sprintf("killed: out of memory (exit status %d)", code)
		return failExit
	case code != 0:
		st.Reason = fmt.Sprintf("exited with status %d", code)
		return failExit
	}
	st.Reason = "exited with status 0"
	return cleanExit
}

// markUnknown records that containerd does not answer, once per outage.
func (s *Service) markUnknown(ctx context.Context, rows []agentRow, cause error) {
	if s.setDown(true) {
		s.log.Warn("agents: containerd does not answer; retrying with backoff", "err", cause)
	}
	for _, r := range rows {
		if r.St.State == StateUnknown || r.Desired == DesiredDeleted {
			continue
		}
		unlock, ok := s.locks.tryLock(r.ID)
		if !ok {
			continue
		}
		if row, err := loadAgent(ctx, s.st.Read(), r.ID); err == nil && row.St.State != StateUnknown {
			st := row.St
			st.State, st.Reason = StateUnknown, "containerd is unavailable"
			if err := s.saveStatus(ctx, row, st, nil); err != nil && ctx.Err() == nil {
				s.log.Warn("agents: recording unknown state", "agent", r.ID, "err", err)
			}
		}
		unlock()
	}
}

// sweep removes what the namespace holds that no agent owns: containers,
// tasks, snapshots and leases (runtime.Orphans). It runs only while no verb
// is changing containers (ops), so that it never sees a container whose row
// is not committed yet; when one is, it waits for the next pass.
func (s *Service) sweep(ctx context.Context) error {
	if !s.ops.TryLock() {
		return nil
	}
	defer s.ops.Unlock()
	known, err := s.knownContainers(ctx)
	if err != nil {
		return err
	}
	o, err := s.rt.Orphans(ctx, func(id string) bool { return known[id] })
	if err != nil {
		return fromRuntime("looking for orphans", err)
	}
	if o.Empty() {
		return nil
	}
	cerr := s.rt.Cleanup(ctx, o)
	// What cannot be removed would be found again at every pass: it is
	// logged and audited once, until what is found changes.
	key := fmt.Sprint(o)
	if cerr != nil && key == s.lastOrphans {
		return nil
	}
	s.lastOrphans = key
	s.log.Info("agents: removed what no agent owns", "containers", o.Containers, "tasks", o.Tasks,
		"snapshots", o.Snapshots, "leases", o.Leases, "lost", o.Lost, "err", cerr)
	aerr := s.st.Audit(ctx, store.AuditEntry{Actor: SystemActor, Action: "agents.orphans.removed",
		Detail: map[string]any{"containers": o.Containers, "tasks": o.Tasks, "snapshots": o.Snapshots,
			"leases": o.Leases, "lost": o.Lost, "complete": cerr == nil}})
	return errors.Join(fromRuntime("removing orphans", cerr), aerr)
}

// knownContainers is every container name the database accounts for.
func (s *Service) knownContainers(ctx context.Context) (map[string]bool, error) {
	rows, err := s.st.Read().QueryContext(ctx, "SELECT id, generation, prev_generation FROM agents")
	if err != nil {
		return nil, fmt.Errorf("reading agents: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id string
		var gen, prev int64
		if err := rows.Scan(&id, &gen, &prev); err != nil {
			return nil, fmt.Errorf("reading agents: %w", err)
		}
		out[containerID(id, gen)] = true
		if prev > 0 {
			out[containerID(id, prev)] = true
		}
	}
	return out, rows.Err()
}

package agents

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/policy"
	"github.com/omertaos/omertaos/appliance/store"
)

// begin checks the actor and id, takes the agent's lock and the shared
// side of ops, and loads the agent. deletedOK lets a verb see an agent
// whose deletion is under way.
func (s *Service) begin(ctx context.Context, id, actor string) (agentRow, func(), error) {
	if err := errors.Join(checkActor(actor), checkID("id", id)); err != nil {
		return agentRow{}, nil, err
	}
	unlock := s.locks.lock(id)
	s.ops.RLock()
	// The reconciler looks again at once: what a verb could not finish
	// (containerd down, a start that failed) is its to retry.
	done := func() { s.ops.RUnlock(); unlock(); s.poke() }
	row, err := loadAgent(ctx, s.st.Read(), id)
	if err == nil && row.Desired == DesiredDeleted {
		err = fmt.Errorf("agent %s: %w: it is being deleted", quote(id), ErrConflict)
	}
	if err != nil {
		done()
		return agentRow{}, nil, err
	}
	return row, done, nil
}

// Patch changes the agent's configuration or resources. The new spec is
// admitted (the Admitter: policy and the tenant's quota; a refusal wraps
// policy.ErrDenied, carries the decision and changes nothing) and
// recorded as the next generation (with the audit record), its container
// created under a new name and started; only once it runs is the old one
// stopped and removed. If it does not start, the old container is left
// running, the new generation is rolled back and the error wraps
// ErrStartFailed. A disabled agent's spec is replaced without starting.
func (s *Service) Patch(ctx context.Context, id string, req PatchRequest) (Agent, error) {
	if req.Config == nil && req.Secrets == nil && req.Resources == nil {
		return Agent{}, invalid("", manifest.CodeRequired, "nothing to change: give config, secrets or resources")
	}
	if err := errors.Join(checkInputShape("config", req.Config), checkInputShape("secrets", req.Secrets)); err != nil {
		return Agent{}, err
	}
	row, done, err := s.begin(ctx, id, req.Actor)
	if err != nil {
		return Agent{}, err
	}
	defer done()
	if row.PrevGen > 0 {
		// An earlier patch was interrupted; settle it first.
		if err := s.finishPatch(ctx, id); err != nil && unreachable(err) {
			return Agent{}, err
		}
		if row, err = loadAgent(ctx, s.st.Read(), id); err != nil {
			return Agent{}, err
		}
	}
	cs, changed, err := s.patched(ctx, row, req)
	if err != nil {
		return Agent{}, err
	}
	if !changed {
		return s.Get(ctx, id)
	}
	regrant, err := s.gpuCountChanged(ctx, row, cs.m)
	if err != nil {
		return Agent{}, err
	}
	err = s.admit(ctx, "patching", req.Actor, s.policyRequest(policy.OpPatch, row.ID, row.Tenant, cs), func(d *policy.Decision) error {
		if !regrant {
			return s.recordPatch(ctx, row, req.Actor, cs, d)
		}
		undo, err := s.regrantGPUs(row, cs.m)
		if err != nil {
			return err
		}
		if err := s.recordPatch(ctx, row, req.Actor, cs, d); err != nil {
			undo()
			return err
		}
		return nil
	})
	if err != nil {
		return Agent{}, err
	}
	err = s.finishPatch(ctx, id)
	a, gerr := s.Get(ctx, id)
	if err != nil {
		return a, err
	}
	return a, gerr
}

// gpuCountChanged reports whether a patch changes the agent's GPU count.
// An enabled agent's is refused: its running container holds the GPUs it
// was created with until the new one runs, so a new grant could not be
// made beside the old one; disabled, its container does not run.
func (s *Service) gpuCountChanged(ctx context.Context, row agentRow, m *manifest.Manifest) (bool, error) {
	cur, err := s.cachedManifest(ctx, row.ID, row.Gen)
	if err != nil {
		return false, err
	}
	from, to := cur.Spec.Resources.GPUs, m.Spec.Resources.GPUs
	switch {
	case from == to:
		return false, nil
	case row.Desired == DesiredEnabled:
		return false, fmt.Errorf("agent %s: %w: changing its GPUs from %d to %d needs it disabled first: its container holds the GPUs it was created with",
			quote(row.ID), ErrConflict, from, to)
	}
	return true, nil
}

// patched is the agent's spec with the request applied and checked, and
// whether it differs from the current one.
func (s *Service) patched(ctx context.Context, row agentRow, req PatchRequest) (checkedSpec, bool, error) {
	sp, err := s.loadSpec(ctx, s.st.Read(), row.ID, row.Gen)
	if err != nil {
		return checkedSpec{}, false, err
	}
	full := sp.Config
	var oldSecrets map[string]any
	if sp.Schema != nil {
		if oldSecrets, err = loadSecrets(ctx, s.st.Read(), row.ID, row.Gen); err != nil {
			return checkedSpec{}, false, err
		}
		full = sp.Schema.Merge(sp.Config, oldSecrets)
	}
	base := *sp.Manifest
	if r := req.Resources; r != nil {
		res := base.Spec.Resources
		if r.CPU != "" {
			res.CPU = r.CPU
		}
		if r.Memory != "" {
			res.Memory = r.Memory
		}
		if r.PIDs != 0 {
			res.PIDs = r.PIDs
		}
		if r.GPUs != 0 {
			res.GPUs = r.GPUs
		}
		base.Spec.Resources = res
	}
	cfg := mergeConfig(mergeConfig(full, req.Config), req.Secrets)
	cs, err := s.check(ctx, &base, cfg, req.Secrets)
	if err != nil {
		return checkedSpec{}, false, err
	}
	cs.signer = sp.Signer // a patch keeps the image
	changed := cs.m.Spec.Resources != sp.Manifest.Spec.Resources || !jsonEqual(cs.public, sp.Config) || !jsonEqual(cs.secrets, oldSecrets)
	return cs, changed, nil
}

// recordPatch writes the next generation and points the agent at it,
// keeping the current one as prev_generation until the new one runs. An
// admitted patch (d set) passes the policies: its flag, if any, goes.
func (s *Service) recordPatch(ctx context.Context, row agentRow, actor string, cs checkedSpec, d *policy.Decision) error {
	cleared := false
	gen := row.LastGen + 1
	st := row.St
	clearFailures(&st)
	if row.Desired == DesiredEnabled {
		st.PendingOp, st.PendingSince = "patch", s.now()
	}
	st.UpdatedAt = s.now()
	err := s.st.Write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE agents SET generation = ?, last_generation = ?, prev_generation = ?, updated_at = ?
 WHERE id = ?`, gen, gen, row.Gen, store.FormatTime(s.now()), row.ID); err != nil {
			return fmt.Errorf("patching %s: %w", quote(row.ID), err)
		}
		if err := s.insertSpec(ctx, tx, row.ID, gen, cs); err != nil {
			return err
		}
		if err := writeStatus(ctx, tx, row.ID, st); err != nil {
			return err
		}
		detail := specDetail(cs, gen)
		detail["from_generation"] = row.Gen
		if d != nil {
			detail["policy"] = decisionDetail(d)
			var err error
			if cleared, err = clearFlagOnAdmit(ctx, tx, row.ID); err != nil {
				return err
			}
		}
		return s.st.AuditTx(ctx, tx, store.AuditEntry{Actor: actor, Action: "agents.patch", Target: row.ID, Detail: detail})
	})
	if err != nil {
		return err
	}
	s.tel.setStatus(row.ID, st)
	if cleared {
		s.publishPolicy(row.ID, nil)
	}
	return nil
}

// finishPatch completes a patch whose new generation is recorded: start
// the new container, then remove the old one; or, when the new one does
// not start, roll back to the old generation. The caller holds the lock.
// The reconciler calls it for a patch a crash interrupted.
func (s *Service) finishPatch(ctx context.Context, id string) error {
	row, err := loadAgent(ctx, s.st.Read(), id)
	if err != nil || row.PrevGen == 0 {
		return err
	}
	if row.Desired != DesiredEnabled {
		if err := s.stopRemove(ctx, containerID(id, row.PrevGen)); err != nil {
			return err
		}
		return s.commitPatch(ctx, row)
	}
	_, err = s.ensureRunning(ctx, id, row.Gen)
	switch {
	case err == nil:
		if err := s.stopRemove(ctx, containerID(id, row.PrevGen)); err != nil {
			return err // both run until the next try
		}
		return s.commitPatch(ctx, row)
	case unreachable(err):
		st := row.St
		st.State, st.Reason = StateUnknown, oneLine(err.Error(), maxReason)
		return errors.Join(err, s.saveStatus(ctx, row, st, nil))
	}
	if derr := s.rt.Delete(ctx, containerID(id, row.Gen)); derr != nil && !errors.Is(derr, runtime.ErrNotFound) {
		return errors.Join(err, fromRuntime("removing the new container", derr))
	}
	return errors.Join(fmt.Errorf("%w: the patch was rolled back to generation %d: %w", ErrStartFailed, row.PrevGen, err),
		s.rollbackPatch(ctx, row, err))
}

// commitPatch forgets the previous generation once its container is gone.
// The new generation is a new container: its OOM count starts again. A
// disabled agent's patch starts nothing.
func (s *Service) commitPatch(ctx context.Context, row agentRow) error {
	st := row.St
	if row.Desired == DesiredEnabled {
		st.State, st.Reason, st.TaskOOM = StateRunning, "", 0
	} else {
		st.State = StateStopped
	}
	err := s.saveStatus(ctx, row, st, func(tx *sql.Tx, st *statusRow) error {
		if err := dropGeneration(ctx, tx, row.ID, row.PrevGen, "prev_generation = 0"); err != nil {
			return err
		}
		return s.recordDeploy(ctx, tx, row.ID, st, true, "")
	})
	if err != nil {
		return err
	}
	return s.removeConfigDir(row.ID, row.PrevGen)
}

// rollbackPatch points the agent back at its previous generation and
// removes the one that failed.
func (s *Service) rollbackPatch(ctx context.Context, row agentRow, cause error) error {
	failed := row.Gen
	st := row.St
	st.Reason = oneLine(fmt.Sprintf("patch to generation %d failed, generation %d kept: %v", failed, row.PrevGen, cause), maxReason)
	row2 := row
	row2.Gen = row.PrevGen
	err := s.saveStatus(ctx, row2, st, func(tx *sql.Tx, st *statusRow) error {
		if _, err := tx.ExecContext(ctx, "UPDATE agents SET generation = ?, prev_generation = 0, updated_at = ? WHERE id = ?",
			row.PrevGen, store.FormatTime(s.now()), row.ID); err != nil {
			return fmt.Errorf("rolling back %s: %w", quote(row.ID), err)
		}
		if err := dropGeneration(ctx, tx, row.ID, failed, ""); err != nil {
			return err
		}
		if err := s.st.AuditTx(ctx, tx, store.AuditEntry{Actor: SystemActor, Action: "agents.patch.rolled-back", Target: row.ID,
			Detail: map[string]any{"failed_generation": failed, "kept_generation": row.PrevGen, "reason": st.Reason}}); err != nil {
			return err
		}
		return s.recordDeploy(ctx, tx, row.ID, st, false, st.Reason)
	})
	if err != nil {
		return err
	}
	return s.removeConfigDir(row.ID, failed)
}

// dropGeneration deletes a generation's spec and secrets, and applies set
// to the agent's row when given.
func dropGeneration(ctx context.Context, tx *sql.Tx, id string, gen int64, set string) error {
	if set != "" {
		if _, err := tx.ExecContext(ctx, "UPDATE agents SET "+set+" WHERE id = ?", id); err != nil {
			return fmt.Errorf("updating %s: %w", quote(id), err)
		}
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM agent_specs WHERE agent_id = ? AND generation = ?", id, gen); err != nil {
		return fmt.Errorf("removing generation %d of %s: %w", gen, quote(id), err)
	}
	return nil
}

// setDesired records a desired state with its audit record, and resets the
// failure history in the same transaction (an operator acted).
func (s *Service) setDesired(ctx context.Context, row agentRow, d Desired, action, actor string, extra map[string]any) (agentRow, error) {
	st := row.St
	clearFailures(&st)
	st.UpdatedAt = s.now()
	err := s.st.Write(ctx, func(tx *sql.Tx) error {
		purge := extra["purge"] == true
		if _, err := tx.ExecContext(ctx, "UPDATE agents SET desired = ?, purge = ?, updated_at = ? WHERE id = ?",
			string(d), purge, store.FormatTime(s.now()), row.ID); err != nil {
			return fmt.Errorf("%s %s: %w", action, quote(row.ID), err)
		}
		if err := writeStatus(ctx, tx, row.ID, st); err != nil {
			return err
		}
		return s.st.AuditTx(ctx, tx, store.AuditEntry{Actor: actor, Action: action, Target: row.ID, Detail: extra})
	})
	if err != nil {
		return row, err
	}
	row.Desired, row.St = d, st
	return row, nil
}

// Disable stops the agent and keeps it stopped; its container stays, so
// that Enable starts it quickly.
func (s *Service) Disable(ctx context.Context, id, actor string) (Agent, error) {
	row, done, err := s.begin(ctx, id, actor)
	if err != nil {
		return Agent{}, err
	}
	defer done()
	if row, err = s.setDesired(ctx, row, DesiredDisabled, "agents.disable", actor, nil); err != nil {
		return Agent{}, err
	}
	err = s.stopDisabled(ctx, row)
	a, gerr := s.Get(ctx, id)
	return a, errors.Join(err, gerr)
}

// stopDisabled brings a disabled agent's containers down.
func (s *Service) stopDisabled(ctx context.Context, row agentRow) error {
	if row.PrevGen > 0 {
		if err := s.finishPatch(ctx, row.ID); err != nil {
			return err
		}
	}
	err := s.rt.Stop(ctx, containerID(row.ID, row.Gen), s.grace)
	if err != nil && !errors.Is(err, runtime.ErrNotFound) {
		return fromRuntime("stopping "+quote(row.ID), err)
	}
	st := row.St
	st.State, st.Reason = StateStopped, ""
	return s.saveStatus(ctx, row, st, nil)
}

// Enable starts a disabled agent (or one in the crash-loop state) again.
func (s *Service) Enable(ctx context.Context, id, actor string) (Agent, error) {
	row, done, err := s.begin(ctx, id, actor)
	if err != nil {
		return Agent{}, err
	}
	defer done()
	if _, err = s.setDesired(ctx, row, DesiredEnabled, "agents.enable", actor, nil); err != nil {
		return Agent{}, err
	}
	if row.PrevGen > 0 {
		err = s.finishPatch(ctx, id)
	} else {
		err = s.bringUp(ctx, id, false)
	}
	a, gerr := s.Get(ctx, id)
	return a, errors.Join(err, gerr)
}

// Restart stops the agent's process (SIGTERM, then SIGKILL after the
// grace) and starts it again, clearing its crash-loop state.
func (s *Service) Restart(ctx context.Context, id, actor string) (Agent, error) {
	row, done, err := s.begin(ctx, id, actor)
	if err != nil {
		return Agent{}, err
	}
	defer done()
	if row.Desired != DesiredEnabled {
		return Agent{}, fmt.Errorf("agent %s: %w: it is %s; enable it", quote(id), ErrConflict, row.Desired)
	}
	if _, err = s.setDesired(ctx, row, DesiredEnabled, "agents.restart", actor, nil); err != nil {
		return Agent{}, err
	}
	err = s.rt.Stop(ctx, containerID(id, row.Gen), s.grace)
	if err != nil && !errors.Is(err, runtime.ErrNotFound) {
		err = fromRuntime("stopping "+quote(id), err)
	} else {
		err = s.bringUp(ctx, id, false)
	}
	a, gerr := s.Get(ctx, id)
	return a, errors.Join(err, gerr)
}

// Delete removes the agent: its deletion is recorded first (with the audit
// record), then its containers go, then its row. Its data directory and
// logs stay unless purge. When containerd is down the error wraps
// ErrUnavailable and the reconciler completes the deletion later.
func (s *Service) Delete(ctx context.Context, id string, purge bool, actor string) error {
	row, done, err := s.begin(ctx, id, actor)
	if err != nil {
		return err
	}
	defer done()
	if _, err := s.setDesired(ctx, row, DesiredDeleted, "agents.delete", actor, map[string]any{"purge": purge}); err != nil {
		return err
	}
	s.publishState(id, DesiredDeleted, row.Gen, StateDeleting, "")
	return s.finishDelete(ctx, id)
}

// finishDelete removes a deleted agent's containers, then (when purging)
// its data and logs, then its rows. The caller holds the lock.
func (s *Service) finishDelete(ctx context.Context, id string) error {
	row, err := loadAgent(ctx, s.st.Read(), id)
	if err != nil {
		return err
	}
	for _, gen := range []int64{row.PrevGen, row.Gen} {
		if gen > 0 {
			if err := s.stopRemove(ctx, containerID(id, gen)); err != nil {
				return err
			}
		}
	}
	if err := s.removeData(id, row); err != nil {
		return err
	}
	err = s.st.Write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "DELETE FROM agents WHERE id = ? AND desired = 'deleted'", id)
		return err
	})
	if err != nil {
		return fmt.Errorf("removing agent %s: %w", quote(id), err)
	}
	s.specs.keep(func(k specKey) bool { return k.agent != id })
	s.tel.drop(id)
	s.releaseGPUs(id)
	if s.limiter != nil {
		s.limiter.Forget(id)
	}
	s.publish(Event{Type: EventAgentDeleted, Agent: id})
	return nil
}

// removeData removes what a deleted agent leaves on disk: its
// configuration files always (they hold its secrets), its data directory
// and logs when purging.
func (s *Service) removeData(id string, row agentRow) error {
	if row.Purge {
		if err := os.RemoveAll(s.agentDir(id)); err != nil {
			return fmt.Errorf("purging the data of %s: %w", quote(id), err)
		}
		return s.purgeLogs(id)
	}
	matches, _ := filepath.Glob(filepath.Join(s.agentDir(id), "_config-g*"))
	for _, m := range matches {
		if err := os.RemoveAll(m); err != nil {
			return fmt.Errorf("removing the configuration of %s: %w", quote(id), err)
		}
	}
	return nil
}

// purgeLogs removes every generation's log of the agent, rotated ones too.
func (s *Service) purgeLogs(id string) error {
	p, err := s.rt.Logs(containerID(id, 1))
	if err != nil {
		return fmt.Errorf("finding the logs of %s: %w", quote(id), err)
	}
	dir := filepath.Dir(p)
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(id) + `-g[0-9]+\.log(\.[0-9]+)?$`)
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("listing the logs of %s: %w", quote(id), err)
	}
	for _, e := range entries {
		if re.MatchString(e.Name()) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("purging the logs of %s: %w", quote(id), err)
			}
		}
	}
	return nil
}

// jsonEqual compares two configurations as JSON.
func jsonEqual(a, b map[string]any) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return string(mustJSON(a)) == string(mustJSON(b))
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

package agents

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/store"
)

// Labels the Service puts on its containers, for people inspecting
// containerd; the Service itself goes by the container's name.
const (
	LabelAgent      = "omerta.dev/agent"
	LabelGeneration = "omerta.dev/generation"
)

// maxReason bounds a stored error.
const maxReason = 1024

// errWedged: the container's name cannot take a task any more. containerd
// 1.6 leaves a task's bundle (and its shim) behind when the client dies in
// the middle of deleting it: the task is no longer listed, yet creating one
// under that name fails as existing, until containerd restarts.
var errWedged = errors.New("containerd holds a task under this container's name that it no longer lists")

// bringUp makes the agent's current generation run and records the
// outcome in its status. The caller holds the agent's lock. restart says
// whether this start counts as a restart by the policy.
func (s *Service) bringUp(ctx context.Context, id string, restart bool) error {
	row, err := loadAgent(ctx, s.st.Read(), id)
	if err != nil {
		return err
	}
	return s.bringUpRow(ctx, row, restart)
}

// bringUpRow is bringUp on a row read under the lock. A wedged container
// name is abandoned for the next generation number (same spec).
func (s *Service) bringUpRow(ctx context.Context, row agentRow, restart bool) error {
	started, err := s.ensureRunning(ctx, row.ID, row.Gen)
	if errors.Is(err, errWedged) {
		s.log.Warn("agents: moving to a new container name", "agent", row.ID, "container", containerID(row.ID, row.Gen), "err", err)
		var rerr error
		if row, rerr = s.respawn(ctx, row, err); rerr != nil {
			return errors.Join(err, rerr)
		}
		started, err = s.ensureRunning(ctx, row.ID, row.Gen)
	}
	return s.settleStart(ctx, row, started, err, restart)
}

// respawn copies the agent's current generation to a new generation
// number and points the agent at it (the row first, as always), then
// removes the old container.
func (s *Service) respawn(ctx context.Context, row agentRow, cause error) (agentRow, error) {
	old, gen := row.Gen, row.LastGen+1
	err := s.st.Write(ctx, func(tx *sql.Tx) error {
		for _, q := range []string{
			"INSERT INTO agent_specs (agent_id, generation, manifest, config, created_at) SELECT agent_id, ?, manifest, config, created_at FROM agent_specs WHERE agent_id = ? AND generation = ?",
			"INSERT INTO agent_secrets (agent_id, generation, key, value) SELECT agent_id, ?, key, value FROM agent_secrets WHERE agent_id = ? AND generation = ?",
		} {
			if _, err := tx.ExecContext(ctx, q, gen, row.ID, old); err != nil {
				return fmt.Errorf("copying generation %d of %s: %w", old, quote(row.ID), err)
			}
		}
		if _, err := tx.ExecContext(ctx, "UPDATE agents SET generation = ?, last_generation = ?, updated_at = ? WHERE id = ?",
			gen, gen, store.FormatTime(s.now()), row.ID); err != nil {
			return fmt.Errorf("moving %s to generation %d: %w", quote(row.ID), gen, err)
		}
		if err := dropGeneration(ctx, tx, row.ID, old, ""); err != nil {
			return err
		}
		return s.st.AuditTx(ctx, tx, store.AuditEntry{Actor: SystemActor, Action: "agents.respawned", Target: row.ID,
			Detail: map[string]any{"from_generation": old, "generation": gen, "reason": oneLine(cause.Error(), maxReason)}})
	})
	if err != nil {
		return row, err
	}
	row.Gen, row.LastGen = gen, gen
	if err := s.rt.Delete(ctx, containerID(row.ID, old)); err != nil && !errors.Is(err, runtime.ErrNotFound) {
		s.log.Warn("agents: removing the abandoned container", "agent", row.ID, "err", err)
	}
	return row, s.removeConfigDir(row.ID, old)
}

// ensureRunning brings container <id>-g<gen> to running from whatever
// state a crash may have left it in: absent (create it), created but never
// started (remove and create it again: nothing ran in it), stopped (start
// it), running (adopt it). started says whether a new task was started.
func (s *Service) ensureRunning(ctx context.Context, id string, gen int64) (started bool, err error) {
	cid := containerID(id, gen)
	st, err := s.rt.Status(ctx, cid)
	switch {
	case errors.Is(err, runtime.ErrNotFound):
		if err := s.create(ctx, id, gen); err != nil {
			return false, err
		}
	case err != nil:
		return false, fromRuntime("reading "+quote(cid), err)
	case st.State == runtime.Running:
		s.tel.runs(cid, id)
		return false, nil
	case st.State == runtime.Created:
		if err := s.rt.Delete(ctx, cid); err != nil && !errors.Is(err, runtime.ErrNotFound) {
			return false, fromRuntime("removing the unstarted "+quote(cid), err)
		}
		if err := s.create(ctx, id, gen); err != nil {
			return false, err
		}
	case st.State == runtime.Stopped && s.gpuDrifted(id):
		// Its devices may be gone: it gets the GPUs admission gives now.
		if err := s.rt.Delete(ctx, cid); err != nil && !errors.Is(err, runtime.ErrNotFound) {
			return false, fromRuntime("removing "+quote(cid)+", whose GPUs drifted", err)
		}
		if err := s.create(ctx, id, gen); err != nil {
			return false, err
		}
	case st.State != runtime.Stopped:
		return false, fmt.Errorf("%s is %s", quote(cid), st.State)
	}
	if err := s.rt.Start(ctx, cid); err != nil {
		if errors.Is(err, runtime.ErrState) {
			// No task listed (pid 0), yet one "exists": see errWedged.
			if st, serr := s.rt.Status(ctx, cid); serr == nil && st.Pid == 0 && st.State != runtime.Running {
				return false, fmt.Errorf("starting %s: %w: %w", quote(cid), errWedged, err)
			}
		}
		return false, fromRuntime("starting "+quote(cid), err)
	}
	s.tel.runs(cid, id)
	s.tel.startedNow(cid)
	return true, nil
}

// create has the generation's GPUs admitted, writes its configuration
// file and creates its container with exactly the devices admission
// chose. A snapshot left by a create that died half-way (container record
// absent, snapshot present) is removed and the create retried once.
func (s *Service) create(ctx context.Context, id string, gen int64) error {
	sp, err := s.loadSpec(ctx, s.st.Read(), id, gen)
	if err != nil {
		return err
	}
	grant, err := s.gpusFor(ctx, id, sp.Manifest)
	if err != nil {
		return err
	}
	cfg := sp.Config
	if sp.Schema != nil {
		secrets, err := loadSecrets(ctx, s.st.Read(), id, gen)
		if err != nil {
			return err
		}
		cfg = sp.Schema.Merge(sp.Config, secrets)
	}
	if err := s.writeConfigFile(id, gen, cfg); err != nil {
		return err
	}
	spec := s.runtimeSpec(id, gen, sp.Manifest)
	spec.GPUs = grant
	err = s.rt.Create(ctx, spec)
	if errors.Is(err, runtime.ErrExists) {
		if _, serr := s.rt.Status(ctx, spec.ID); errors.Is(serr, runtime.ErrNotFound) {
			cerr := s.rt.Cleanup(ctx, runtime.Orphans{Snapshots: []string{spec.ID}})
			if cerr != nil {
				return fromRuntime("removing the snapshot left by an interrupted create", cerr)
			}
			err = s.rt.Create(ctx, spec)
		}
	}
	return fromRuntime("creating "+quote(spec.ID), err)
}

// runtimeSpec turns a checked manifest into the runtime's spec.
func (s *Service) runtimeSpec(id string, gen int64, m *manifest.Manifest) runtime.Spec {
	sp := m.Spec
	env := make([]string, 0, len(sp.Env)+2)
	for _, e := range sp.Env {
		env = append(env, e.Name+"="+e.Value)
	}
	env = append(env, "OMERTA_AGENT_ID="+id, "OMERTA_CONFIG_FILE="+ConfigMountPath+"/"+ConfigFile)
	vols := make([]runtime.Volume, 0, len(sp.Volumes)+1)
	for _, v := range sp.Volumes {
		vols = append(vols, runtime.Volume{Name: v.Name, Path: v.MountPath, ReadOnly: v.ReadOnly})
	}
	vols = append(vols, runtime.Volume{Name: configVolume(gen), Path: ConfigMountPath, ReadOnly: true})
	return runtime.Spec{
		ID:    containerID(id, gen),
		Image: sp.Image.Ref, Digest: sp.Image.Digest,
		// As in Kubernetes: command replaces the image's ENTRYPOINT,
		// args its CMD.
		Command: sp.Command, Args: sp.Args,
		Env:       env,
		CPUMillis: sp.Resources.CPUMillis(), MemoryBytes: sp.Resources.MemoryBytes(), Pids: int64(sp.Resources.PIDs),
		Isolation: runtime.Isolation(sp.Isolation),
		Network:   sp.Network.Mode,
		StateDir:  s.agentDir(id),
		Volumes:   vols,
		Labels:    map[string]string{LabelAgent: id, LabelGeneration: strconv.FormatInt(gen, 10)},
	}
}

// settleStart records the outcome of a start in the agent's status.
func (s *Service) settleStart(ctx context.Context, row agentRow, started bool, err error, restart bool) error {
	st := row.St
	now := s.now()
	switch {
	case err == nil:
		if restart && started {
			st.Restarts++
		}
		if started {
			st.TaskOOM = 0
		}
		st.State, st.Reason, st.NextStartAt = StateRunning, "", time.Time{}
		return s.saveStatus(ctx, row, st, func(tx *sql.Tx, st *statusRow) error {
			return s.recordDeploy(ctx, tx, row.ID, st, true, "")
		})
	case unreachable(err):
		st.State, st.Reason = StateUnknown, oneLine(err.Error(), maxReason)
		return errors.Join(err, s.saveStatus(ctx, row, st, nil))
	}
	st.Reason = oneLine(err.Error(), maxReason)
	m, merr := s.cachedManifest(ctx, row.ID, row.Gen)
	if merr != nil {
		return errors.Join(err, merr)
	}
	looped := policyOf(m).apply(&st, now, failStart)
	serr := s.saveStatus(ctx, row, st, func(tx *sql.Tx, st *statusRow) error {
		if looped {
			if err := s.auditCrashLoop(ctx, tx, row.ID, st); err != nil {
				return err
			}
		}
		return s.recordDeploy(ctx, tx, row.ID, st, false, st.Reason)
	})
	return errors.Join(fmt.Errorf("%w: %w", ErrStartFailed, err), serr)
}

func (s *Service) auditCrashLoop(ctx context.Context, tx *sql.Tx, id string, st *statusRow) error {
	return s.st.AuditTx(ctx, tx, store.AuditEntry{Actor: SystemActor, Action: "agents.crash-loop", Target: id,
		Detail: map[string]any{"failures": len(st.Failures), "reason": st.Reason}})
}

// saveStatus writes the agent's status (after extra, which may change it,
// in the same transaction) and tells subscribers when the state changed.
func (s *Service) saveStatus(ctx context.Context, row agentRow, st statusRow, extra func(*sql.Tx, *statusRow) error) error {
	st.UpdatedAt = s.now()
	err := s.st.Write(ctx, func(tx *sql.Tx) error {
		if extra != nil {
			if err := extra(tx, &st); err != nil {
				return err
			}
		}
		return writeStatus(ctx, tx, row.ID, st)
	})
	if err != nil {
		return err
	}
	s.tel.setStatus(row.ID, st)
	if st.State != row.St.State || st.Reason != row.St.Reason {
		s.publishState(row.ID, row.Desired, row.Gen, st.State, st.Reason)
	}
	return nil
}

// stopRemove stops a container (SIGTERM, then SIGKILL after the grace) and
// removes it; one already gone is not an error.
func (s *Service) stopRemove(ctx context.Context, cid string) error {
	if err := s.rt.Stop(ctx, cid, s.grace); err != nil && !errors.Is(err, runtime.ErrNotFound) {
		return fromRuntime("stopping "+quote(cid), err)
	}
	if err := s.rt.Delete(ctx, cid); err != nil && !errors.Is(err, runtime.ErrNotFound) {
		return fromRuntime("removing "+quote(cid), err)
	}
	return nil
}

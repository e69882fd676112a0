package agents

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/gpu"
	"github.com/omertaos/omertaos/appliance/policy"
	"github.com/omertaos/omertaos/appliance/safeio"
	"github.com/omertaos/omertaos/appliance/store"
)

var idRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

func checkID(path, id string) error {
	if !idRe.MatchString(id) {
		return invalid(path, manifest.CodeInvalid, "%s is not a DNS label (lowercase letters, digits and -, at most 63)", quote(id))
	}
	return nil
}

// maxActor bounds the actor recorded in the audit log.
const maxActor = 128

func checkActor(actor string) error {
	if actor == "" || len(actor) > maxActor || strings.ContainsFunc(actor, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return invalid("actor", manifest.CodeRequired, "the audit log needs who asks: 1 to %d printable characters", maxActor)
	}
	return nil
}

// checkedSpec is a spec ready to store: the manifest checked with the full
// configuration (secrets included, never stored in it), and the
// configuration split into what may be shown and what may not.
type checkedSpec struct {
	m       *manifest.Manifest
	public  map[string]any
	secrets map[string]any
	signer  string // the key that verified the image; "" when none did
}

// check validates base with the configuration cfg (secrets included);
// secretsGiven is what the operator sent as secrets, each of which must be
// marked secret. It fills the profile's isolation when base names none.
func (s *Service) check(ctx context.Context, base *manifest.Manifest, cfg, secretsGiven map[string]any) (checkedSpec, error) {
	var secretPaths []string
	if base.Spec.ConfigSchema != nil {
		cs, ps := manifest.CompileConfigSchema(base.Spec.ConfigSchema, "spec.configSchema")
		if len(ps) > 0 {
			return checkedSpec{}, &InvalidError{Problems: ps}
		}
		secretPaths = cs.SecretPaths()
	}
	if err := checkSecretKeys(secretsGiven, secretPaths); err != nil {
		return checkedSpec{}, err
	}
	clone := *base
	clone.Spec.Config = nil
	if len(cfg) > 0 {
		clone.Spec.Config = cfg
	}
	if clone.Spec.Isolation == "" {
		clone.Spec.Isolation = manifest.DefaultIsolation(s.profile)
	}
	data, err := json.Marshal(&clone)
	if err != nil {
		return checkedSpec{}, invalid("manifest", manifest.CodeInvalid, "cannot be encoded: %s", oneLine(err.Error(), 200))
	}
	m, err := manifest.Parse(data)
	var ps manifest.Problems
	if errors.As(err, &ps) {
		return checkedSpec{}, &InvalidError{Problems: redactProblems(ps, secretPaths, stringLeaves(secretsGiven, nil))}
	}
	if err != nil {
		return checkedSpec{}, fmt.Errorf("checking the manifest: %w", err)
	}
	if err := s.deployable(ctx, m); err != nil {
		return checkedSpec{}, err
	}
	out := checkedSpec{m: m, public: m.Spec.Config, secrets: map[string]any{}}
	if m.Spec.ConfigSchema != nil && m.Spec.Config != nil {
		cs, _ := manifest.CompileConfigSchema(m.Spec.ConfigSchema, "spec.configSchema")
		out.public, out.secrets = cs.Split(m.Spec.Config)
	}
	return out, nil
}

// deployable refuses what a checked manifest may say but this appliance
// cannot run: GPUs without a GPU service or a GPU, or in a sandbox
// (gpuProblems), and what would collide with the runtime's own mounts.
func (s *Service) deployable(ctx context.Context, m *manifest.Manifest) error {
	var ps manifest.Problems
	if m.Spec.Image == nil {
		ps = append(ps, manifest.Problem{Path: "spec.image", Code: manifest.CodeRequired, Reason: "not deployable: no image"})
	}
	ps = append(ps, s.gpuProblems(ctx, m)...)
	ps = append(ps, s.networkProblems(m)...)
	for i, v := range m.Spec.Volumes {
		if v.MountPath == ConfigMountPath || strings.HasPrefix(v.MountPath, ConfigMountPath+"/") {
			ps = append(ps, manifest.Problem{Path: manifest.Index("spec.volumes", i) + ".mountPath", Code: manifest.CodeInvalid,
				Reason: fmt.Sprintf("%s holds the agent's configuration file", ConfigMountPath)})
		}
	}
	if len(ps) > 0 {
		return &InvalidError{Problems: ps}
	}
	return nil
}

// pinImage makes sure the image is in containerd, pulling it from its
// registry when it is not, and pins its digest when the manifest gives
// none: a tag is resolved once, at deploy, and the stored manifest keeps
// the digest, so that patches and restarts never resolve it again.
func (s *Service) pinImage(ctx context.Context, m *manifest.Manifest) error {
	imgs, err := s.rt.Images(ctx)
	if err != nil {
		return fromRuntime("listing images", err)
	}
	img := m.Spec.Image
	for _, i := range imgs {
		if i.Name == img.Ref {
			return pinTo(img, i)
		}
	}
	var opts []runtime.PullOption
	if img.Digest != "" {
		opts = append(opts, runtime.PullDigest(img.Digest))
	}
	pulled, err := s.rt.Pull(ctx, img.Ref, opts...)
	if err != nil {
		return pullRefused(img, err)
	}
	return pinTo(img, pulled)
}

// pinTo pins img to the digest of i, or checks the one it gives.
func pinTo(img *manifest.Image, i runtime.Image) error {
	switch img.Digest {
	case "":
		img.Digest = i.Digest
	case i.Digest, i.Manifest, i.Config:
	default:
		return invalid("spec.image.digest", manifest.CodeInvalid, "%s is not the image %s in containerd (%s)", img.Digest, quote(img.Ref), i.Digest)
	}
	return nil
}

// pullRefused says why an absent image could not be pulled, naming the
// field at fault when the registry's answer is about it.
func pullRefused(img *manifest.Image, err error) error {
	const hint = "import its archive (omerta image import) or pull it (omerta image pull)"
	msg := oneLine(err.Error(), 300)
	switch {
	case errors.Is(err, runtime.ErrDigestMismatch):
		return invalid("spec.image.digest", manifest.CodeInvalid, "%s: the registry's %s is another image: %s", img.Digest, quote(img.Ref), msg)
	case errors.Is(err, runtime.ErrNotFound):
		return invalid("spec.image.ref", manifest.CodeInvalid, "%s is not in containerd nor in its registry: %s", quote(img.Ref), hint)
	case errors.Is(err, runtime.ErrInvalid), errors.Is(err, safeio.ErrTooLarge):
		return invalid("spec.image.ref", manifest.CodeInvalid, "%s is not in containerd and cannot be pulled: %s", quote(img.Ref), msg)
	}
	return fromRuntime(fmt.Sprintf("%s is not in containerd; pulling it (else %s)", quote(img.Ref), hint), err)
}

// Deploy validates the request, has it admitted (the Admitter: policy and
// the tenant's quota), records the agent (desired state enabled,
// generation 1) with its audit record in one transaction, then creates and
// starts its container. A refusal wraps policy.ErrDenied and carries the
// decision; nothing is recorded or created. When the container does not
// start the agent stays recorded, the error wraps ErrStartFailed, and the
// reconciler retries per the restart policy.
func (s *Service) Deploy(ctx context.Context, req DeployRequest) (Agent, error) {
	if err := checkActor(req.Actor); err != nil {
		return Agent{}, err
	}
	if req.Manifest == nil {
		return Agent{}, invalid("manifest", manifest.CodeRequired, "required")
	}
	id := req.ID
	if id == "" {
		id = req.Manifest.Metadata.ID
	}
	tenant := req.Tenant
	if tenant == "" {
		tenant = policy.DefaultTenant
	}
	if err := errors.Join(checkID("id", id), checkID("tenant", tenant)); err != nil {
		return Agent{}, err
	}
	if err := errors.Join(checkInputShape("config", req.Config), checkInputShape("secrets", req.Secrets)); err != nil {
		return Agent{}, err
	}
	cfg := mergeConfig(mergeConfig(req.Manifest.Spec.Config, req.Config), req.Secrets)
	cs, err := s.check(ctx, req.Manifest, cfg, req.Secrets)
	if err != nil {
		return Agent{}, err
	}
	if err := s.pinImage(ctx, cs.m); err != nil {
		return Agent{}, err
	}
	if cs.signer, err = s.imageSigner(ctx, cs.m.Spec.Image); err != nil {
		return Agent{}, s.recordRefusal(ctx, policy.OpDeploy, id, tenant, req.Actor, cs, err)
	}
	unlock := s.locks.lock(id)
	defer s.poke()
	defer unlock()
	s.ops.RLock()
	defer s.ops.RUnlock()
	if err := s.admitDeploy(ctx, id, tenant, req.Actor, cs); err != nil {
		return Agent{}, err
	}
	err = s.bringUp(ctx, id, false)
	a, gerr := s.Get(ctx, id)
	if err != nil {
		return a, err
	}
	return a, gerr
}

// admitDeploy has the deploy admitted and, inside the admission, gives
// it its GPUs and records it. An id already taken is refused before
// admission, so that no decision is recorded for a deploy that could not
// be. GPUs no admission can give leave nothing: no row, no container, no
// grant.
func (s *Service) admitDeploy(ctx context.Context, id, tenant, actor string, cs checkedSpec) error {
	if err := idFree(ctx, s.st.Read(), id); err != nil {
		return err
	}
	req := s.policyRequest(policy.OpDeploy, id, tenant, cs)
	return s.admit(ctx, "deploying", actor, req, func(d *policy.Decision) error {
		grant, err := s.admitGPUs(id, tenant, cs.m)
		if err != nil {
			return err
		}
		if err := s.recordDeploy0(ctx, id, tenant, actor, cs, d, grant); err != nil {
			if grant != nil {
				s.gpus.alloc.Release(id)
			}
			return err
		}
		return nil
	})
}

// idFree refuses an id an agent has (ErrExists), or had and is being
// deleted (ErrConflict).
func idFree(ctx context.Context, q querier, id string) error {
	var desired string
	err := q.QueryRowContext(ctx, "SELECT desired FROM agents WHERE id = ?", id).Scan(&desired)
	switch {
	case err == nil && desired == string(DesiredDeleted):
		return fmt.Errorf("agent %s: %w: it is being deleted", quote(id), ErrConflict)
	case err == nil:
		return fmt.Errorf("agent %s: %w", quote(id), ErrExists)
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("deploying %s: %w", quote(id), err)
	}
	return nil
}

// recordDeploy0 writes the new agent, its first generation, its status and
// the audit record (with the admission's decision d, when there was one)
// in one transaction.
func (s *Service) recordDeploy0(ctx context.Context, id, tenant, actor string, cs checkedSpec, d *policy.Decision, grant *gpu.Grant) error {
	now := store.FormatTime(s.now())
	err := s.st.Write(ctx, func(tx *sql.Tx) error {
		if err := idFree(ctx, tx, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO agents (id, tenant, desired, generation, last_generation, created_at, updated_at)
 VALUES (?, ?, 'enabled', 1, 1, ?, ?)`, id, tenant, now, now); err != nil {
			return fmt.Errorf("deploying %s: %w", quote(id), err)
		}
		if err := s.insertSpec(ctx, tx, id, 1, cs); err != nil {
			return err
		}
		st := statusRow{State: StatePending, PendingOp: "deploy", PendingSince: s.now(), UpdatedAt: s.now()}
		if err := writeStatus(ctx, tx, id, st); err != nil {
			return err
		}
		detail := specDetail(cs, 1)
		detail["tenant"] = tenant
		if d != nil {
			detail["policy"] = decisionDetail(d)
		}
		if grant != nil {
			detail["gpu_grant"] = grantDetail(grant)
		}
		return s.st.AuditTx(ctx, tx, store.AuditEntry{Actor: actor, Action: "agents.deploy", Target: id, Detail: detail})
	})
	if err != nil {
		return err
	}
	s.publishState(id, DesiredEnabled, 1, StatePending, "")
	return nil
}

// specDetail is what the audit log keeps of a spec: never a configuration
// value, only the names of what was set.
func specDetail(cs checkedSpec, gen int64) map[string]any {
	r := cs.m.Spec.Resources
	return map[string]any{
		"generation": gen, "image": cs.m.Spec.Image.Ref, "digest": cs.m.Spec.Image.Digest,
		"isolation": cs.m.Spec.Isolation, "cpu": r.CPU, "memory": r.Memory, "pids": r.PIDs, "gpus": r.GPUs, "signer": cs.signer,
		"config_keys": sortedKeys(cs.public), "secret_keys": sortedKeys(cs.secrets),
	}
}

// grantDetail is what the audit log keeps of a grant: exactly the
// devices admission chose.
func grantDetail(g *gpu.Grant) map[string]any {
	return map[string]any{"mode": g.Mode, "memory_bytes": g.MemoryBytes, "devices": g.CDIDevices()}
}

// Get returns one agent (deleted ones until their deletion completes).
func (s *Service) Get(ctx context.Context, id string) (Agent, error) {
	row, err := loadAgent(ctx, s.st.Read(), id)
	if err != nil {
		return Agent{}, err
	}
	return s.view(ctx, s.st.Read(), row)
}

// List returns every agent, by id.
func (s *Service) List(ctx context.Context) ([]Agent, error) {
	rows, err := loadAgents(ctx, s.st.Read(), "")
	if err != nil {
		return nil, err
	}
	out := make([]Agent, 0, len(rows))
	for _, r := range rows {
		a, err := s.view(ctx, s.st.Read(), r)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// view is the API's picture of a row: secrets shown as manifest.Redacted.
func (s *Service) view(ctx context.Context, q querier, r agentRow) (Agent, error) {
	sp, err := s.loadSpec(ctx, q, r.ID, r.Gen)
	if err != nil {
		return Agent{}, err
	}
	keys, err := secretKeys(ctx, q, r.ID, r.Gen)
	if err != nil {
		return Agent{}, err
	}
	cfg := manifest.CopyConfig(sp.Config)
	if sp.Schema != nil && len(keys) > 0 {
		shown := make(map[string]any, len(keys))
		for _, k := range keys {
			shown[k] = manifest.Redacted
		}
		cfg = sp.Schema.Merge(sp.Config, shown)
	}
	if cfg == nil {
		cfg = map[string]any{}
	}
	m := cloneManifest(sp.Manifest)
	m.Spec.Config = cfg
	a := Agent{ID: r.ID, Tenant: r.Tenant, Manifest: m, Config: cfg, SecretKeys: keys, Desired: r.Desired,
		Generation: r.Gen, PatchPending: r.PrevGen > 0, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
		Status: statusView(r), NonCompliant: r.Flag, GPUs: s.grantOf(r.ID)}
	a.Status.Reason = s.reasonOf(r.ID, a.Status.Reason)
	return a, nil
}

func statusView(r agentRow) Status {
	st := r.St
	out := Status{State: st.State, Reason: st.Reason, Container: containerID(r.ID, r.Gen), Restarts: st.Restarts,
		OOMKills: st.OOMKills, LastExitCode: st.LastExitCode, UpdatedAt: st.UpdatedAt,
		LastExitAt: timePtr(st.LastExitAt), NextStartAt: timePtr(st.NextStartAt), CrashLoopSince: timePtr(st.CrashLoopSince)}
	return out
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// Package agents runs AI agents on the appliance. Its subpackages:
//
//   - manifest: the agent manifest (apiVersion omertaos.dev/v1, kind Agent),
//     strict decoding, validation, normalisation, the configuration schema
//     and its secrets, and the manifest's published JSON Schema;
//   - catalog: catalog entries from the image, from operators' imports and
//     from the OMERTAOS formats (agents.yaml, AgentRecipe, AgentTemplate),
//     with every field that could not be kept named;
//   - runtime: the containerd adapter (locked-down containers, runc or
//     gVisor, exec, metrics, logs, orphans);
//   - ctrtest: a private containerd for tests.
//
// This package is the domain service on top of them (no HTTP: the routes
// live in appliance/api). A Service keeps each agent's desired state in
// SQLite (Schema), offers the lifecycle verbs (Deploy, Patch, Disable,
// Enable, Restart, Delete, Logs, FollowLogs), runs tasks in the agents'
// containers (RunTask, CancelTask, WaitTask), publishes events on a Bus, and
// samples telemetry for Prometheus (Collectors). Its Run is the reconciler,
// a daemon.Service named "agents".
//
// # Crash consistency
//
// Every verb writes its intent (and its audit record, in the same
// transaction) before it touches containerd, and the observed state after.
// A container's name is derived from its agent and the generation of the
// spec it runs, <id>-g<generation>, so that after a SIGKILL anywhere the
// reconciler can tell from the rows alone what each container in the
// namespace is: the agent's current generation (adopt it, start it, or
// remove it if it never started), the generation a patch keeps until its
// successor runs (prev_generation), or nothing known (an orphan, removed
// with its task, snapshot and lease). A patch creates its new generation
// beside the old, starts it, and only then stops and removes the old; when
// the new one does not start, the old keeps running and the patch is
// rolled back. Generation numbers are never reused (last_generation).
//
// # Admission
//
// With an Admitter (policy.Service; omertad always sets one) Deploy and
// Patch are judged before anything is written: the request is what
// policy.RequestFor reads from the checked manifest, with the secret keys
// actually set and the image's verified signer (ImageVerifier), and the
// intent's transaction runs inside Admit, under its lock, so that two
// deploys cannot both take the last of a tenant's quota. A refusal is a
// *policy.DeniedError (ErrDenied, 403 with the decision) and leaves no row,
// container or audit record of a deploy; a refused patch leaves the agent
// on its generation. The Admitter learns the deployed agents, enabled or
// disabled, from PolicyRequests. Tasks are counted against the policy's
// tasks.perMinute (TaskLimiter): past it RunTask answers a
// *RateLimitedError (ErrRateLimited, 429 with Retry-After). Every agent
// belongs to a tenant, fixed at deploy (agents.tenant, default "default").
//
// A policy change can make a running agent fail: it keeps running, and is
// flagged (agent_policy_flags, Agent.NonCompliant, EventAgentPolicy, the
// audit log) by FlagNonCompliant, which the API calls with a change's
// findings, and by the reconciler, which judges every deployed agent again
// (Compliance.Coverage) whenever the policies or the agents changed and
// clears the flags no longer true. An admitted patch clears its own.
//
// # GPUs
//
// With WithGPUs (omertad passes gpu.Service's Allocator, Ready and
// Status) an agent may ask for spec.resources.gpus; without it, or when
// the GPU service found no driver or no GPU it supports, the manifest is
// refused on that field with the reason, and a sandboxed agent is refused
// on spec.isolation with the runtime's (SandboxGPUs: gVisor's nvproxy).
// A deploy's GPUs are admitted inside the policy admission, after the
// policy allowed it and before its row is written: a refusal (*GPUError,
// ErrConflict, with the numbers) leaves no row, container, grant or audit
// record. Each GPU is exclusive (the policy has no shared mode yet) and,
// when the policy sets gpu.vram, must have its share of it free. The
// container gets exactly the grant (runtime.Spec.GPUs: CDI devices by
// UUID); the audit record names the devices. The grant is held from the
// deploy to the end of the deletion, a disabled agent keeping it, since
// its container keeps the devices; a patch may change the count only of
// a disabled agent. Grants live in memory: after a restart Run waits for
// the GPU service's first refresh and its first pass restores them from
// the containers (runtime.Status.GPUs), admission answering
// ErrUnavailable until then. Drift (GPUDrift, the GPU service's OnDrift,
// or a GPU gone at restore) flags the agent: an audit record, its status
// reason, an EventAgentState; it keeps running, and the next creation of
// its container (a restart, an exit, a patch) admits it afresh. The GPU
// service's telemetry is published per agent as EventGPU.
//
// Secret configuration values (format: secret in the manifest's
// configSchema) are stored apart (agent_secrets) and reach the agent only
// in its configuration file, mounted read-only at ConfigMountPath: never in
// an API answer, an event, the audit log, a log line or the container's
// environment.
package agents

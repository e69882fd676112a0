// Package policy decides what an agent may be: its isolation, network,
// GPUs, resources, image, models, secrets, task rate and budgets, by policy,
// and what its tenant may hold in all, by quota. Deploy and patch are
// admitted or refused here, with the rule that decided and the numbers;
// the policy coverage KPI is computed here; and which tenants an operator
// may see is recorded here. The package speaks no HTTP; appliance/api maps
// its errors (errors.go) to status codes.
//
// # Documents
//
// A policy (kind Policy) applies to one subject: an agent id, a catalog
// category (metadata.category, compared without regard to case) or a
// tenant. A tenant (kind Tenant) has quotas. Both are YAML or JSON, read
// through manifest.ParseTree (safeyaml for YAML, a bounded token parser
// for JSON: Limits), decoded strictly (an unknown key, a wrong kind, a
// duplicate is refused) and checked; every refusal is a manifest.Problem
// naming its field path ("spec.network.egress[2]"). A rule left out
// inherits; a list given empty allows nothing.
//
// # Layers and precedence
//
// The policy an agent runs under (Effective) is built in this order:
//
//	profile defaults ← category policy ← tenant policy ← agent policy
//
// The first three form the tenant's envelope: each replaces the rules it
// sets, so an administrator widens or narrows the profile's defaults for a
// category and then, authoritatively, for a tenant. The agent's own policy
// may only narrow that envelope, never widen it: a lower bound, a stronger
// isolation, a permission turned off, and for every allow-list (network
// modes, egress, images, models, secrets) a second list that a value must
// pass as well as the envelope's. What an agent policy asks beyond its
// envelope does not apply, and Effective.Warnings (and so the Decision)
// says so. The envelope is the administrator's grant; the agent's policy
// is a least-privilege statement inside it.
//
// # Profile defaults (ProfileDefaults)
//
//	rule                 user          pro           enterprise
//	isolation (weakest)  container     container     sandbox (gVisor)
//	network.modes        none, gateway none, gateway none, gateway
//	network.egress       none          none          none
//	gpu.allowed          yes           yes           no
//	gpu.vram             unbounded     unbounded     unbounded
//	max.cpu              unbounded     8             4
//	max.memory           unbounded     32Gi          16Gi
//	max.pids             8192          4096          1024
//	max.gpus             unbounded     2             1
//	images               any           any           any, signed only
//	models               any, cloud    any, cloud    any, no cloud
//	secrets              any declared  any declared  any declared
//	tasks.perMinute      600           120           60
//	budget (per month)   none          $200          10M tokens, $100
//
// Why: user is one person's machine, bounded only where a runaway agent
// hurts the host (pids); pro shares a machine among a team, so resources
// and spend are capped; enterprise runs every agent under gVisor, accepts
// only signed images (an unsigned one is a warning elsewhere), keeps data
// on the machine (no cloud models) and gives GPUs only by explicit policy.
// Egress beyond the gateway and omertad's resolver is never a default: a
// destination is granted by name or CIDR in a policy.
//
// # Admission
//
// Evaluate(set, request) is pure: a Set is an immutable snapshot of every
// live policy and tenant, swapped in after each change, so a decision
// takes no lock and reads no database (BenchmarkEvaluate). The Request is
// what the manifest and the registry say the agent needs (RequestFor
// builds most of it) plus Usage, its tenant's totals without it. Rules are
// checked in a fixed order, tenant, isolation, network modes, egress, GPU,
// VRAM, resources, images, signature, models, cloud, secrets, budgets,
// quotas, and every refusal is kept (Decision.Denials); Rule and Reason
// are the first. A rule string names the layer and the field:
// "policy:agent/foo@v3 max.memory", "profile:enterprise isolation",
// "quota:tenant/default agents". Quotas hold when the tenant's other
// agents plus this one are at or under each quota: equal passes, one more
// is refused. The month's token and cost use count against a new deploy
// only (OpDeploy); a patch or a check of a running agent is not refused
// for what the tenant spent.
//
// Service.Admit serialises admissions, fills Usage from the deployed
// agents (Options.Running) and the gateway's accounting
// (Options.MonthUsage), records the decision (the latest
// DecisionHistory, so the console shows denials explained; a denial is
// audited too) and runs the caller's commit under the same lock.
//
// Task rate is not a deploy-time rule: TaskLimiter enforces
// tasks.perMinute where tasks are submitted, one token bucket per agent
// holding a minute's worth, following policy changes at once.
//
// # Coverage and changes
//
// Coverage is deployed agents under an explicit policy (any stored layer
// applies, not only the profile's defaults) that they pass, over deployed
// agents. Every change (policy or tenant) computes, inside its
// transaction, the running agents that passed before and fail after
// (NonCompliant): they are returned with the change and named in its
// audit record, so the service flags them at once; Impact answers the same
// before saving.
//
// # Storage
//
// Every change to a policy adds a version (policy_versions); none is
// rewritten. Rollback adds a version equal to an earlier one; Delete adds
// a version without rules. A change carries an optional expected version
// (ErrConflict when stale). Every change, and every refused one, appends
// to the store's audit chain in the same transaction (actor, action such
// as policy.update, target such as agent/foo, detail: version, changed
// fields, agents made non-compliant).
//
// # Operator scoping
//
// A user with no restriction sees every tenant; SetScope restricts a user
// to granted tenants. Scope.Check answers ErrNotFound for the others,
// which the API maps to 404, not 403, so their names do not leak.
package policy

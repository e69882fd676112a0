// Package gateway is the model gateway: an OpenAI-compatible endpoint
// (/v1/chat/completions with streaming, /v1/completions, /v1/embeddings,
// /v1/models) that omertad serves on the agents' bridge, between the
// agents and the model backends the model registry names.
//
// # Who is calling
//
// Agents hold no keys. The gateway knows the calling agent from the
// request's source address (an Identifier: the address omertad gave the
// agent's veth; the kernel's rules keep an agent from using another's),
// and a source address that belongs to no agent gets 403 unknown_agent
// before anything else is read. Whatever Authorization, cookies or other
// headers an agent sends are dropped: the request to a backend is built
// afresh with the backend's own credential, read from the secret store
// (Secrets) for each attempt, in its Authorization header. The credential
// is never logged, never in an error, a metric or a usage row; an answer
// that echoes it (a hostile or careless backend) has it replaced by
// "[redacted]", in streams too, across reads (see heldSuffix).
//
// # Deciding
//
// In order, each refusal an OpenAI-style error
// {"error":{"message","type","param","code"}} with a machine-readable code
// (see Code) and Retry-After where waiting helps:
//
//   - bounds: headers (431), body size (413), content type (415), JSON
//     nesting, one JSON object, no member given twice in any case (400: a
//     backend must not read another "model" than the one allowed);
//   - the policy (Policy.Rules; 503 when it cannot be read): the model
//     must be allowed (403 model_not_allowed), be in the registry (404),
//     and be enabled there (403 model_not_enabled: omertad enables a model
//     only once its manifest verified; Registry.WithDisabled);
//   - request rate and token rate, per agent and per tenant
//     (golang.org/x/time/rate; 429 rate_limit_exceeded and
//     token_rate_limit_exceeded). Tokens are known only once a backend
//     answers, so the token bucket is charged afterwards and may go into
//     debt (at most an hour of the rate); a scope in debt is refused until
//     it has waited it off;
//   - then each target of the model's route in turn. A cloud target is
//     skipped unless the policy allows cloud; a target whose circuit is
//     open is skipped; then the monthly token and cost budgets of the agent
//     and of its tenant are checked against the worst this request could
//     cost on this target (prompt at one token per 4 bytes of body,
//     completion at max_tokens or the model's estimate, per choice, at the
//     target's prices), counting what requests in flight hold. This check
//     runs again for every fallback, so a paid fallback behind a failed
//     free backend is refused (429 budget_exceeded, Retry-After the next
//     month) rather than quietly spending past the budget.
//
// A target that fails (connection error, timeout, a 5xx, a redirect, an
// answer over MaxResponseBytes) is left for the next. When none serves,
// the answer is a budget refusal if one was met, 403 cloud_not_allowed if
// every target was cloud, else the last failure (502 backend_error, 504
// backend_timeout), else 503 backend_unavailable with the time until a
// circuit lets a probe through.
//
// # Circuit breakers and timeouts
//
// Each backend has a breaker: closed; open after N consecutive failures
// (WithBreaker); half-open once the cooldown has passed, letting one probe
// through; closed again when the probe succeeds, open again when it fails.
// An agent that hangs up tells nothing about the backend and changes
// nothing. Transitions are logged and appended to the audit chain. A
// target's timeout bounds a whole answer, or a stream's first byte; a
// stream then has StreamIdleTimeout between reads and MaxStreamDuration
// and MaxStreamBytes in all.
//
// # Streams
//
// A streamed answer is passed on as it arrives, each read written and
// flushed at once, never buffered whole; the gateway adds
// stream_options.include_usage to what it forwards so that the backend's
// last chunk reports the tokens to charge. A backend that reports no
// usage, or figures that make no sense, is charged the estimate.
//
// # Usage
//
// Every request from a known agent is recorded: endpoint, model, backend,
// status, refusal code, attempts, reported tokens, tokens charged, cost and
// latency (gateway_usage), with monthly totals per agent
// (gateway_usage_monthly). Records are queued in memory and written in one
// transaction per batch (every second, or at once when a batch is full), so
// that no request waits for an fsync. What keeps this from being lost:
// budgets are enforced from the in-memory ledgers, which are charged before
// the answer's handler returns and loaded from the monthly totals when
// omertad starts; Run writes what is queued when it stops; a failed write
// puts its batch back at the head of the queue; and the queue's bound
// (WithUsageFlush) drops only history, counted in
// omerta_gateway_usage_dropped_total, never a budget charge. A crash loses
// at most one flush interval of rows, and with them that much of the month's
// spend from the reloaded budgets.
//
// Metrics (Collectors) follow appliance/agents: counters of requests by
// agent, model (registry names only) and code, tokens and cost by agent,
// attempts by backend and outcome, a latency histogram, and from memory on
// each scrape the breakers' states, the month's charges per agent and
// tenant and the queue's length.
package gateway

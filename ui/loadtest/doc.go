// Package loadtest measures the console under load (issue 10, "Speed"):
// 200 agents in omertad's database, 50 concurrent authenticated clients
// over HTTPS for a fixed time against the dashboard page and against
// GET /api/v1/agents, each side by side in the same run with a bare Fiber
// handler over TLS that serves a body of the same size (the floor), and
// the console's memory. It is a benchmark, not part of make test: its test
// runs only with OMERTA_LOAD=1 (scripts/console-load.sh).
//
// What is real: the console is the omerta-console binary (built by the
// test, as the image ships it), run as nobody with first boot's
// certificate; omertad is the daemon, API, auth, catalog, agents service
// and probe of this module, on first boot's state, in a process of its
// own; the 200 agents are deployed through its API and the sessions are
// real logins. What is not: omertad's container runtime is
// agents.FakeRuntime, so the agents run no containers (200 containers
// would measure containerd on this machine, not the console); nothing on
// the request path of the two pages measured calls the runtime.
//
// The package has no code outside its test: the harness links omertad's
// packages, which the console itself may never link.
package loadtest

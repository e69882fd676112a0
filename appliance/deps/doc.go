// Package deps holds the test that keeps the module's layering, in the
// spirit of Tailscale's deps tests: every package of the module has a layer,
// a package imports only from layers below its own (or, for domains, from
// other domains), and a few imports are forbidden outright because they
// would break a security boundary rather than a tidiness rule.
//
// The layers, bottom up:
//
//	base     small shared types and OS helpers (version, atomicfile, safeio,
//	         safeyaml, terminal, rootfs): import nothing of ours above them
//	core     config and store
//	domain   probe, agents, hardening, firstboot, the report, and later
//	         policy, registry, gateway, gpu, auth: no Fiber, ever
//	service  the API server, its shared types and client, the daemon
//	front    cmd/omerta, ui/, scripts: they wire the rest together
//
// The console (ui/) talks to omertad only through the API client: it must
// not link the store, SQLite, NVML or the containerd client, so that a
// compromised console holds none of them.
package deps

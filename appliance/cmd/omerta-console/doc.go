// Command omerta-console is the appliance's web console: the one process
// that faces the network, run by omerta-console.service as its own
// unprivileged user with no capabilities, on port 443 from
// omerta-console.socket.
//
// # Why a binary of its own
//
// The console used to be `omerta console`, a subcommand of the one omerta
// binary that also links containerd's client, SQLite, NVML and all of
// omertad. Nothing of that ran in the console, but it was mapped into the
// process: tens of megabytes of resident text (the RSS target is
// 50 MB) and, worse, code a compromised console could reach for. This
// binary links the ui package, the shared API client and little else, so
// the network-facing process cannot hold a containerd client, open the
// database or touch a GPU even by accident; appliance/deps's
// TestConsoleBinaryDeps fails the build the day an import brings one in.
//
// For the same reason it does not import firstboot (which links the probe,
// the store and NVML): the two things it needs from it, the device
// certificate's paths and the fingerprint format first boot prints, are
// restated here and tested against firstboot's own in this package's
// tests, which may link anything.
//
// # What it does
//
// It serves HTTPS only (ui.TLSConfig: TLS 1.2 and 1.3) with the device
// certificate (systemd's credentials, else first boot's files, else
// --cert/--key, or a self-signed one with --dev-cert), the pages, and
// /api/v1 forwarded to omertad's unix socket for an allow-list of routes
// (package ui). omertad decides every call from the session or token the
// request carries; the console is a front, not a gatekeeper. The listener
// is systemd's (LISTEN_FDS, through go-systemd's activation package in
// ui.Listen), else --listen. It tells systemd when it is ready and when it
// stops (Type=notify), and stops gracefully on SIGTERM or SIGINT.
//
// The flags, the banner and the exit status are those `omerta console`
// had: 0 after a clean stop, 1 with one line on standard error,
// "omerta-console: " and the error escaped by appliance/terminal (errors
// carry paths and omertad's words, which must not rewrite a terminal).
package main

// Package browsertest drives the web console in a real browser: Debian's
// chromium, through playwright-core from npm (no browser is downloaded),
// against the real binaries. Its test builds omerta, makes a scratch first
// boot (device keys, TLS certificate, setup token), starts a private
// containerd, omertad on the first boot's state and the console as an
// unprivileged user, pins the certificate the console serves to the
// fingerprint first boot printed, then runs scenario.mjs: setup with the
// token, sign-in, the dashboard, a deploy from the catalog through the
// generated form, the agent running with its log streaming, a task and its
// result, a disable (seen live by the agent's page, and by one whose
// streams open only after the stop), the audit log, the users page, and
// an auditor who sees read-only pages and is refused by omertad when it
// tries to change anything. Screenshots of every page go to out/browser/.
//
// Outside its test the package has only what runs the scenario (Install,
// Run, Scenario), which the end-to-end test (scripts/e2e) also uses in
// ModeAppliance against a booted image: setup with the printed token,
// sign-in and the dashboard. The harness that holds a containerd client
// (through ctrtest) and reads omertad's state stays in the test, since the
// console itself may never link it.
package browsertest

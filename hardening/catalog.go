package hardening

import (
	"fmt"
	"strings"
)

// catalog is every control, in report order. Each area's controls are
// listed in its own catalog_*.go file.
func catalog() []Control {
	var c []Control
	for _, area := range [][]Control{
		kernelControls(),
		networkControls(),
		cmdlineControls(),
		moduleControls(),
		tmpMountControls(),
		coredumpControls(),
		permControls(),
		loginControls(),
		nftControls(),
		sshdControls(),
		auditControls(),
		journaldControls(),
		bannerControls(),
	} {
		c = append(c, area...)
	}
	return c
}

// liveGroupSteps run once after the per-control live steps: they load
// whole files into the kernel or a daemon.
var liveGroupSteps = []func(e *env, ctrls []Control) error{
	liveNft,
	liveAudit,
	liveSSH,
	liveJournald,
}

func hasControl(ctrls []Control, prefix string) bool {
	for _, c := range ctrls {
		if strings.HasPrefix(c.ID, prefix) && c.Waiver == "" {
			return true
		}
	}
	return false
}

func liveNft(e *env, ctrls []Control) error {
	if !hasControl(ctrls, "nft.") || !e.exists("/usr/sbin/nft") {
		return nil
	}
	if out, err := e.opts.Runner(e.ctx, "nft", "-f", nftFile); err != nil {
		return fmt.Errorf("loading %s: %s: %w", nftFile, firstLine(out), err)
	}
	return nil
}

// liveSSH makes a running sshd re-read its configuration; reload keeps
// open sessions (the e2e test's among them).
func liveSSH(e *env, ctrls []Control) error {
	if !hasControl(ctrls, "ssh.") || !e.exists(sshdBinary) || !e.exists("/usr/bin/systemctl") {
		return nil
	}
	if out, err := e.opts.Runner(e.ctx, "systemctl", "try-reload-or-restart", "ssh.service"); err != nil {
		return fmt.Errorf("reloading sshd: %s: %w", firstLine(out), err)
	}
	return nil
}

// liveJournald restarts journald so Storage=persistent takes effect now
// and flushes the boot's volatile journal to disk.
func liveJournald(e *env, ctrls []Control) error {
	if !hasControl(ctrls, "journald.") || !e.exists("/usr/bin/systemctl") {
		return nil
	}
	if out, err := e.opts.Runner(e.ctx, "systemctl", "restart", "systemd-journald.service"); err != nil {
		return fmt.Errorf("restarting journald: %s: %w", firstLine(out), err)
	}
	if e.exists("/usr/bin/journalctl") {
		if out, err := e.opts.Runner(e.ctx, "journalctl", "--flush"); err != nil {
			return fmt.Errorf("journalctl --flush: %s: %w", firstLine(out), err)
		}
	}
	return nil
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/omertaos/omertaos/firstboot"
)

var (
	reportPath = firstboot.ReportPath
	// The same file as seen inside the var partition.
	reportInVar = strings.TrimPrefix(firstboot.ReportPath, "/var")
)

// The main scenario's site configuration: profile, host name, and SSH
// with a throwaway key (make e2e-bench boots the image with the same).
const mainProfile, mainHostname = "pro", "omerta-e2e"

// mainScenario: steps 1 to 5 on an image with a site configuration that
// enables SSH with a throwaway key.
func (r *run) mainScenario(ctx context.Context) error {
	const sc = "main"
	signer, pub, err := newSSHKey()
	if err != nil {
		return err
	}
	const profile, hostname = mainProfile, mainHostname
	site := siteConfig(profile, hostname, pub, nil)
	disk, err := r.prepareDisk(sc, map[string][]byte{"/omerta.yaml": site})
	if err != nil {
		return err
	}
	defer r.cleanupDisk(disk)
	if err := growDisk(disk, varGrowth); err != nil {
		return err
	}

	v, err := r.boot(sc, disk)
	if err != nil {
		return err
	}
	defer v.kill()

	// 1. first boot, bounded.
	b, ok := r.mainFirstboot(ctx, sc, v)
	if !ok {
		return nil
	}

	// The console, from the host, as an administrator meets it.
	admin := r.mainConsole(ctx, sc, v, b)

	// 2. over SSH.
	sctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	s, err := dialSSH(sctx, v.sshPort, signer)
	cancel()
	if !r.check(sc, "SSH as omerta-admin with the key from the ESP", err == nil, "%v", errOrNil(err)) {
		return nil
	}
	defer func() {
		if s != nil {
			s.c.Close()
		}
	}()
	r.mainServices(sc, s)
	r.mainNVIDIAUnmerged(sc, s)
	r.mainVarGrown(sc, s)
	r.mainRegistry(sc, s)
	r.res.DeployToRunningSecs = r.mainAgents(ctx, sc, admin)

	// 3. the report: it verifies while the audit is still running, and
	// again once omerta-lynis.service has sealed its result into it.
	r.mainPendingReport(sc, s, b)
	r.mainWaitAudit(ctx, sc, v)
	r.mainReport(sc, s, b, site, profile, hostname)
	r.keepLynisFindings(sc, s)

	// 5. exposure, then the NVIDIA extension forced in, last: it stays
	// merged until the guest powers off.
	r.mainExposure(sc, s)
	r.mainNVIDIAForced(sc, s)
	r.poweroff(sc, v, s)
	return nil
}

// guest is a booted copy of the image whose first boot finished.
type guest struct {
	*vm
	banner banner
	disk   string
}

// freshGuest boots a new copy of the image with esp on its ESP and waits,
// for at most bound, for first boot to finish, checked under the name
// what. g is nil when it did not (err says why when it did not even
// boot); stop, never nil, kills the guest and removes the copy.
func (r *run) freshGuest(ctx context.Context, sc string, esp map[string][]byte, bound time.Duration, what string) (g *guest, stop func(), err error) {
	stop = func() {}
	disk, err := r.prepareDisk(sc, esp)
	if err != nil {
		return nil, stop, err
	}
	v, err := r.boot(sc, disk)
	if err != nil {
		r.cleanupDisk(disk)
		return nil, stop, err
	}
	stop = func() {
		v.kill()
		r.cleanupDisk(disk)
	}
	fctx, cancel := context.WithTimeout(ctx, bound)
	b, _, werr := r.waitFirstboot(fctx, sc, v, 0)
	cancel()
	if !r.check(sc, what, werr == nil, "%v", errOrNil(werr)) {
		return nil, stop, nil
	}
	return &guest{vm: v, banner: b, disk: disk}, stop, nil
}

// poweroff powers the guest off over SSH and waits for QEMU to exit.
func (r *run) poweroff(sc string, v *vm, s *sshClient) {
	_, _, _ = s.run("sudo -n systemctl poweroff")
	if err := v.wait(3 * time.Minute); err != nil {
		v.kill()
		r.check(sc, "clean poweroff", false, "%v", err)
	}
}

// rebootScenario: the sandboxed agent, the model gateway and the reboot
// (step 9), on a guest of their own beside the main scenario's audit.
// In the main scenario they added to the audit's guest (a running gVisor
// sandbox once made the audit 59 min instead of 23-39) and the reboot
// waited for the audit's end, an hour on a slow machine: here they run on
// the other core while it goes on, with Lynis off (its result is the main
// scenario's). The site file is the main scenario's otherwise.
func (r *run) rebootScenario(ctx context.Context) error {
	const sc = "reboot"
	signer, pub, err := newSSHKey()
	if err != nil {
		return err
	}
	esp := map[string][]byte{"/omerta.yaml": siteConfig(mainProfile, "omerta-reboot", pub, boolp(false))}
	g, stop, err := r.freshGuest(ctx, sc, esp, r.opts.firstbootTimeout, "first boot finished")
	defer stop()
	if g == nil {
		return err
	}
	v, b := g.vm, g.banner
	admin := r.formAdmin(ctx, sc, v, b)
	sctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	s, err := dialSSH(sctx, v.sshPort, signer)
	cancel()
	if !r.check(sc, "SSH as omerta-admin", err == nil, "%v", errOrNil(err)) {
		return nil
	}
	r.mainAgents(ctx, sc, admin)
	r.mainSandbox(ctx, sc, admin)
	r.mainGateway(ctx, sc, admin)
	// The machine is rebooted with these agents deployed.
	if s = r.mainReboot(ctx, sc, v, s, signer, admin); s == nil {
		return nil
	}
	defer s.c.Close()
	r.poweroff(sc, v, s)
	return nil
}

// mainFirstboot waits for first boot to print its banner and records its
// timings; ok is false when it did not finish.
func (r *run) mainFirstboot(ctx context.Context, sc string, v *vm) (banner, bool) {
	fctx, cancel := context.WithTimeout(ctx, r.opts.firstbootTimeout)
	b, _, err := r.waitFirstboot(fctx, sc, v, 0)
	cancel()
	if !r.check(sc, "first boot finished and printed the banner", err == nil, "%v", errOrNil(err)) {
		return b, false
	}
	r.res.PowerOnToFirstbootStartSecs = b.StartAt.Seconds()
	r.res.PowerOnToFirstbootDoneSeconds = b.DoneAt.Seconds()
	r.res.FirstbootSeconds = (b.DoneAt - b.StartAt).Seconds()
	r.res.FirstbootSteps = stepTimes(v.snapshot())
	r.check(sc, "banner: console URL, TLS fingerprint, token, report key", b.URL != "" && b.TLS != "" && b.Token != "" && b.ReportKey != "",
		"url %s, tls %s, token %d chars until %s, key %s", b.URL, b.TLS, len(b.Token), b.Expires, b.ReportKey)
	r.checkTokenAfterHardening(sc, v.snapshot())
	return b, true
}

// mainServices checks the units, the probe and hardening's read-back on
// the booted guest.
func (r *run) mainServices(sc string, s *sshClient) {
	// First boot is done, but units ordered after it may still be starting.
	out, ok, err := waitActive(s, 3*time.Minute, "omertad.service", "containerd.service")
	r.check(sc, "omertad and containerd are active", ok, "%s%s", oneLine(out), errSuffix(err))
	if !ok {
		diag, _, _ := s.run("sudo -n journalctl --no-pager -o short-monotonic -n 12 -u omertad.service -u containerd.service 2>&1")
		r.note("units: %s", oneLine(diag))
	}
	// Exit 0 pass, 1 warn, 2 fail or error: QEMU is no GPU server, so the
	// verdict may well be fail; that the probe ran is shown by its JSON.
	stdout, stderr, code, err := s.run2("sudo -n omerta probe --json")
	var probeOut struct {
		SchemaVersion string `json:"schema_version"`
		Verdict       struct {
			Profile string `json:"profile"`
			Status  string `json:"status"`
		} `json:"verdict"`
	}
	jerr := json.Unmarshal([]byte(stdout), &probeOut)
	r.check(sc, "omerta probe runs", err == nil && code >= 0 && code <= 2 && jerr == nil && probeOut.SchemaVersion != "" && probeOut.Verdict.Status != "",
		"exit %d, schema %q, profile %q, verdict %q%s", code, probeOut.SchemaVersion, probeOut.Verdict.Profile, probeOut.Verdict.Status, errSuffix(errors.Join(jerr, nonEmpty(stderr))))
	out, code, err = s.run("sudo -n omerta harden --check")
	r.check(sc, "omerta harden --check shows zero drift", err == nil && code == 0, "exit %d: %s", code, firstLines(out, 6))
	out, _, _ = s.run("findmnt -n -o TARGET,SOURCE,FSTYPE /var; findmnt -n -o TARGET,FSTYPE -T /boot/omerta.yaml; ls /boot/omerta.yaml /efi 2>&1")
	r.note("mounts: %s", oneLine(out))
}

// mainReport copies the report out, verifies it on the host pinned to the
// banner's key, and checks what it says against the ESP's site file.
func (r *run) mainReport(sc string, s *sshClient, b banner, site []byte, profile, hostname string) {
	data, stderr, code, err := s.run2("sudo -n cat " + reportPath)
	if !r.check(sc, "report copied out over SSH", err == nil && code == 0, "exit %d%s", code, errSuffix(nonEmpty(stderr))) {
		return
	}
	h, _ := r.verifyReport(sc, []byte(data), b.ReportKey)
	if h == nil {
		return
	}
	r.check(sc, "report profile is the ESP's", h.Header.Profile == profile, "report %q, ESP %q", h.Header.Profile, profile)
	r.check(sc, "report hostname is the ESP's", h.Header.Hostname == hostname, "report %q, ESP %q", h.Header.Hostname, hostname)
	var esp string
	for _, src := range h.Header.Site.Sources {
		if src.Present && src.Path != "/etc/omerta/omerta.yaml" {
			esp = fmt.Sprintf("%s sha256 %s error %q", src.Path, src.SHA256, src.Error)
			r.check(sc, "report names the ESP site file and its hash", src.Error == "" && src.SHA256 == sha256Hex(site), "%s", esp)
		}
	}
	if esp == "" {
		r.check(sc, "report names the ESP site file and its hash", false, "no ESP layer present in %+v", h.Header.Site.Sources)
	}
	r.check(sc, "report has no site problems", len(h.Header.Site.Problems) == 0, "%v", h.Header.Site.Problems)
	r.check(sc, "report key matches the console", h.Signature.KeyFingerprint == b.ReportKey, "%s", h.Signature.KeyFingerprint)
	r.check(sc, "report schema v2, first boot deferred the audit", strings.HasSuffix(h.Header.SchemaVersion, "/v2") && h.Header.LynisAudit.Status == "deferred",
		"schema %q, lynis_audit %q", h.Header.SchemaVersion, h.Header.LynisAudit.Status)
	a := h.lynisAddendum()
	if a == nil || a.Status != "done" || a.Lynis == nil {
		r.check(sc, "Lynis result sealed into the report", false, "addenda %d, last lynis %+v", len(h.Addenda), a)
		return
	}
	r.check(sc, "Lynis result sealed into the report", true, "attempt %d, %s", a.Attempts, a.FinishedAt.Sub(a.StartedAt).Round(time.Second))
	r.res.LynisSeconds = a.FinishedAt.Sub(a.StartedAt).Seconds()
	idx := a.Lynis.Index
	r.res.LynisIndex = &idx
	r.res.LynisWarnings = a.Lynis.Warnings
	r.check(sc, "Lynis hardening index >= 80", idx >= 80, "index %d", idx)
	r.check(sc, "Lynis reports no warnings", len(a.Lynis.Warnings) == 0, "%v", a.Lynis.Warnings)
}

// mainPendingReport: the report as first boot sealed it, before the audit
// ends, verifies on the host and says the audit is pending.
func (r *run) mainPendingReport(sc string, s *sshClient, b banner) {
	data, stderr, code, err := s.run2("sudo -n cat " + reportPath)
	if !r.check(sc, "report copied out while the audit runs", err == nil && code == 0, "exit %d%s", code, errSuffix(nonEmpty(stderr))) {
		return
	}
	h, ok := r.verifyReport(sc+"-pending", []byte(data), b.ReportKey)
	if h == nil || !ok {
		return
	}
	if a := h.lynisAddendum(); a != nil {
		r.note("the audit was sealed before the pending copy was taken (%s)", a.Status)
	}
}

// mainWaitAudit waits for omerta-lynis.service to seal the audit and
// records power-on to report sealed.
func (r *run) mainWaitAudit(ctx context.Context, sc string, v *vm) {
	actx, cancel := context.WithTimeout(ctx, r.opts.auditTimeout)
	defer cancel()
	_, l, err := v.waitLine(actx, 0, reAuditEnd)
	if !r.check(sc, "the Lynis audit ended and was sealed", err == nil && reAuditSealed.MatchString(l.Text), "%s%v", strings.TrimSpace(l.Text), errSuffix(err)) {
		return
	}
	r.res.PowerOnToReportSealedSecs = l.At.Seconds()
}

// keepLynisFindings saves what Lynis suggested, for whoever tunes the image
// and the controls, and where its time went; Lynis keeps its log at
// /var/log/lynis.log.
func (r *run) keepLynisFindings(sc string, s *sshClient) {
	out, _, code, err := s.run2("sudo -n head -c " + strconv.Itoa(lynisLogLimit) + " /var/log/lynis.log")
	if !r.check(sc, "Lynis' log can be read", err == nil && code == 0, "exit %d%s", code, errSuffix(err)) {
		return
	}
	// The image's plugin (plugin_clock_phase1) says so in the log when
	// Lynis ran it: its stamps save a quarter of the audit's programs.
	r.check(sc, "Lynis ran the image's clock plugin", strings.Contains(out, clockPluginLine), "%s in /var/log/lynis.log", strconv.Quote(clockPluginLine))
	var findings strings.Builder
	for line := range strings.Lines(out) {
		if strings.Contains(line, "Suggestion:") || strings.Contains(line, "Warning:") {
			findings.WriteString(line)
		}
	}
	path := filepath.Join(r.opts.work, "lynis-findings.txt")
	if werr := os.WriteFile(path, []byte(findings.String()), 0o644); werr == nil {
		r.note("Lynis findings (%d lines) in %s", strings.Count(findings.String(), "\n"), path)
	}
	slowest, span := lynisSlowest(out, maxLynisTimed)
	r.res.LynisSlowest = slowest
	parts := make([]string, 0, len(slowest))
	for _, t := range slowest {
		parts = append(parts, fmt.Sprintf("%q %.0f s", t.ID, t.Seconds))
	}
	r.note("Lynis' log spans %s; its slowest tests: %s", span.Round(time.Second), strings.Join(parts, ", "))
}

// mainExposure records systemd-analyze security for the appliance's units.
func (r *run) mainExposure(sc string, s *sshClient) {
	// The console is the only network-facing unit: the console issue
	// bounds its exposure at 2.0; the others are recorded.
	bound := map[string]float64{"omerta-console.service": 2.0}
	for _, unit := range []string{"omertad.service", "omerta-console.service", "omerta-firstboot.service", "containerd.service"} {
		out, _, err := s.run("sudo -n systemd-analyze security --no-pager " + unit)
		m := reExposure.FindStringSubmatch(out)
		var f float64
		if err == nil && m != nil {
			f, _ = strconv.ParseFloat(m[2], 64)
			r.res.Exposure[unit] = f
		}
		ok := err == nil && m != nil
		name := "systemd-analyze security " + unit
		if max, bounded := bound[unit]; bounded {
			ok = ok && f <= max
			name = fmt.Sprintf("%s <= %.1f", name, max)
		}
		r.check(sc, name, ok, "%s", lastLine(out))
	}
}

// checkTokenAfterHardening: the token line must come after harden-verify
// finished, in every boot's console.
func (r *run) checkTokenAfterHardening(sc string, lines []line) {
	verified, tokenAt := -1, -1
	for i, l := range lines {
		if m := reStep.FindStringSubmatch(l.Text); m != nil && m[3] == "harden-verify" && strings.HasPrefix(m[4], "done") {
			verified = i
		}
		if tokenAt < 0 && reTokenAny.MatchString(l.Text) {
			tokenAt = i
		}
	}
	r.check(sc, "setup token printed only after hardening was verified", tokenAt >= 0 && verified >= 0 && tokenAt > verified,
		"harden-verify done at line %d, first token line %d", verified, tokenAt)
}

// powerLossScenario: step 6.
func (r *run) powerLossScenario(ctx context.Context) error {
	const sc = "power-loss"
	r.note("power-loss and bad-config boots set firstboot.lynis: false to save the time Lynis takes under TCG (about 16 min here with the hardened kernel command line; 6.5 min on a stock kernel)")
	site := siteConfig("pro", "omerta-powerloss", "", boolp(false))
	disk, err := r.prepareDisk(sc, map[string][]byte{"/omerta.yaml": site})
	if err != nil {
		return err
	}
	defer r.cleanupDisk(disk)

	// Boot A: cut the power while hardening is being applied.
	a, err := r.boot(sc+"-a", disk)
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	_, l, err := a.waitLine(actx, 0, regexp.MustCompile(`omerta-firstboot: step \d+/\d+ harden-apply: running`))
	cancel()
	if err != nil {
		a.kill()
		r.check(sc, "boot A reached harden-apply", false, "%v", err)
		return nil
	}
	// Let the step get under way, then pull the plug.
	time.Sleep(2 * time.Second)
	if err := a.powerCut(); err != nil {
		return err
	}
	r.check(sc, "power cut in the middle of first boot", true, "at %.1fs, %q was running", l.At.Seconds(), strings.TrimSpace(l.Text))
	linesA := a.snapshot()
	printed := false
	for _, l := range linesA {
		if reTokenAny.MatchString(l.Text) || reComplete.MatchString(l.Text) {
			printed = true
		}
	}
	r.check(sc, "no setup token before the power cut", !printed, "")

	// Boot B: first boot resumes and finishes.
	bvm, err := r.boot(sc+"-b", disk)
	if err != nil {
		return err
	}
	defer bvm.kill()
	bctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	bn, _, err := r.waitFirstboot(bctx, sc, bvm, 0)
	cancel()
	if !r.check(sc, "boot B finished first boot", err == nil, "%v", errOrNil(err)) {
		return nil
	}
	linesB := bvm.snapshot()
	resumed := ""
	for _, l := range linesB {
		if m := reAttempt.FindStringSubmatch(l.Text); m != nil {
			resumed = strings.TrimSpace(l.Text)
		}
	}
	r.check(sc, "boot B resumed as attempt 2", strings.Contains(resumed, "attempt 2 starting (resuming at"), "%s", resumed)
	r.checkTokenAfterHardening(sc, linesB)

	if err := bvm.shutdown(3 * time.Minute); err != nil {
		r.check(sc, "clean shutdown by the power button", false, "%v", err)
		return nil
	}
	data, how, err := readFromPartition(disk, "var", reportInVar, r.opts.work)
	if !r.check(sc, "report read from the var partition after shutdown", err == nil, "%s%v", how, errSuffix(err)) {
		return nil
	}
	h, _ := r.verifyReport(sc, data, bn.ReportKey)
	if h != nil {
		r.check(sc, "report counts two attempts", h.Header.Attempts == 2, "attempts %d", h.Header.Attempts)
	}
	return nil
}

// badConfigScenario: step 7. The ESP carries two layers: /efi/omerta.yaml
// (seen as /boot/efi/omerta.yaml) only turns Lynis off, and /omerta.yaml
// (seen as /boot/omerta.yaml) names a profile that does not exist.
func (r *run) badConfigScenario(ctx context.Context) error {
	const sc = "bad-config"
	bad := []byte("# an administrator's typo\nprofile: paranoid\nhostname: should-not-apply\n")
	esp := map[string][]byte{
		"/efi/omerta.yaml": []byte("firstboot:\n  lynis: false\n"),
		"/omerta.yaml":     bad,
	}
	g, stop, err := r.freshGuest(ctx, sc, esp, 15*time.Minute, "first boot completed despite the bad file")
	defer stop()
	if g == nil {
		return err
	}
	v, bn, disk := g.vm, g.banner, g.disk
	var msg string
	for _, l := range v.snapshot() {
		if m := reSiteErr.FindStringSubmatch(l.Text); m != nil {
			msg = strings.TrimSpace(l.Text)
		}
	}
	r.check(sc, "console names the bad field", strings.Contains(msg, "profile"), "%s", msg)
	if err := v.shutdown(3 * time.Minute); err != nil {
		r.check(sc, "clean shutdown by the power button", false, "%v", err)
		return nil
	}
	data, how, err := readFromPartition(disk, "var", reportInVar, r.opts.work)
	if !r.check(sc, "report read from the var partition after shutdown", err == nil, "%s%v", how, errSuffix(err)) {
		return nil
	}
	h, _ := r.verifyReport(sc, data, bn.ReportKey)
	if h != nil {
		r.check(sc, "report profile is the default (user)", h.Header.Profile == "user", "profile %q", h.Header.Profile)
		r.check(sc, "report hostname is not the bad file's", h.Header.Hostname != "should-not-apply", "hostname %q", h.Header.Hostname)
		named := false
		for _, p := range h.Header.Site.Problems {
			if strings.Contains(p, "profile") {
				named = true
			}
		}
		r.check(sc, "report names the bad field", named, "%v", h.Header.Site.Problems)
	}
	return nil
}

// nonEmpty turns a command's standard error into an error when it said
// something.
func nonEmpty(stderr string) error {
	if s := strings.TrimSpace(stderr); s != "" {
		return errors.New(oneLine(s))
	}
	return nil
}

func errOrNil(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return ": " + err.Error()
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func firstLines(s string, n int) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	if len(ls) > n {
		ls = append(ls[:n], "...")
	}
	return strings.Join(ls, " | ")
}

package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/config"
)

// varGrowth is how much the main scenario's disk copy is enlarged before
// its first boot: the image's /var is 3 GiB, and first boot must grow it
// into whatever disk it was flashed onto (systemd-repart, then
// systemd-growfs).
const varGrowth = 4 << 30

// reNextBoot is the first line the firmware prints on a boot: after a
// reboot it says that the guest is starting again.
var reNextBoot = regexp.MustCompile(`BdsDxe: (loading|starting) Boot`)

// beforeReboot is what the appliance said before the reboot, to compare
// with what it says after.
type beforeReboot struct {
	bootID  string
	agents  map[string]int64 // id -> generation
	desired map[string]string
	audit   apitype.AuditRecord // the newest record before the reboot
	report  string              // sha256 of the sealed first-boot report
}

// growDisk enlarges the disk copy, as flashing the image onto a bigger
// disk does.
func growDisk(disk string, extra int64) error {
	fi, err := os.Stat(disk)
	if err != nil {
		return err
	}
	return os.Truncate(disk, fi.Size()+extra)
}

// mainVarGrown: first boot grew /var into the space after it.
func (r *run) mainVarGrown(sc string, s *sshClient) {
	out, code, err := s.run("df -B1 --output=size /var | tail -n 1; lsblk -bno SIZE /dev/disk/by-partlabel/var")
	f := strings.Fields(out)
	var fsBytes, partBytes int64
	if err == nil && code == 0 && len(f) == 2 {
		fmt.Sscan(f[0], &fsBytes)
		fmt.Sscan(f[1], &partBytes)
	}
	// 3 GiB in the image plus the 4 GiB added: anything past 6 GiB shows
	// that both the partition and the file system grew.
	const want = 6 << 30
	r.check(sc, "/var grew into the rest of the disk on first boot", fsBytes > want && partBytes > want,
		"file system %.2f GiB, partition %.2f GiB (image: 3 GiB, disk enlarged by %d GiB)%s",
		float64(fsBytes)/(1<<30), float64(partBytes)/(1<<30), varGrowth>>30, errSuffix(err))
}

// mainReboot: the appliance is rebooted with an agent deployed. First boot
// must not run again, the agents come back as they were (desired enabled,
// so running again, on the same generation), omertad's database and
// containerd agree, the audit chain verifies at omertad's start and still
// holds every record from before, and the report is the one first boot
// sealed. It returns the SSH client of the new boot, or nil.
func (r *run) mainReboot(ctx context.Context, sc string, v *vm, s *sshClient, signer ssh.Signer, admin *apiclient.Client) *sshClient {
	if admin == nil {
		r.check(sc, "reboot", false, "no admin session (setup failed)")
		return s
	}
	bctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	before, err := r.rebootBaseline(bctx, s, admin)
	cancel()
	if !r.check(sc, "state recorded before the reboot", err == nil, "%v", errOrNil(err)) {
		return s
	}
	first := analyzeBoot(s, time.Minute)
	first.Milestones = bootMilestones(v.snapshot())
	r.res.Boot["first"] = first
	from := len(v.snapshot())
	start := time.Now()
	// The session ends with an error when sshd goes down: that is expected.
	_, _, _ = s.run("sudo -n systemctl reboot")
	s.c.Close()
	rctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	if _, _, err := v.waitLine(rctx, from, reNextBoot); !r.check(sc, "the guest rebooted", err == nil, "%v", errOrNil(err)) {
		return nil
	}
	s2, err := dialSSH(rctx, v.sshPort, signer)
	if !r.check(sc, "SSH again after the reboot", err == nil, "%v", errOrNil(err)) {
		return nil
	}
	id, _, _ := s2.run("cat /proc/sys/kernel/random/boot_id")
	r.check(sc, "a new boot (boot id changed)", strings.TrimSpace(id) != before.bootID && strings.TrimSpace(id) != "", "%s -> %s", before.bootID, strings.TrimSpace(id))
	out, ok, err := waitActive(s2, 5*time.Minute, "omertad.service", "containerd.service")
	r.res.RebootToServicesSecs = time.Since(start).Seconds()
	r.check(sc, "after the reboot: omertad and containerd are active", ok, "%s%s after %.0fs", oneLine(out), errSuffix(err), r.res.RebootToServicesSecs)
	again := analyzeBoot(s2, 3*time.Minute)
	again.Milestones = bootMilestones(v.snapshot()[from:])
	for k, at := range again.Milestones {
		again.Milestones[k] = at - start.Sub(v.start).Seconds()
	}
	r.res.Boot["reboot"] = again
	r.rebootFirstbootSkipped(sc, v, s2, from)
	r.rebootAgents(rctx, sc, s2, admin, before)
	r.rebootAudit(rctx, sc, admin, before)
	sum, _, code, err := s2.run2("sudo -n sha256sum " + reportPath)
	f := strings.Fields(sum)
	r.check(sc, "the report is the one sealed before the reboot", err == nil && code == 0 && len(f) > 0 && f[0] == before.report, "%s", oneLine(sum))
	return s2
}

// rebootBaseline reads the state the reboot must keep.
func (r *run) rebootBaseline(ctx context.Context, s *sshClient, admin *apiclient.Client) (beforeReboot, error) {
	b := beforeReboot{agents: map[string]int64{}, desired: map[string]string{}}
	id, _, err := s.run("cat /proc/sys/kernel/random/boot_id")
	if err != nil {
		return b, err
	}
	b.bootID = strings.TrimSpace(id)
	sum, _, code, err := s.run2("sudo -n sha256sum " + reportPath)
	f := strings.Fields(sum)
	if err != nil || code != 0 || len(f) == 0 {
		return b, fmt.Errorf("sha256sum of the report: exit %d%s", code, errSuffix(err))
	}
	b.report = f[0]
	list, err := admin.Agents(ctx)
	if err != nil {
		return b, fmt.Errorf("listing agents: %w", err)
	}
	for _, a := range list.Agents {
		b.agents[a.ID], b.desired[a.ID] = a.Generation, a.Desired
	}
	if len(b.agents) == 0 {
		return b, fmt.Errorf("no agent deployed before the reboot")
	}
	if b.audit, err = newestAudit(ctx, admin); err != nil {
		return b, err
	}
	return b, nil
}

// newestAudit pages from the head omertad verified at its start to the
// newest record (bounded: the e2e writes a few dozen).
func newestAudit(ctx context.Context, admin *apiclient.Client) (apitype.AuditRecord, error) {
	st, err := admin.AuditStatus(ctx)
	if err != nil {
		return apitype.AuditRecord{}, fmt.Errorf("audit status: %w", err)
	}
	newest := apitype.AuditRecord{Seq: st.HeadSeq, Hash: st.HeadHash}
	for range 100 {
		recs, err := admin.Audit(ctx, newest.Seq, 1000)
		if err != nil {
			return newest, fmt.Errorf("reading the audit log after %d: %w", newest.Seq, err)
		}
		if len(recs) == 0 {
			return newest, nil
		}
		newest = recs[len(recs)-1]
	}
	return newest, fmt.Errorf("more than 100,000 audit records after %d", st.HeadSeq)
}

// rebootFirstbootSkipped: omerta-firstboot.service's condition (its done
// marker) kept it from running, and nothing printed a new token (the login
// banner's "Setup token: (used)" line is not one).
func (r *run) rebootFirstbootSkipped(sc string, v *vm, s *sshClient, from int) {
	out, _, err := s.run("systemctl show -p ConditionResult -p ActiveState omerta-firstboot.service")
	again := ""
	for _, l := range v.snapshot()[from:] {
		if reAttempt.MatchString(l.Text) || reToken.MatchString(l.Text) {
			again = strings.TrimSpace(l.Text)
		}
	}
	detail := oneLine(out) + errSuffix(err)
	if again != "" {
		detail += "; console: " + again
	}
	r.check(sc, "first boot did not run again after the reboot", err == nil && strings.Contains(out, "ConditionResult=no") && again == "", "%s", detail)
}

// rebootAgents: every agent is back on its generation, and the containers
// in omertad's containerd namespace are exactly the agents' (no orphan, no
// agent without its container).
func (r *run) rebootAgents(ctx context.Context, sc string, s *sshClient, admin *apiclient.Client, before beforeReboot) {
	actx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	want := []string{}
	for id, gen := range before.agents {
		want = append(want, fmt.Sprintf("%s-g%d", id, gen))
		state := "running"
		if before.desired[id] != "enabled" {
			state = "stopped"
		}
		a, err := waitAgentState(actx, admin, id, state)
		r.check(sc, fmt.Sprintf("after the reboot: agent %s is %s on generation %d", id, state, gen), err == nil && a.Generation == gen,
			"state %q generation %d%s", a.Status.State, a.Generation, errSuffix(err))
	}
	slices.Sort(want)
	ns := config.DefaultAgentNamespace
	out, _, code, err := s.run2("sudo -n ctr -n " + ns + " containers ls -q")
	got := strings.Fields(out)
	slices.Sort(got)
	r.check(sc, "after the reboot: containerd holds exactly the agents' containers", err == nil && code == 0 && slices.Equal(got, want),
		"containerd %v, database %v%s", got, want, errSuffix(err))
	t, err := admin.RunTask(actx, sampleEntry, apitype.TaskCreate{Input: []byte(sampleTask)}, 2*time.Minute)
	r.check(sc, "after the reboot: the sample agent answers a task", err == nil && t.State == apitype.TaskSucceeded,
		"%v state %q", errOrNil(err), t.State)
	if _, ok := before.agents[clientEntry]; ok {
		r.gatewayCall(actx, sc, admin, "after the reboot: the agent still calls the echo model through the model gateway")
	}
}

// rebootAudit: omertad verified the chain when it started again, over
// every record written before the reboot, and the newest of those is
// unchanged.
func (r *run) rebootAudit(ctx context.Context, sc string, admin *apiclient.Client, before beforeReboot) {
	st, err := admin.AuditStatus(ctx)
	r.check(sc, "after the reboot: the audit chain verified intact at omertad's start, over every record from before", err == nil && st.State == apitype.ChainIntact && st.HeadSeq >= before.audit.Seq,
		"state %q, %d records, head %d (newest before the reboot %d)%s", st.State, st.Records, st.HeadSeq, before.audit.Seq, errSuffix(err))
	recs, err := admin.Audit(ctx, before.audit.Seq-1, 1)
	same := err == nil && len(recs) == 1 && recs[0].Seq == before.audit.Seq && recs[0].Hash == before.audit.Hash
	r.check(sc, "after the reboot: the newest record from before is unchanged", same, "seq %d hash %.16s%s", before.audit.Seq, before.audit.Hash, errSuffix(err))
}

// waitActive waits until each unit's own line of `systemctl is-active`
// says "active" (its exit status is 0 when any one of them is).
func waitActive(s *sshClient, d time.Duration, units ...string) (string, bool, error) {
	allActive := func(out string) bool {
		f := strings.Fields(out)
		return len(f) == len(units) && !slices.ContainsFunc(f, func(w string) bool { return w != "active" })
	}
	var out string
	var err error
	for deadline := time.Now().Add(d); ; {
		out, _, err = s.run("systemctl is-active " + strings.Join(units, " "))
		if allActive(out) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Second)
	}
	return out, err == nil && allActive(out), err
}

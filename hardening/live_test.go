package hardening

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/omertaos/omertaos/appliance/config"
)

// fakeSystem stands in for the running system's commands in the live step:
// it records what was run and answers the read-back commands the way the
// real tools print, from the files Apply wrote.
type fakeSystem struct {
	root string
	mu   sync.Mutex
	ran  []string
}

func (f *fakeSystem) run(_ context.Context, name string, args ...string) ([]byte, error) {
	f.mu.Lock()
	f.ran = append(f.ran, strings.TrimSpace(name+" "+strings.Join(args, " ")))
	f.mu.Unlock()
	switch name {
	case "nft":
		if args[0] == "list" {
			data, err := os.ReadFile(filepath.Join(f.root, nftFile))
			return data, err
		}
	case "auditctl":
		if args[0] == "-s" {
			return []byte("enabled 1\nfailure 1\n"), nil
		}
		data, err := os.ReadFile(filepath.Join(f.root, auditFile))
		var rules []string
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "-w") || strings.HasPrefix(l, "-a") {
				rules = append(rules, l)
			}
		}
		return []byte(strings.Join(rules, "\n") + "\n"), err
	case "mount":
		// mount(8) on a real system changes /proc/self/mountinfo.
		mp := args[len(args)-1]
		p := filepath.Join(f.root, mountinfo)
		data, _ := os.ReadFile(p)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		lines = append(lines, "99 1 0:99 / "+mp+" rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw")
		return nil, os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	}
	return nil, nil
}

// TestLiveStep drives the live step against a fake /proc under a temp root:
// /proc/sys values are written, mounts are remounted, loaded modules are
// removed, and the nft, audit, sshd and journald commands are run, then
// read back.
func TestLiveStep(t *testing.T) {
	root := fixtureRoot(t)
	for _, c := range Controls(config.ProfileEnterprise) {
		if strings.HasPrefix(c.ID, "sysctl.") && c.ID != "sysctl.kernel.yama.ptrace_scope" {
			key := strings.TrimPrefix(c.ID, "sysctl.")
			p := filepath.Join(root, procSysPath(key))
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, []byte("7\n"), 0o644)
		}
	}
	os.MkdirAll(filepath.Join(root, "proc/self"), 0o755)
	os.WriteFile(filepath.Join(root, mountinfo), []byte("22 1 259:2 / / rw,relatime - ext4 /dev/root rw\n30 22 0:25 / /tmp rw,nosuid,nodev - tmpfs tmpfs rw\n"), 0o644)
	os.WriteFile(filepath.Join(root, "proc/modules"), []byte("overlay 151552 0 - Live 0x0\n"), 0o644)
	os.WriteFile(filepath.Join(root, procCmdline), []byte("BOOT_IMAGE=/vmlinuz "+strings.Join(KernelCmdline(config.ProfileEnterprise), " ")+"\n"), 0o644)
	for _, b := range []string{"usr/sbin/nft", "usr/sbin/auditctl", "usr/bin/systemctl"} {
		os.MkdirAll(filepath.Join(root, filepath.Dir(b)), 0o755)
		os.WriteFile(filepath.Join(root, b), nil, 0o755)
	}

	fake := &fakeSystem{root: root}
	opts := Options{Root: root, Profile: config.ProfileEnterprise, Site: site(false), Live: true, Runner: fake.run, Now: fixedNow}
	applied, err := Apply(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]Result{}
	for _, r := range applied.Results {
		byID[r.ID] = r
	}
	if got, _ := os.ReadFile(filepath.Join(root, "proc/sys/kernel/kptr_restrict")); string(got) != "2\n" {
		t.Errorf("/proc/sys/kernel/kptr_restrict = %q, want 2", got)
	}
	if r := byID["sysctl.kernel.kptr_restrict"]; r.Result != Fixed || !strings.Contains(r.Actual, "configured and running") {
		t.Errorf("kptr_restrict: %s %q", r.Result, r.Actual)
	}
	// The fake kernel has no Yama: reported, not failed.
	if r := byID["sysctl.kernel.yama.ptrace_scope"]; r.Result != NotApplicable {
		t.Errorf("ptrace_scope without Yama: %s %q", r.Result, r.Actual)
	}
	if r := byID["kernel.cmdline.lockdown"]; r.Result != Pass || !strings.Contains(r.Actual, procCmdline) {
		t.Errorf("cmdline read live: %s %q", r.Result, r.Actual)
	}
	if r := byID["fs.tmp.noexec"]; r.Result != Fixed || !strings.Contains(r.Actual, "noexec") {
		t.Errorf("fs.tmp.noexec: %s %q", r.Result, r.Actual)
	}
	if r := byID["nft.admitted-ports"]; r.Result != Fixed || !strings.Contains(r.Actual, "loaded ruleset") {
		t.Errorf("nft.admitted-ports: %s %q", r.Result, r.Actual)
	}
	if r := byID["audit.identity"]; r.Result != Fixed || !strings.Contains(r.Actual, "loaded") {
		t.Errorf("audit.identity: %s %q", r.Result, r.Actual)
	}
	// Enterprise's -e 2 is in the file, but the fake kernel is not locked
	// until the rules load at boot: the check must say so.
	if r := byID["audit.immutable"]; r.Result != Fail || !strings.Contains(r.Actual, "not locked") {
		t.Errorf("audit.immutable: %s %q", r.Result, r.Actual)
	}
	for _, want := range []string{
		"mount -o remount,noexec /tmp",
		"mount /dev/shm",
		"nft -f /etc/nftables.conf",
		"augenrules --load",
		"systemctl try-reload-or-restart ssh.service",
		"systemctl restart systemd-journald.service",
	} {
		if !slices.Contains(fake.ran, want) {
			t.Errorf("live step did not run %q; ran %q", want, fake.ran)
		}
	}
}

// TestNftRulesetLoads loads the rendered ruleset into a real nftables in a
// network namespace of its own, twice (reload must work), and reads it
// back with the same parser the live check uses.
func TestNftRulesetLoads(t *testing.T) {
	nft, err := exec.LookPath("nft")
	if err != nil {
		t.Skip("nft is not installed (apt-get install nftables); the ruleset is checked by the golden files only")
	}
	if os.Geteuid() != 0 {
		t.Skipf("needs root, or a user namespace to be root in, to create a network namespace for nft (%v)", usernsErr)
	}
	root := t.TempDir()
	s := site(true)
	s.Console.Port = 8443
	s.Gateway.Enabled = true
	s.Gateway.Port = 8081
	if _, err := Apply(context.Background(), Options{Root: root, Profile: config.ProfileUser, Site: s}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, nftFile)
	script := nft + " -f " + file + " && " + nft + " -f " + file + " && " + nft + " list table inet " + nftTable
	out, err := exec.Command("unshare", "-n", "sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("loading the ruleset: %v\n%s", err, out)
	}
	ports, drop, flush := nftParse(string(out))
	if !drop || flush || !slices.Equal(ports, []int{22, 8443}) {
		t.Errorf("loaded ruleset: ports %v, policy drop %t, flush %t\n%s", ports, drop, flush, out)
	}
	// nft prints the bridge's rules back as written, which the check of
	// the loaded ruleset (nft.agents-gateway) relies on.
	want := []string{
		`iifname "omerta0" ip daddr 10.88.0.1 tcp dport 8081 accept`,
		`iifname "omerta0" ip daddr 10.88.0.1 tcp dport 53 accept`,
		`iifname "omerta0" ip daddr 10.88.0.1 udp dport 53 accept`,
	}
	if got := linkRules(string(out)); !slices.Equal(got, want) {
		t.Errorf("loaded ruleset: bridge rules %q, want %q\n%s", got, want, out)
	}
}

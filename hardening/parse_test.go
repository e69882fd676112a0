package hardening

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/omertaos/omertaos/appliance/config"
)

func TestNormaliseSysctlKey(t *testing.T) {
	for in, want := range map[string]string{
		"kernel.kptr_restrict":               "kernel.kptr_restrict",
		"kernel/kptr_restrict":               "kernel.kptr_restrict",
		"net/ipv4/conf/eth0.100/rp_filter":   "net.ipv4.conf.eth0/100.rp_filter",
		" net.ipv4.conf.all.log_martians ":   "net.ipv4.conf.all.log_martians",
		"net.ipv4.conf.enp1s0/100.rp_filter": "net.ipv4.conf.enp1s0/100.rp_filter",
	} {
		if got := normaliseSysctlKey(in); got != want {
			t.Errorf("normaliseSysctlKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseSysctl(t *testing.T) {
	got := parseSysctl([]byte("# comment\n; also\nkernel.sysrq=0\n-fs.protected_fifos = 1\nnet.ipv4.ip_local_port_range = 32768\t60999\nbroken line\n"))
	want := [][2]string{{"kernel.sysrq", "0"}, {"fs.protected_fifos", "1"}, {"net.ipv4.ip_local_port_range", "32768 60999"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Error(diff)
	}
}

func TestSysctlPrecedence(t *testing.T) {
	root := t.TempDir()
	write := func(p, s string) {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(root, p), []byte(s), 0o644)
	}
	write("/usr/lib/sysctl.d/50-x.conf", "kernel.sysrq = 16\n")
	write("/usr/lib/sysctl.d/70-y.conf", "kernel.sysrq = 1\n")
	write("/etc/sysctl.d/70-y.conf", "kernel.sysrq = 0\n") // hides /usr/lib's 70-y.conf
	write("/etc/sysctl.conf", "kernel.dmesg_restrict = 1\n")
	e := testEnv(t, root)
	eff, _, err := e.sysctlConfig()
	if err != nil {
		t.Fatal(err)
	}
	if s := eff["kernel.sysrq"]; s.Value != "0" || s.File != "/etc/sysctl.d/70-y.conf" {
		t.Errorf("kernel.sysrq = %+v", s)
	}
	if s := eff["kernel.dmesg_restrict"]; s.Value != "1" || s.File != "/etc/sysctl.conf" {
		t.Errorf("kernel.dmesg_restrict = %+v", s)
	}
}

func TestCmdlineHas(t *testing.T) {
	for _, tc := range []struct {
		cmdline, want string
		accept        []string
		ok            bool
		tok           string
	}{
		{"root=/dev/sda1 slab_nomerge quiet", "slab_nomerge", nil, true, "slab_nomerge"},
		{"root=/dev/sda1 quiet", "slab_nomerge", nil, false, ""},
		{"init_on_alloc=1 init_on_alloc=0", "init_on_alloc=1", nil, false, "init_on_alloc=0"},
		{"lockdown=confidentiality", "lockdown=integrity", []string{"lockdown=confidentiality"}, true, "lockdown=confidentiality"},
		{"lockdown=none", "lockdown=integrity", []string{"lockdown=confidentiality"}, false, "lockdown=none"},
		{"page_alloc.shuffle=1\n", "page_alloc.shuffle=1", nil, true, "page_alloc.shuffle=1"},
	} {
		ok, tok := cmdlineHas(tc.cmdline, tc.want, tc.accept)
		if ok != tc.ok || tok != tc.tok {
			t.Errorf("cmdlineHas(%q, %q) = %t, %q; want %t, %q", tc.cmdline, tc.want, ok, tok, tc.ok, tc.tok)
		}
	}
}

func TestNftParse(t *testing.T) {
	for _, tc := range []struct {
		text        string
		ports       []int
		drop, flush bool
	}{
		{"table inet omerta {\n chain input {\n type filter hook input priority filter; policy drop;\n tcp dport { 22, 443 } accept\n }\n}", []int{22, 443}, true, false},
		{"flush ruleset\ntable inet filter {\n chain input {\n type filter hook input priority 0; policy accept;\n tcp dport 443 accept\n }\n}", []int{443}, false, true},
		{"# flush ruleset\n tcp dport 8443 accept", []int{8443}, false, false},
		// A rule for one link is not a port of the host's.
		{"tcp dport 443 accept\n\tiifname \"omerta0\" ip daddr 10.88.0.1 tcp dport 8080 accept", []int{443}, false, false},
	} {
		ports, drop, flush := nftParse(tc.text)
		if !cmp.Equal(ports, tc.ports) || drop != tc.drop || flush != tc.flush {
			t.Errorf("nftParse(%q) = %v %t %t", tc.text, ports, drop, flush)
		}
	}
}

func TestMountParsing(t *testing.T) {
	fstab := []byte("# c\nUUID=x / ext4 errors=remount-ro 0 1\ntmpfs /tmp tmpfs nosuid,nodev 0 0\n/dev/sdb1 /mnt/my\\040disk ext4 defaults 0 2\n")
	if opts, _, ok := fstabOptions(fstab, "/tmp"); !ok || !cmp.Equal(opts, []string{"nosuid", "nodev"}) {
		t.Errorf("fstab /tmp = %v %t", opts, ok)
	}
	if _, _, ok := fstabOptions(fstab, "/mnt/my disk"); !ok {
		t.Error("escaped mount point not found")
	}
	mi := []byte("30 22 0:25 / /tmp rw,nosuid,nodev shared:5 - tmpfs tmpfs rw\n31 30 0:26 / /tmp rw,nosuid,nodev,noexec - tmpfs tmpfs rw\n")
	if opts, _, ok := mountinfoOptions(mi, "/tmp"); !ok || !cmp.Equal(opts, []string{"rw", "nosuid", "nodev", "noexec"}) {
		t.Errorf("mountinfo /tmp (topmost) = %v %t", opts, ok)
	}
}

func TestEnsureMountOptionEditsImageEntry(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, fstabFile), []byte("tmpfs /tmp tmpfs exec,mode=1777\n"), 0o644)
	e := testEnv(t, root)
	for _, o := range []string{"nodev", "noexec", "noexec"} {
		if _, err := ensureMountOption(e, "/tmp", o); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := os.ReadFile(filepath.Join(root, fstabFile))
	if want := "tmpfs /tmp tmpfs mode=1777,nodev,noexec 0 0\n"; string(got) != want {
		t.Errorf("fstab = %q, want %q", got, want)
	}
}

func TestLoginDefs(t *testing.T) {
	in := []byte("# UMASK 077\nUMASK\t\t022\nPASS_MAX_DAYS 99999\nUMASK 002\n")
	if v, _, _ := loginDefsValue(in, "UMASK"); v != "002" {
		t.Errorf("last definition wins: got %q", v)
	}
	out := setLoginDefs(in, "UMASK", "027")
	if want := "# UMASK 077\nUMASK\t027\nPASS_MAX_DAYS 99999\n"; string(out) != want {
		t.Errorf("setLoginDefs = %q, want %q", out, want)
	}
	out = setLoginDefs(out, "SHA_CRYPT_MIN_ROUNDS", "65536")
	if v, _, ok := loginDefsValue(out, "SHA_CRYPT_MIN_ROUNDS"); !ok || v != "65536" {
		t.Errorf("appended key = %q %t", v, ok)
	}
	for s, want := range map[string]bool{"027": true, "077": true, "0027": true, "022": false, "007": false, "x": false} {
		if umaskAtLeast(0o027)(s) != want {
			t.Errorf("umaskAtLeast(027)(%q) != %t", s, want)
		}
	}
}

func TestSSHDEffective(t *testing.T) {
	root := t.TempDir()
	write := func(p, s string) {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(root, p), []byte(s), 0o600)
	}
	write(sshdConfig, "Include sshd_config.d/*.conf\nPermitRootLogin yes\nX11Forwarding yes\nMatch User bob\n  PasswordAuthentication yes\n")
	write("/etc/ssh/sshd_config.d/50-a.conf", "permitrootlogin=no\nAllowUsers alice\nMatch Address 10.0.0.0/8\n  X11Forwarding no\n")
	write("/etc/ssh/sshd_config.d/60-b.conf", "PermitRootLogin prohibit-password\nAllowUsers carol\n")
	e := testEnv(t, root)
	vals, from, _, err := e.sshdEffective()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"permitrootlogin": "no",          // first value wins, drop-in before main
		"x11forwarding":   "yes",         // the Match block in 50-a.conf does not count
		"allowusers":      "alice carol", // accumulates
	}
	for k, v := range want {
		if vals[k] != v {
			t.Errorf("%s = %q (from %s), want %q", k, vals[k], from[k], v)
		}
	}
	if _, ok := vals["passwordauthentication"]; ok {
		t.Error("a Match block's setting leaked into the global section")
	}
}

func TestModprobeFirstInstallWins(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc/modprobe.d"), 0o755)
	os.MkdirAll(filepath.Join(root, "usr/lib/modprobe.d"), 0o755)
	os.WriteFile(filepath.Join(root, "usr/lib/modprobe.d/10-vendor.conf"), []byte("install usb_storage /sbin/modprobe --ignore-install usb_storage\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/modprobe.d/50-x.conf"), []byte("install usb-storage /bin/false\nblacklist usb-storage\n"), 0o644)
	e := testEnv(t, root)
	st, _, err := e.modprobeConfig()
	if err != nil {
		t.Fatal(err)
	}
	s := st["usb_storage"]
	if s == nil || s.InstallFile != "/usr/lib/modprobe.d/10-vendor.conf" || !s.Blacklisted {
		t.Errorf("usb_storage state = %+v", s)
	}
}

func TestSystemdSetting(t *testing.T) {
	root := t.TempDir()
	write := func(p, s string) {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(root, p), []byte(s), 0o644)
	}
	write("/usr/lib/systemd/journald.conf", "[Journal]\nStorage=auto\n")
	write("/usr/lib/systemd/journald.conf.d/90-vendor.conf", "[Journal]\nStorage=volatile\n")
	write("/etc/systemd/journald.conf.d/90-vendor.conf", "[Journal]\n#Storage=volatile\n") // masks the vendor drop-in
	write("/etc/systemd/journald.conf.d/60-x.conf", "[Other]\nStorage=none\n[Journal]\nStorage=persistent\n")
	e := testEnv(t, root)
	v, file, _, found, _, err := e.systemdSetting("systemd/journald.conf", "Journal", "Storage")
	if err != nil || !found || v != "persistent" || file != "/etc/systemd/journald.conf.d/60-x.conf" {
		t.Errorf("Storage = %q from %s (found %t, err %v)", v, file, found, err)
	}
}

// testEnv is the env a Check of root would use.
func testEnv(t *testing.T, root string) *env {
	t.Helper()
	opts := Options{Root: root}
	if err := opts.normalise(); err != nil {
		t.Fatal(err)
	}
	return newEnv(context.Background(), opts)
}

func TestLastAssignment(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		found    bool
		err      bool
	}{
		{"[Journal]\nStorage=auto\nStorage = persistent \n", "persistent", true, false},
		{"[Journal]\n#Storage=volatile\n;Storage=none\n", "", false, false},
		{"[Other]\nStorage=none\n[Journal]\nCompress=yes\n", "", false, false},
		{"[Journal]\nStorage=volatile\n[Other]\n[Journal]\nStorage=persistent\n", "persistent", true, false},
		// A continuation line belongs to the value, as systemd reads it.
		{"[Journal]\nStorage=per\\\nsistent\n", "per\\\nsistent", true, false},
		// What systemd would only partly understand is an error, not a guess.
		{"[Journal\nStorage=none\n", "", false, true},
		{"[Journal]\nStorage\n", "", false, true},
		{"[Journal]\nStorage=" + strings.Repeat("x", 3000) + "\n", "", false, true},
	} {
		v, found, err := lastAssignment([]byte(tc.in), "Journal", "Storage")
		if v != tc.want || found != tc.found || (err != nil) != tc.err {
			t.Errorf("lastAssignment(%q) = %q, %t, %v; want %q, %t, error %t", tc.in, v, found, err, tc.want, tc.found, tc.err)
		}
	}
}

// FuzzLastAssignment feeds arbitrary drop-ins to the systemd configuration
// parser: it returns promptly, never panics, and a value it finds is one
// the file assigned.
func FuzzLastAssignment(f *testing.F) {
	f.Add([]byte("[Journal]\nStorage=persistent\n"))
	f.Add([]byte("# c\n[Journal]\nStorage=a\\\nb\n[Coredump]\nStorage=none\n"))
	f.Add([]byte("[Journal"))
	f.Add([]byte("Storage=x\n[Journal]\n\r\nStorage=\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, found, err := lastAssignment(data, "Journal", "Storage")
		if err != nil && found {
			t.Fatalf("found %q with an error %v", v, err)
		}
		if found && !strings.Contains(string(data), "Storage") {
			t.Fatalf("found %q in a file that never assigns Storage: %q", v, data)
		}
	})
}

// TestSSHDIncludeFanOutIsBounded: sixteen levels of five drop-ins, each
// including the five of the next level, stay within the nesting limit,
// but reading them all means 5^16 parses. The reader stops at a file count
// instead of hanging the check.
func TestSSHDIncludeFanOutIsBounded(t *testing.T) {
	root := t.TempDir()
	write := func(p, s string) {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(root, p), []byte(s), 0o600)
	}
	write(sshdConfig, "Include /etc/ssh/l1/*.conf\n")
	for level := 1; level <= 15; level++ {
		for i := range 5 {
			write(fmt.Sprintf("/etc/ssh/l%d/%d.conf", level, i), fmt.Sprintf("Include /etc/ssh/l%d/*.conf\n", level+1))
		}
	}
	e := testEnv(t, root)
	done := make(chan error, 1)
	go func() { _, _, _, err := e.sshdEffective(); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "more than") {
			t.Errorf("err = %v, want the file-count refusal", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sshdEffective did not stop within 10 s")
	}
}

// TestNftAgentsGateway: the bridge's rules are there exactly when the
// site enables the agents' network, and a ruleset that admits more from
// the bridge (or the wrong port) fails the check.
func TestNftAgentsGateway(t *testing.T) {
	ctx := context.Background()
	find := func(rs []Result) Result {
		for _, r := range rs {
			if r.ID == "nft.agents-gateway" {
				return r
			}
		}
		t.Fatal("no nft.agents-gateway result")
		return Result{}
	}
	for _, enabled := range []bool{false, true} {
		root := t.TempDir()
		s := site(false)
		s.Gateway.Enabled = enabled
		opts := Options{Root: root, Profile: config.ProfileUser, Site: s}
		if _, err := Apply(ctx, opts); err != nil {
			t.Fatal(err)
		}
		rs, err := Check(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		if r := find(rs); r.Result != Pass {
			t.Errorf("gateway %t: %s %q (expected %q)", enabled, r.Result, r.Actual, r.Expected)
		}
		if !enabled {
			continue
		}
		file := filepath.Join(root, nftFile)
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, tamper := range []struct{ old, new string }{
			{"tcp dport 8080 accept", "tcp dport 22 accept"},
			{"udp dport 53 accept", "udp dport 53 accept\n\t\tiifname \"omerta0\" accept"},
		} {
			bad := strings.Replace(string(data), tamper.old, tamper.new, 1)
			if err := os.WriteFile(file, []byte(bad), 0o644); err != nil {
				t.Fatal(err)
			}
			rs, err := Check(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			if r := find(rs); r.Result != Fail {
				t.Errorf("tampered (%q): %s %q", tamper.new, r.Result, r.Actual)
			}
		}
	}
}

package hardening

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/omertaos/omertaos/appliance/config"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

var fixedNow = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }

// fixtureRoot copies testdata/root into a temp dir and gives its files the
// owners and (deliberately loose) modes of a freshly built image.
func fixtureRoot(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root, or a user namespace to be root in: the permission controls give files to root (%v)", usernsErr)
	}
	dst := t.TempDir()
	err := filepath.WalkDir("testdata/root", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("testdata/root", p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, _ := d.Info()
		return os.WriteFile(target, data, fi.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path string
		mode os.FileMode
		gid  int
	}{
		{"etc/shadow", 0o644, 0}, // too open: apply must tighten it
		{"etc/gshadow", 0o640, mappedGID(42)},
		{"etc/passwd", 0o664, 0},
		{"etc/group", 0o644, 0},
		{"etc/ssh/sshd_config", 0o644, 0},
	} {
		p := filepath.Join(dst, f.path)
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, 0, f.gid); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func site(sshEnabled bool) config.Config {
	s := config.Default()
	s.SSH.Enabled = sshEnabled
	if sshEnabled {
		s.SSH.AuthorizedKeys = []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBsvnB5jXKl8Ne3VuK5V5yJgq8+ZkZ4xk1m3k8z2s2a test"}
	}
	return s
}

// snapshot hashes every file's path, mode, owner and content under root.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		h := sha256.New()
		fmt.Fprintf(h, "%v %d %d", fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode().IsRegular():
			data, _ := os.ReadFile(p)
			h.Write(data)
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			h.Write([]byte(l))
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = hex.EncodeToString(h.Sum(nil))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestApplyThenCheckEveryProfile(t *testing.T) {
	for _, p := range config.Profiles {
		for _, ssh := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/ssh=%t", p, ssh), func(t *testing.T) {
				root := fixtureRoot(t)
				opts := Options{Root: root, Profile: p, Site: site(ssh), Now: fixedNow}
				ctx := context.Background()

				before, err := Check(ctx, opts)
				if err != nil {
					t.Fatal(err)
				}
				failingBefore := 0
				for _, r := range before {
					if r.Result == Fail {
						failingBefore++
					}
				}
				if failingBefore < 50 {
					t.Errorf("only %d controls fail on the unhardened fixture; the checks do not read real values", failingBefore)
				}

				applied, err := Apply(ctx, opts)
				if err != nil {
					t.Fatal(err)
				}
				if len(applied.Results) != len(Controls(p)) {
					t.Fatalf("Apply returned %d results for %d controls", len(applied.Results), len(Controls(p)))
				}
				counts := map[Outcome]int{}
				for _, r := range applied.Results {
					counts[r.Result]++
					switch r.Result {
					case Pass, Fixed, Informational:
					case NotChecked:
						if !strings.HasPrefix(r.ID, "kernel.cmdline.") {
							t.Errorf("%s: notchecked: %s", r.ID, r.Actual)
						}
					case NotApplicable:
						// The fixture has no /boot, cron, sudo or opasswd.
						if !strings.HasPrefix(r.ID, "perm.") {
							t.Errorf("%s: notapplicable on a fixture that has it: %s", r.ID, r.Actual)
						}
					default:
						t.Errorf("%s: %s after apply: expected %q, actual %q", r.ID, r.Result, r.Expected, r.Actual)
					}
					if r.Waiver != "" && r.Result != Informational {
						t.Errorf("%s: waived but %s", r.ID, r.Result)
					}
					if (r.Result == Pass || r.Result == Fixed) && len(r.Evidence) == 0 {
						t.Errorf("%s: passes without evidence", r.ID)
					}
				}
				t.Logf("%s: %d controls: %v", p, len(applied.Results), counts)

				after, err := Check(ctx, opts)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range after {
					if r.Result.Drift() {
						t.Errorf("%s drifts right after apply: %s", r.ID, r.Actual)
					}
				}

				// A second apply changes nothing at all.
				snap := snapshot(t, root)
				again, err := Apply(ctx, opts)
				if err != nil {
					t.Fatal(err)
				}
				if len(again.Changed) != 0 {
					t.Errorf("second apply changed %v", again.Changed)
				}
				for _, r := range again.Results {
					if r.Result == Fixed {
						t.Errorf("%s reported fixed on the second apply", r.ID)
					}
				}
				if diff := cmp.Diff(snap, snapshot(t, root)); diff != "" {
					t.Errorf("second apply changed the tree (-before +after):\n%s", diff)
				}
				// Check changes nothing either.
				if _, err := Check(ctx, opts); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(snap, snapshot(t, root)); diff != "" {
					t.Errorf("Check changed the tree (-before +after):\n%s", diff)
				}
			})
		}
	}
}

// ownedOutputs are the files whose content the golden files pin.
var ownedOutputs = []string{
	sysctlFile, modprobeFile, limitsFile, coredumpFile, systemFile, journaldFile,
	profileFile, sshdFile, auditFile, nftFile, issueNetFile, motdFile, issueFile,
	fstabFile, loginDefs,
}

func TestGoldenFiles(t *testing.T) {
	for _, p := range config.Profiles {
		t.Run(string(p), func(t *testing.T) {
			root := fixtureRoot(t)
			// SSH on for enterprise, off for the others: both nft renderings get pinned.
			if _, err := Apply(context.Background(), Options{Root: root, Profile: p, Site: site(p == config.ProfileEnterprise), Now: fixedNow}); err != nil {
				t.Fatal(err)
			}
			for _, f := range ownedOutputs {
				got, err := os.ReadFile(filepath.Join(root, f))
				if err != nil {
					t.Fatal(err)
				}
				golden := filepath.Join("testdata", "golden", string(p), strings.TrimPrefix(f, "/"))
				if *update {
					if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(golden, got, 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run go test -update to create it)", err)
				}
				if diff := cmp.Diff(string(want), string(got)); diff != "" {
					t.Errorf("%s differs from %s (-want +got):\n%s", f, golden, diff)
				}
			}
		})
	}
}

func TestEmptyRoot(t *testing.T) {
	root := t.TempDir()
	applied, err := Apply(context.Background(), Options{Root: root, Profile: config.ProfileEnterprise, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range applied.Results {
		if r.Result.Drift() {
			t.Errorf("%s: %s: %s", r.ID, r.Result, r.Actual)
		}
	}
	// Account files are never created out of nothing.
	for _, f := range []string{"etc/shadow", "etc/passwd", "etc/login.defs", "etc/ssh/sshd_config.d/50-omerta.conf"} {
		if _, err := os.Stat(filepath.Join(root, f)); err == nil {
			t.Errorf("%s was created in an empty root", f)
		}
	}
}

// TestDriftIsDetected changes the hardened tree the way an administrator or
// a package could, and expects exactly the affected control to fail.
func TestDriftIsDetected(t *testing.T) {
	cases := []struct {
		name    string
		control string
		tamper  func(root string) error
		actual  string
	}{
		{"later sysctl file overrides", "sysctl.kernel.kptr_restrict", func(r string) error {
			return os.WriteFile(filepath.Join(r, "etc/sysctl.d/99-zzz-debug.conf"), []byte("kernel.kptr_restrict=0\n"), 0o644)
		}, "0 (set by /etc/sysctl.d/99-zzz-debug.conf)"},
		{"earlier sshd drop-in wins", "ssh.permitrootlogin", func(r string) error {
			return os.WriteFile(filepath.Join(r, "etc/ssh/sshd_config.d/10-early.conf"), []byte("PermitRootLogin yes\n"), 0o600)
		}, "PermitRootLogin yes (from /etc/ssh/sshd_config.d/10-early.conf)"},
		{"earlier modprobe file re-enables", "kmod.sctp", func(r string) error {
			return os.WriteFile(filepath.Join(r, "etc/modprobe.d/00-sctp.conf"), []byte("install sctp /sbin/modprobe --ignore-install sctp\n"), 0o644)
		}, "install sctp /sbin/modprobe --ignore-install sctp (in /etc/modprobe.d/00-sctp.conf) loads it"},
		{"shadow world-readable", "perm.etc-shadow", func(r string) error {
			return os.Chmod(filepath.Join(r, "etc/shadow"), 0o644)
		}, "uid 0, gid 0, mode 0644"},
		{"umask loosened", "login-defs.umask", func(r string) error {
			p := filepath.Join(r, "etc/login.defs")
			data, _ := os.ReadFile(p)
			return os.WriteFile(p, setLoginDefs(data, "UMASK", "022"), 0o644)
		}, "UMASK 022"},
		{"journald volatile", "journald.storage", func(r string) error {
			return os.WriteFile(filepath.Join(r, "etc/systemd/journald.conf.d/99-volatile.conf"), []byte("[Journal]\nStorage=volatile\n"), 0o644)
		}, "Storage=volatile (from /etc/systemd/journald.conf.d/99-volatile.conf)"},
		{"ruleset flushes", "nft.preserve-runtime-chains", func(r string) error {
			p := filepath.Join(r, "etc/nftables.conf")
			data, _ := os.ReadFile(p)
			return os.WriteFile(p, append([]byte("flush ruleset\n"), data...), 0o755)
		}, "flushes the whole ruleset, which deletes containerd's and CNI's rules on reload"},
		{"tmp exec allowed", "fs.tmp.noexec", func(r string) error {
			p := filepath.Join(r, "etc/fstab")
			data, _ := os.ReadFile(p)
			return os.WriteFile(p, []byte(strings.ReplaceAll(string(data), "nr_inodes=1m,nodev,nosuid,noexec", "nr_inodes=1m,nodev,nosuid")), 0o644)
		}, "fstab options mode=1777,strictatime,size=50%,nr_inodes=1m,nodev,nosuid"},
		{"first boot overwrites issue", "banner.issue", func(r string) error {
			return os.WriteFile(filepath.Join(r, "etc/issue"), []byte("Debian GNU/Linux 13 \\n \\l\n"), 0o644)
		}, "legal notice missing; names the OS (\"debian\")"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := fixtureRoot(t)
			opts := Options{Root: root, Profile: config.ProfilePro, Site: site(true), Now: fixedNow}
			if _, err := Apply(context.Background(), opts); err != nil {
				t.Fatal(err)
			}
			if err := tc.tamper(root); err != nil {
				t.Fatal(err)
			}
			results, err := Check(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			var drifted []string
			for _, r := range results {
				if r.Result.Drift() {
					drifted = append(drifted, r.ID)
				}
				if r.ID == tc.control {
					if r.Result != Fail {
						t.Errorf("%s: %s, want fail", r.ID, r.Result)
					}
					if r.Actual != tc.actual {
						t.Errorf("%s actual = %q, want %q", r.ID, r.Actual, tc.actual)
					}
				}
			}
			if len(drifted) != 1 || drifted[0] != tc.control {
				t.Errorf("drifted controls %v, want only %s", drifted, tc.control)
			}
			// Apply repairs it (except sshd/modprobe overrides in files we do
			// not own, which an administrator must remove).
		})
	}
}

func TestControlsPerProfile(t *testing.T) {
	ids := map[string]bool{}
	for _, c := range catalog() {
		if ids[c.ID] {
			t.Errorf("duplicate control ID %s", c.ID)
		}
		ids[c.ID] = true
		if c.Title == "" || len(c.Profiles) == 0 || c.check == nil {
			t.Errorf("%s: incomplete control", c.ID)
		}
	}
	user, pro, ent := len(Controls(config.ProfileUser)), len(Controls(config.ProfilePro)), len(Controls(config.ProfileEnterprise))
	if !(user < pro && pro < ent) || ent != len(catalog()) {
		t.Errorf("profiles should nest: user %d < pro %d < enterprise %d = all %d", user, pro, ent, len(catalog()))
	}
	for _, id := range []string{"audit.immutable", "kmod.usb-storage", "kernel.cmdline.lockdown"} {
		for _, p := range []config.Profile{config.ProfileUser, config.ProfilePro} {
			for _, c := range Controls(p) {
				if c.ID == id {
					t.Errorf("%s is in %s; it is enterprise only", id, p)
				}
			}
		}
	}
	waived := 0
	for _, c := range Controls(config.ProfileUser) {
		if c.Waiver != "" {
			waived++
		}
	}
	if waived != 2 {
		t.Errorf("user profile has %d waivers, want 2 (ip_forward, overlay)", waived)
	}
	t.Logf("controls: user %d, pro %d, enterprise %d", user, pro, ent)
}

func TestKernelCmdline(t *testing.T) {
	got := KernelCmdline(config.ProfileEnterprise)
	want := []string{"slab_nomerge", "init_on_alloc=1", "page_alloc.shuffle=1", "randomize_kstack_offset=on", "vsyscall=none", "init_on_free=1", "pti=on", "debugfs=off", "lockdown=integrity"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("KernelCmdline(enterprise) (-want +got):\n%s", diff)
	}
	if n := len(KernelCmdline(config.ProfileUser)); n != 5 {
		t.Errorf("user has %d parameters, want 5", n)
	}

	// The image writes /etc/kernel/cmdline from KernelCmdline; the checks then pass.
	root := t.TempDir()
	line := "root=PARTUUID=x rw " + strings.Join(got, " ") + "\n"
	os.MkdirAll(filepath.Join(root, "etc/kernel"), 0o755)
	os.WriteFile(filepath.Join(root, imageCmdline), []byte(line), 0o644)
	results, err := Check(context.Background(), Options{Root: root, Profile: config.ProfileEnterprise, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range results {
		if strings.HasPrefix(r.ID, "kernel.cmdline.") {
			n++
			if r.Result != Pass {
				t.Errorf("%s: %s: %s", r.ID, r.Result, r.Actual)
			}
		}
	}
	if n != len(got) {
		t.Errorf("%d cmdline checks, want %d", n, len(got))
	}
}

func TestLiveRequiresRealRoot(t *testing.T) {
	_, err := Apply(context.Background(), Options{Root: t.TempDir(), Live: true})
	if err == nil || !strings.Contains(err.Error(), "live mode") {
		t.Fatalf("Apply with Live on a temp root: err = %v, want a refusal", err)
	}
	_, err = Check(context.Background(), Options{Root: t.TempDir(), Profile: "gold"})
	if err == nil || !strings.Contains(err.Error(), `profile "gold"`) {
		t.Fatalf("bad profile: err = %v", err)
	}
}

// TestApplyErrorIsRecorded: a control that cannot be applied becomes an
// error result naming why, and the other controls are still applied.
func TestApplyErrorIsRecorded(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	// login.defs as a directory: reading it fails, so does editing it.
	os.MkdirAll(filepath.Join(root, "etc/login.defs"), 0o755)
	applied, err := Apply(context.Background(), Options{Root: root, Profile: config.ProfileUser, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	errs := 0
	for _, r := range applied.Results {
		if strings.HasPrefix(r.ID, "login-defs.") {
			if r.Result != Error || !strings.Contains(r.Actual, "could not apply") {
				t.Errorf("%s: %s %q", r.ID, r.Result, r.Actual)
			}
			errs++
		} else if r.Result.Drift() {
			t.Errorf("%s: %s %q", r.ID, r.Result, r.Actual)
		}
	}
	if errs == 0 {
		t.Error("no login-defs results")
	}
}

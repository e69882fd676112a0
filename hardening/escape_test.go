package hardening

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/omertaos/omertaos/appliance/config"
)

// TestApplyStaysInsideRoot points files and directories of an image tree
// at a directory outside it, by absolute links and by relative links
// climbing out; inside the root both resolve to a copy of the outside
// path, except opasswd's, which resolves to nothing. Before rootfs, Apply
// followed them: it chmodded and chowned the outside gshadow, wrote its
// sysctl and sshd drop-ins into the outside directories and linked
// nftables.service there. Now every change lands inside the root and the
// outside tree is left exactly as it was.
func TestApplyStaysInsideRoot(t *testing.T) {
	root := fixtureRoot(t)
	outside := t.TempDir()
	put := func(p, data string, mode os.FileMode) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	relink := func(target, p string) {
		t.Helper()
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	// What the absolute links name exists inside the root too, so the
	// controls have something to act on there.
	mirror := filepath.Join(root, outside)
	put(filepath.Join(outside, "gshadow"), "root:*::\n", 0o666)
	// Owned by someone else, so that a chown through the link would show.
	// A user namespace maps no other id; there the mode alone shows.
	_ = os.Chown(filepath.Join(outside, "gshadow"), 4242, 4242)
	put(filepath.Join(mirror, "gshadow"), "root:*::\n", 0o644)
	relink(filepath.Join(outside, "gshadow"), filepath.Join(root, "etc/gshadow"))

	put(filepath.Join(outside, "sysctl.d/00-keep.conf"), "kernel.sysrq = 1\n", 0o644)
	if err := os.MkdirAll(filepath.Join(mirror, "sysctl.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	relink(filepath.Join(outside, "sysctl.d"), filepath.Join(root, "etc/sysctl.d"))

	put(filepath.Join(outside, "system/keep.service"), "[Unit]\n", 0o644)
	if err := os.MkdirAll(filepath.Join(mirror, "system"), 0o755); err != nil {
		t.Fatal(err)
	}
	relink(filepath.Join(outside, "system"), filepath.Join(root, "etc/systemd/system"))

	climb := strings.Repeat("../", 32) + strings.TrimPrefix(outside, "/")
	put(filepath.Join(outside, "sshd_config.d/keep.conf"), "PermitRootLogin yes\n", 0o644)
	if err := os.MkdirAll(filepath.Join(mirror, "sshd_config.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	relink(climb+"/sshd_config.d", filepath.Join(root, "etc/ssh/sshd_config.d"))
	put(filepath.Join(outside, "opasswd"), "", 0o666)
	relink(climb+"/opasswd", filepath.Join(root, "etc/security/opasswd"))

	before := snapshot(t, outside)
	opts := Options{Root: root, Profile: config.ProfileEnterprise, Site: site(true), Now: fixedNow}
	applied, err := Apply(context.Background(), opts)
	if diff := cmp.Diff(before, snapshot(t, outside)); diff != "" {
		t.Fatalf("Apply changed files outside the root (-before +after):\n%s", diff)
	}
	if err != nil {
		t.Fatal(err)
	}

	// The changes landed inside the root, where the links lead there.
	if fi, err := os.Stat(filepath.Join(mirror, "gshadow")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("gshadow inside the root: %v, %v; want mode 0640", fi, err)
	}
	for _, p := range []string{"sysctl.d/" + filepath.Base(sysctlFile), "sshd_config.d/" + filepath.Base(sshdFile)} {
		if _, err := os.Stat(filepath.Join(mirror, p)); err != nil {
			t.Errorf("drop-in not written inside the root: %v", err)
		}
	}
	if l, err := os.Readlink(filepath.Join(mirror, "system/sysinit.target.wants/nftables.service")); err != nil || !strings.HasSuffix(l, nftService) {
		t.Errorf("nftables.service not enabled inside the root: %q, %v", l, err)
	}
	byID := map[string]Result{}
	for _, r := range applied.Results {
		byID[r.ID] = r
	}
	if r := byID["perm.etc-opasswd"]; r.Result != NotApplicable {
		t.Errorf("opasswd links out of the root: %s %q, want notapplicable", r.Result, r.Actual)
	}
	for _, id := range []string{"perm.etc-gshadow", "sysctl.kernel.sysrq", "nft.service-enabled", "ssh.permitrootlogin"} {
		if r := byID[id]; r.Result.Drift() {
			t.Errorf("%s after apply: %s %q", id, r.Result, r.Actual)
		}
	}
}

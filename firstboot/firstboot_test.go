package firstboot

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/rootfs"
	"github.com/omertaos/omertaos/appliance/store"
	"github.com/omertaos/omertaos/firstboot/report"
)

func TestRunCompletes(t *testing.T) {
	root := newTestRoot(t, map[string]string{"/etc/omerta/omerta.yaml": goodSite})
	var out bytes.Buffer
	opts := testOptions(root, &out)
	var notes []string
	opts.Notify = func(s string) error { notes = append(notes, s); return nil }
	res, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	if res.Attempts != 1 || res.AlreadyDone {
		t.Errorf("Result = %+v, want 1 attempt", res)
	}

	// The console lines, exactly as contracts.md spells them.
	lines := linesOf(&out)
	want := []string{`omerta-firstboot: attempt 1 starting \(from the beginning\)`}
	for i, n := range StepNames() {
		want = append(want, fmt.Sprintf(`omerta-firstboot: step %d/9 %s: running`, i+1, regexp.QuoteMeta(n)))
		want = append(want, fmt.Sprintf(`omerta-firstboot: step %d/9 %s: done in [0-9.]+(µs|ms|s)|0s`, i+1, regexp.QuoteMeta(n)))
	}
	want = append(want,
		`omerta-firstboot: first boot complete`,
		`OMERTAOS is ready\.`,
		`  Console:          https://192\.0\.2\.10:443/`,
		`  TLS fingerprint:  SHA256:([0-9A-F]{2}:){31}[0-9A-F]{2}`,
		`  Setup token:      [a-z2-7]{32}   \(single use, valid until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)`,
		`  Report key:       SHA256:[0-9a-f]{64}`,
		`omerta-firstboot: the Lynis audit runs next, in the background; its result is sealed into the report when it ends`,
	)
	if len(lines) != len(want) {
		t.Fatalf("got %d console lines, want %d:\n%s", len(lines), len(want), out.String())
	}
	for i := range want {
		if !regexp.MustCompile("^(" + want[i] + ")$").MatchString(lines[i]) {
			t.Errorf("console line %d = %q, want /%s/", i+1, lines[i], want[i])
		}
	}

	// The token appears only after hardening was verified.
	tok, err := readToken(under(root, TokenPath))
	if err != nil {
		t.Fatal(err)
	}
	verified := strings.Index(out.String(), "harden-verify: done")
	if at := strings.Index(out.String(), tok.Token); at < verified {
		t.Errorf("token printed at %d, before harden-verify finished at %d", at, verified)
	}

	// Files and their modes.
	for p, mode := range map[string]os.FileMode{
		SigningKeyPath: 0o600, TLSKeyPath: 0o600, SigningPubPath: 0o644, TLSCertPath: 0o644,
		TokenPath: 0o600, JournalPath: 0o600, ReportPath: 0o644, ReportHTMLPath: 0o644, DonePath: 0o644,
		IssuePath: 0o600, AdminKeysPath: 0o600, KeysDir: 0o700 | os.ModeDir,
	} {
		fi, err := os.Stat(under(root, p))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), mode)
		}
	}
	issue, _ := os.ReadFile(under(root, IssuePath))
	if !strings.Contains(string(issue), tok.Token) || !strings.Contains(string(issue), "https://192.0.2.10:443/") {
		t.Errorf("login banner lacks the token or URL:\n%s", issue)
	}

	// The report verifies with the device key and says what happened.
	data, _ := os.ReadFile(under(root, ReportPath))
	pubText, _ := os.ReadFile(under(root, SigningPubPath))
	pub, err := report.ParsePublicKey(pubText)
	if err != nil {
		t.Fatal(err)
	}
	v, err := report.Verify(data, pub)
	if err != nil || !v.OK() {
		t.Fatalf("report does not verify: %v %+v", err, v)
	}
	r := readReport(t, root)
	h := r.Header
	if h.Attempts != 1 || h.Profile != config.ProfilePro || h.Hostname != "gpu-node-1" || h.MachineID != testMachineID || h.BootID != testBootID {
		t.Errorf("header = attempts %d profile %s host %s machine %s boot %s", h.Attempts, h.Profile, h.Hostname, h.MachineID, h.BootID)
	}
	if h.Image.Version != "0.1.0-test" || h.ClockTrusted {
		t.Errorf("image %+v clock_trusted %v", h.Image, h.ClockTrusted)
	}
	if h.LynisAudit != (report.LynisAudit{Status: report.AuditDeferred}) || len(r.Addenda) != 0 || v.Audit == nil || v.Audit.Status != report.AuditPending {
		t.Errorf("lynis audit = %+v, addenda %d, verified audit %+v; want it deferred and pending", h.LynisAudit, len(r.Addenda), v.Audit)
	}
	if _, ok := h.Tools["lynis"]; ok {
		t.Errorf("tools name Lynis, which has not run: %v", h.Tools)
	}
	if h.Probe.Status != "warn" || len(r.Records) != len(fakeControls) || h.Summary[report.OutcomePass] != len(fakeControls) {
		t.Errorf("probe %s, %d records, summary %v", h.Probe.Status, len(r.Records), h.Summary)
	}
	if len(h.Steps) != 9 || h.Steps[7].Name != StepReport {
		t.Errorf("steps = %+v", h.Steps)
	}
	checkHTML(t, root)

	// The step table and the audit log.
	rows := stepTable(t, root)
	if got := stepStatuses(rows); got != "1 site done; 2 identity done; 3 keys done; 4 probe done; 5 harden-apply done; 6 harden-verify done; 7 token done; 8 report done; 9 done done; 10 lynis pending; " {
		t.Errorf("step table = %s", got)
	}
	st, err := store.Open(context.Background(), under(root, StateDBPath))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	log, err := st.AuditLog(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, a := range log {
		if a.Actor == AuditActor {
			actions = append(actions, a.Action+" "+a.Target)
		}
	}
	if len(actions) != 9 || actions[0] != "firstboot.step.done site" || actions[8] != "firstboot.step.done done" {
		t.Errorf("audit = %q", actions)
	}
	if n, err := st.VerifyAudit(context.Background()); err != nil || n < 9 {
		t.Errorf("VerifyAudit = %d, %v", n, err)
	}

	// STATUS= for every step.
	joined := strings.Join(notes, "\n")
	for i, n := range StepNames() {
		if !strings.Contains(joined, fmt.Sprintf("STATUS=First boot: step %d/9 %s", i+1, n)) {
			t.Errorf("no STATUS for step %s in %q", n, notes)
		}
	}
	if notes[len(notes)-1] != "STATUS=First boot complete" {
		t.Errorf("last notification %q", notes[len(notes)-1])
	}
}

func TestSiteApplied(t *testing.T) {
	root := newTestRoot(t, map[string]string{"/etc/omerta/omerta.yaml": goodSite})
	if _, err := Run(context.Background(), testOptions(root, nil)); err != nil {
		t.Fatal(err)
	}
	read := func(p string) string {
		b, err := os.ReadFile(under(root, p))
		if err != nil {
			t.Errorf("%v", err)
		}
		return string(b)
	}
	if got := read(HostnamePath); got != "gpu-node-1\n" {
		t.Errorf("hostname = %q", got)
	}
	wantNet := `# Written by omerta first boot from network.interfaces[0] of the site configuration.
[Match]
Name=enp1s0

[Network]
DHCP=no
IPv6AcceptRA=no
Address=192.0.2.10/24
Address=2001:db8::10/64
Gateway=192.0.2.1
DNS=192.0.2.53
`
	if got := read(NetworkDir + "/50-omerta-00-enp1s0.network"); got != wantNet {
		t.Errorf("network file:\n%s", cmp.Diff(wantNet, got))
	}
	if got := read(NetworkDir + "/50-omerta-01-en_.network"); !strings.Contains(got, "Name=en*\n") || !strings.Contains(got, "DHCP=yes\n") {
		t.Errorf("dhcp network file:\n%s", got)
	}
	if got := read(TimesyncdDropIn); !strings.Contains(got, "[Time]\nNTP=ntp1.example.net 192.0.2.123\n") {
		t.Errorf("timesyncd drop-in:\n%s", got)
	}
	if got := read(AdminKeysPath); !strings.Contains(got, testSSHKey+"\n") {
		t.Errorf("authorized_keys:\n%s", got)
	}
	for _, p := range []string{AdminKeysPath, filepath.Dir(AdminKeysPath)} {
		fi, _ := os.Stat(under(root, p))
		if o := owner(fi); os.Geteuid() == 0 && o != [2]int{990, 990} {
			t.Errorf("%s owned by %v, want 990:990", p, o)
		}
	}
	for _, l := range []string{"/etc/systemd/system/multi-user.target.wants/ssh.service", "/etc/systemd/system/sshd.service"} {
		if target, err := os.Readlink(under(root, l)); err != nil || target != "/usr/lib/systemd/system/ssh.service" {
			t.Errorf("%s -> %q, %v", l, target, err)
		}
	}

	// The TLS certificate names the machine and is backdated.
	block, _ := pem.Decode([]byte(read(TLSCertPath)))
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(cert.DNSNames, []string{"gpu-node-1", "gpu-node-1.local"}) {
		t.Errorf("DNS SANs = %q", cert.DNSNames)
	}
	if !cmp.Equal(cert.IPAddresses, []net.IP{net.ParseIP("192.0.2.10").To4(), net.ParseIP("2001:db8::10")}) {
		t.Errorf("IP SANs = %v", cert.IPAddresses)
	}
	if d := time.Since(cert.NotBefore); d < 59*time.Minute || d > 2*time.Hour {
		t.Errorf("notBefore %v is not backdated about an hour", cert.NotBefore)
	}
	if time.Until(cert.NotAfter) < 5*365*24*time.Hour {
		t.Errorf("notAfter %v is too soon", cert.NotAfter)
	}
}

func TestSiteDisablesSSHAndDropsStaleFiles(t *testing.T) {
	root := newTestRoot(t, map[string]string{
		"/etc/omerta/omerta.yaml":                                 "profile: user\n",
		NetworkDir + "/50-omerta-03-old.network":                  "stale\n",
		"/etc/systemd/system/multi-user.target.wants/ssh.service": "",
		TimesyncdDropIn: "stale\n",
	})
	wants := under(root, "/etc/systemd/system/multi-user.target.wants/ssh.service")
	os.Remove(wants)
	if err := os.Symlink("/usr/lib/systemd/system/ssh.service", wants); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), testOptions(root, nil)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{NetworkDir + "/50-omerta-03-old.network", TimesyncdDropIn, "/etc/systemd/system/multi-user.target.wants/ssh.service", AdminKeysPath} {
		if _, err := os.Lstat(under(root, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists (%v)", p, err)
		}
	}
	// No hostname configured: derived from the machine-id.
	if b, _ := os.ReadFile(under(root, HostnamePath)); string(b) != "omerta-4f1b2c\n" {
		t.Errorf("hostname = %q", b)
	}
}

func TestBadSiteLayerKeepsDefaults(t *testing.T) {
	root := newTestRoot(t, map[string]string{
		"/etc/omerta/omerta.yaml": "profile: pro\n",
		"/efi/omerta.yaml":        "profile: superuser\nhostname: x\n",
	})
	var out bytes.Buffer
	if _, err := Run(context.Background(), testOptions(root, &out)); err != nil {
		t.Fatal(err)
	}
	wantLine := `omerta-firstboot: site configuration /efi/omerta.yaml: profile: "superuser": must be one of user, pro, enterprise`
	if !strings.Contains(out.String(), wantLine+"\n") {
		t.Errorf("console lacks %q:\n%s", wantLine, out.String())
	}
	h := readReport(t, root).Header
	if h.Profile != config.ProfilePro {
		t.Errorf("profile %s, want pro from the valid layer", h.Profile)
	}
	if len(h.Site.Problems) != 1 || !strings.Contains(h.Site.Problems[0], "/efi/omerta.yaml") || !strings.Contains(h.Site.Problems[0], "profile") {
		t.Errorf("site problems = %q", h.Site.Problems)
	}
	if len(h.Site.Sources) != len(SiteConfigPaths) || !h.Site.Sources[1].Present || h.Site.Sources[1].Error == "" || h.Site.Sources[1].Path != "/efi/omerta.yaml" {
		t.Errorf("site sources = %+v", h.Site.Sources)
	}
}

// TestSiteConfigInstalled checks that the configuration first boot resolved
// from the ESP becomes /etc/omerta/omerta.yaml, which omertad and
// `omerta harden --check` read later.
func TestSiteConfigInstalled(t *testing.T) {
	image := "profile: user\nhostname: from-image\n"
	root := newTestRoot(t, map[string]string{
		"/etc/omerta/omerta.yaml": image,
		"/boot/omerta.yaml":       goodSite,
	})
	if _, err := Run(context.Background(), testOptions(root, nil)); err != nil {
		t.Fatal(err)
	}
	want := config.ResolveLayers(
		config.Layer{Path: "image", Present: true, Data: []byte(image)},
		config.Layer{Path: "esp", Present: true, Data: []byte(goodSite)},
	).Config
	got, err := config.Load(under(root, config.DefaultPath))
	if err != nil {
		t.Fatalf("installed configuration does not load: %v", err)
	}
	if got.Profile != want.Profile || got.Hostname != want.Hostname || !cmp.Equal(got.SSH, want.SSH) || !cmp.Equal(got.Time, want.Time) {
		t.Errorf("installed configuration = %+v\nwant %+v", got, want)
	}
	// The report names the image's file as it was, not first boot's output.
	h := readReport(t, root).Header
	if src := h.Site.Sources[0]; src.SHA256 != sha256Hex(image) {
		t.Errorf("report's /etc layer hash %s is not the image file's", src.SHA256)
	}
}

func TestProfileFlagOverridesSite(t *testing.T) {
	root := newTestRoot(t, map[string]string{"/etc/omerta/omerta.yaml": "profile: user\n"})
	opts := testOptions(root, nil)
	opts.Profile = config.ProfileEnterprise
	if _, err := Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	if p := readReport(t, root).Header.Profile; p != config.ProfileEnterprise {
		t.Errorf("profile %s", p)
	}
	if cfg, err := config.Load(under(root, config.DefaultPath)); err != nil || cfg.Profile != config.ProfileEnterprise {
		t.Errorf("installed profile = %s, %v; want the flag's", cfg.Profile, err)
	}
}

func TestSecondRunChangesNothing(t *testing.T) {
	root := newTestRoot(t, map[string]string{"/etc/omerta/omerta.yaml": goodSite})
	if _, err := Run(context.Background(), testOptions(root, nil)); err != nil {
		t.Fatal(err)
	}
	before := rawTree(t, root)
	var out bytes.Buffer
	opts := testOptions(root, &out)
	prober := &fakeProber{}
	opts.Prober = prober
	res, err := Run(context.Background(), opts)
	if err != nil || !res.AlreadyDone {
		t.Fatalf("second Run = %+v, %v", res, err)
	}
	if got := out.String(); got != "omerta-firstboot: first boot already complete (/var/lib/omerta/firstboot/done exists); nothing changed\n" {
		t.Errorf("second run said %q", got)
	}
	if prober.calls != 0 {
		t.Errorf("second run probed %d times", prober.calls)
	}
	if d := cmp.Diff(before, rawTree(t, root)); d != "" {
		t.Errorf("second run changed files (-before +after):\n%s", d)
	}
}

// rawTree records every file's mode, size, mtime and content digest.
func rawTree(t *testing.T, root string) map[string]string {
	out := map[string]string{}
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		e := fmt.Sprintf("%v %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			e += " " + digest(b)
		}
		out[strings.TrimPrefix(p, root)] = e
		return nil
	})
	return out
}

func TestFailedStepIsReportedAndResumed(t *testing.T) {
	root := newTestRoot(t, nil)
	var out bytes.Buffer
	opts := testOptions(root, &out)
	h := &fileHardener{failApply: errors.New("writing /etc/sysctl.d/90-omerta.conf: read-only file system")}
	opts.Hardener = h
	_, err := Run(context.Background(), opts)
	var se *StepError
	if !errors.As(err, &se) || se.Step != StepHardenApply {
		t.Fatalf("Run = %v, want a StepError for harden-apply", err)
	}
	if !strings.Contains(out.String(), "omerta-firstboot: step 5/9 harden-apply: failed: applying hardening profile user: writing /etc/sysctl.d/90-omerta.conf: read-only file system\n") {
		t.Errorf("console:\n%s", out.String())
	}
	if _, err := os.Stat(under(root, TokenPath)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("token issued although hardening failed")
	}
	if got := stepStatuses(stepTable(t, root)); !strings.Contains(got, "5 harden-apply failed; 6 harden-verify pending") {
		t.Errorf("step table = %s", got)
	}

	out.Reset()
	h.failApply = nil
	prober := &fakeProber{}
	opts.Prober = prober
	if _, err := Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "omerta-firstboot: attempt 2 starting (resuming at harden-apply)\nomerta-firstboot: step 5/9 harden-apply: running\n") {
		t.Errorf("resumed run:\n%s", out.String())
	}
	if prober.calls != 0 {
		t.Errorf("the finished probe step ran again")
	}
	r := readReport(t, root)
	if r.Header.Attempts != 2 || r.Header.Steps[4].Attempts != 2 || r.Header.Steps[3].Attempts != 1 {
		t.Errorf("attempts: report %d, harden-apply %d, probe %d", r.Header.Attempts, r.Header.Steps[4].Attempts, r.Header.Steps[3].Attempts)
	}
}

func TestProbeErrorIsAVerdictNotAStop(t *testing.T) {
	root := newTestRoot(t, nil)
	opts := testOptions(root, nil)
	opts.Prober = &fakeProber{err: errors.New("reading /proc/cpuinfo: permission denied")}
	if _, err := Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	p := readReport(t, root).Header.Probe
	if p.Status != "error" || len(p.Checks) != 1 || !strings.Contains(p.Checks[0].Reason, "permission denied") {
		t.Errorf("probe = %+v", p)
	}
}

func TestLynisSkips(t *testing.T) {
	for _, tc := range []struct {
		name, site, want string
		noLynis, notLive bool
	}{
		{name: "not installed", noLynis: true, want: "Lynis is not installed"},
		{name: "disabled", site: "firstboot:\n  lynis: false\n", want: "firstboot.lynis is false in the site configuration"},
		{name: "not live", notLive: true, want: "Lynis audits the running system; only --live runs it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := newTestRoot(t, map[string]string{"/etc/omerta/omerta.yaml": tc.site})
			if tc.noLynis {
				os.Remove(under(root, LynisPath))
			}
			var out bytes.Buffer
			opts := testOptions(root, &out)
			if tc.notLive {
				opts.Lynis = nil
			}
			if _, err := Run(context.Background(), opts); err != nil {
				t.Fatal(err)
			}
			if line := "omerta-firstboot: the Lynis audit is skipped (" + tc.want + ")\n"; !strings.Contains(out.String(), line) {
				t.Errorf("console lacks %q:\n%s", line, out.String())
			}
			if la := readReport(t, root).Header.LynisAudit; la != (report.LynisAudit{Status: report.AuditSkipped, Reason: tc.want}) {
				t.Errorf("report's lynis_audit = %+v", la)
			}
			rows := stepTable(t, root)
			if last := rows[len(rows)-1]; last.Name != AuditStep || last.Status != StatusSkipped || last.Error != tc.want || last.Position != 10 {
				t.Errorf("audit row = %+v", last)
			}
			// The audit then has nothing to do but say so.
			out.Reset()
			res, err := RunAudit(context.Background(), AuditOptions{Options: opts})
			if err != nil || res.State.Status != report.AuditSkipped {
				t.Fatalf("RunAudit = %+v, %v", res, err)
			}
			if want := "omerta-lynis: audit skipped (" + tc.want + ")\n"; out.String() != want {
				t.Errorf("audit said %q, want %q", out.String(), want)
			}
			if _, err := os.Stat(under(root, AuditDonePath)); err != nil {
				t.Errorf("no done marker after a skipped audit: %v", err)
			}
		})
	}
}

func TestRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"live needs slash", Options{Root: t.TempDir(), Live: true, Prober: &fakeProber{}, Hardener: &fileHardener{}}, "live mode changes the running kernel and services, so it needs root \"/\""},
		{"relative root", Options{Root: "rel", Prober: &fakeProber{}, Hardener: &fileHardener{}}, `root "rel": must be an absolute path`},
		{"bad profile", Options{Root: t.TempDir(), Profile: "gold", Prober: &fakeProber{}, Hardener: &fileHardener{}}, `profile "gold" is not one of user, pro, enterprise`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Run(context.Background(), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestResumeRefusesAnotherProfile(t *testing.T) {
	root := newTestRoot(t, nil)
	opts := testOptions(root, nil)
	opts.Profile = config.ProfilePro
	opts.Hardener = &fileHardener{failApply: errors.New("boom")}
	if _, err := Run(context.Background(), opts); err == nil {
		t.Fatal("want the first attempt to fail")
	}
	opts.Profile = config.ProfileEnterprise
	opts.Hardener = &fileHardener{}
	_, err := Run(context.Background(), opts)
	if err == nil || !strings.Contains(err.Error(), "--profile enterprise: first boot began with profile pro") {
		t.Errorf("err = %v", err)
	}
}

func TestMachineID(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		live          bool
		wantErr       string
		wantGenerated bool
	}{
		{name: "valid", content: testMachineID + "\n"},
		{name: "uninitialized in a tree", content: "uninitialized\n", wantGenerated: true},
		{name: "missing in a tree", content: "-", wantGenerated: true},
		{name: "garbage", content: "hello\n", wantErr: `machine-id: /etc/machine-id holds "hello", not 32 lowercase hex digits`},
		{name: "zeros", content: strings.Repeat("0", 32), wantErr: `machine-id: /etc/machine-id holds "00000000000000000000000000000000", not 32 lowercase hex digits`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := newTestRoot(t, nil)
			if tc.content == "-" {
				os.Remove(under(root, MachineIDPath))
			} else {
				os.WriteFile(under(root, MachineIDPath), []byte(tc.content), 0o444)
			}
			var out bytes.Buffer
			_, err := Run(context.Background(), testOptions(root, &out))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(out.String(), "step 2/9 identity: failed: "+tc.wantErr) {
					t.Errorf("err = %v, want %q\n%s", err, tc.wantErr, out.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			mid := strings.TrimSpace(readTrim(under(root, MachineIDPath)))
			if !machineIDRE.MatchString(mid) || (mid == testMachineID) == tc.wantGenerated {
				t.Errorf("machine-id %q, generated %v", mid, tc.wantGenerated)
			}
		})
	}
}

func TestKeysKeptAndCertReissued(t *testing.T) {
	dir := t.TempDir()
	root, err := rootfs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	kp, cp := "/tls.key", "/tls.crt"
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	dns := []string{"a", "a.local"}
	c1, err := ensureTLS(root, kp, cp, dns, usableAddrs(testAddrs), now)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := ensureTLS(root, kp, cp, dns, usableAddrs(testAddrs), now.Add(time.Hour))
	if err != nil || !bytes.Equal(c1.Raw, c2.Raw) {
		t.Fatalf("a fitting certificate was reissued (%v)", err)
	}
	c3, err := ensureTLS(root, kp, cp, dns, nil, now)
	if err != nil || bytes.Equal(c1.Raw, c3.Raw) || len(c3.IPAddresses) != 0 {
		t.Fatalf("certificate not reissued for new addresses (%v)", err)
	}
	if !c1.PublicKey.(*ecdsa.PublicKey).Equal(c3.PublicKey) {
		t.Errorf("reissue changed the key")
	}
	if !c1.NotBefore.Equal(now.Add(-time.Hour)) {
		t.Errorf("notBefore %v", c1.NotBefore)
	}
	if fp := CertFingerprint(c1); !regexp.MustCompile(`^SHA256:([0-9A-F]{2}:){31}[0-9A-F]{2}$`).MatchString(fp) {
		t.Errorf("fingerprint %q", fp)
	}

	os.WriteFile(filepath.Join(dir, "signing.key"), []byte("not a key"), 0o600)
	if _, err := ensureSigningKey(root, "/signing.key", "/signing.pub"); err == nil || !strings.Contains(err.Error(), "move it aside") {
		t.Errorf("corrupt signing key: %v", err)
	}
}

func TestParseLynisReport(t *testing.T) {
	f, err := os.Open("testdata/lynis-report-debian12.dat")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ParseLynisReport(f)
	if err != nil {
		t.Fatal(err)
	}
	want := &report.Lynis{
		Version: "3.0.8", Index: 56, Suggestions: 45,
		Warnings: []string{
			"PKGS-7392: Found one or more vulnerable packages.",
			"LOGG-2138: klogd is not running, which could lead to missing kernel messages in log files",
		},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ParseLynisReport (-want +got):\n%s", d)
	}
	for _, tc := range []struct{ in, want string }{
		{"lynis_version=3.1.4\n", "report has no hardening_index line"},
		{"hardening_index=abc\n", `hardening_index "abc" is not a number from 0 to 100`},
		{"hardening_index=101\n", `hardening_index "101" is not a number from 0 to 100`},
	} {
		if _, err := ParseLynisReport(strings.NewReader(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseLynisReport(%q) = %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestUsableAddrs(t *testing.T) {
	got := usableAddrs(append(testAddrs, testAddrs[0], netipMust("::ffff:198.51.100.7"), netipMust("::"), netipMust("ff02::1")))
	want := "[192.0.2.10 198.51.100.7 2001:db8::10]"
	if fmt.Sprint(got) != want {
		t.Errorf("usableAddrs = %v, want %s", got, want)
	}
}

// TestFirstBootStaysInsideRoot prepares an image whose /var/lib/omerta is
// an absolute symlink and whose /etc/machine-id points out of the tree by
// a relative one. Before rootfs, first boot followed both onto the host:
// it wrote its journal, keys, token and database into the directory the
// link named and took the host's machine-id for the device's. Inside the
// root the links lead to the root's own copy of that path (or nowhere),
// and the directory outside is left exactly as it was.
func TestFirstBootStaysInsideRoot(t *testing.T) {
	root := newTestRoot(t, nil)
	outside := t.TempDir()
	const hostID = "0123456789abcdef0123456789abcdef"
	if err := os.WriteFile(filepath.Join(outside, "machine-id"), []byte(hostID+"\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(outside, "state"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, outside, "state"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(root, MachineIDPath)); err != nil {
		t.Fatal(err)
	}
	climb := strings.Repeat("../", 32) + strings.TrimPrefix(outside, "/")
	if err := os.Symlink(climb+"/machine-id", filepath.Join(root, MachineIDPath)); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(filepath.Join(root, StateDir)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "state"), filepath.Join(root, StateDir)); err != nil {
		t.Fatal(err)
	}
	before := hashTree(t, outside)
	if _, err := Run(context.Background(), testOptions(root, nil)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, hashTree(t, outside)); diff != "" {
		t.Fatalf("first boot changed files outside the root (-before +after):\n%s", diff)
	}
	h := readReport(t, root).Header
	if h.MachineID == hostID || !machineIDRE.MatchString(h.MachineID) {
		t.Errorf("machine-id %q: read through the link out of the root", h.MachineID)
	}
	if _, err := os.Stat(filepath.Join(root, outside, "state/firstboot/report.json")); err != nil {
		t.Errorf("the report is not where the link leads inside the root: %v", err)
	}
}

// hashTree records every entry under dir with its mode and content.
func hashTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := fi.Mode().String()
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			e += " " + hex.EncodeToString(sum[:])
		}
		out[strings.TrimPrefix(p, dir)] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

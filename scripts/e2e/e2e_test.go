package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/config"
)

// The example shipped for administrators must be a valid file.
func TestExampleSiteConfigIsValid(t *testing.T) {
	cfg, err := config.Load("../../image/site/omerta.yaml")
	if err != nil {
		t.Fatalf("image/site/omerta.yaml: %v", err)
	}
	if cfg.Profile != config.ProfilePro || !cfg.SSH.Enabled {
		t.Errorf("example decoded to profile %q, ssh %v; want pro with SSH on", cfg.Profile, cfg.SSH.Enabled)
	}
}

// The image's own /etc/omerta/omerta.yaml is the base layer of every boot.
func TestImageSiteConfigIsValid(t *testing.T) {
	if _, err := config.Load("../../image/mkosi.extra/etc/omerta/omerta.yaml"); err != nil {
		t.Fatal(err)
	}
}

// The files the test writes on the ESP decode as intended.
func TestSiteConfigRenders(t *testing.T) {
	_, pub, err := newSSHKey()
	if err != nil {
		t.Fatal(err)
	}
	data := siteConfig("pro", "omerta-e2e", pub, boolp(false))
	cfg, err := config.Parse(data, "omerta.yaml", config.Default())
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if cfg.Hostname != "omerta-e2e" || len(cfg.SSH.AuthorizedKeys) != 1 || cfg.Firstboot.LynisEnabled() {
		t.Errorf("decoded %+v", cfg)
	}
}

// Console lines as the first-boot contract prints them, bare and as
// journald forwards them to the console (with an identifier prefix).
func TestConsoleLines(t *testing.T) {
	fp := "SHA256:" + "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"
	key := "SHA256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, prefix := range []string{"", "[   52.123456] omerta[612]: "} {
		lines := []string{
			prefix + "omerta-firstboot: attempt 2 starting (resuming at harden-apply)",
			prefix + "omerta-firstboot: step 5/10 harden-apply: running",
			prefix + "omerta-firstboot: step 6/10 harden-verify: done in 1.234s",
			prefix + "omerta-firstboot: first boot complete",
			prefix + "OMERTAOS is ready.",
			prefix + "  Console:          https://10.0.2.15:443/",
			prefix + "  TLS fingerprint:  " + fp,
			prefix + "  Setup token:      abcdefghijklmnopqrstuvwxyz234567   (single use, valid until 2026-11-27T02:00:00Z)",
			prefix + "  Report key:       " + key,
		}
		if m := reAttempt.FindStringSubmatch(lines[0]); m == nil || m[1] != "2" {
			t.Errorf("attempt: %q", lines[0])
		}
		if m := reStep.FindStringSubmatch(lines[1]); m == nil || m[3] != "harden-apply" || m[4] != "running" {
			t.Errorf("step running: %q -> %q", lines[1], m)
		}
		if m := reStep.FindStringSubmatch(lines[2]); m == nil || m[5] != "1.234s" {
			t.Errorf("step done: %q -> %q", lines[2], m)
		}
		if !reComplete.MatchString(lines[3]) || !reReady.MatchString(lines[4]) {
			t.Errorf("complete/ready not matched")
		}
		if m := reConsole.FindStringSubmatch(lines[5]); m == nil || m[1] != "https://10.0.2.15:443/" {
			t.Errorf("console: %q", m)
		}
		if m := reTLS.FindStringSubmatch(lines[6]); m == nil || m[1] != fp {
			t.Errorf("tls: %q", m)
		}
		if m := reToken.FindStringSubmatch(lines[7]); m == nil || m[2] != "2026-11-27T02:00:00Z" {
			t.Errorf("token: %q", m)
		}
		if m := reKey.FindStringSubmatch(lines[8]); m == nil || m[1] != key {
			t.Errorf("key: %q", m)
		}
	}
}

func TestTokenOrder(t *testing.T) {
	mk := func(texts ...string) []line {
		var ls []line
		for i, s := range texts {
			ls = append(ls, line{At: time.Duration(i) * time.Second, Text: s})
		}
		return ls
	}
	good := mk("omerta-firstboot: step 6/10 harden-verify: done in 1s", "  Setup token:      x")
	bad := mk("  Setup token:      x", "omerta-firstboot: step 6/10 harden-verify: done in 1s")
	for name, tc := range map[string]struct {
		lines []line
		want  bool
	}{"after": {good, true}, "before": {bad, false}, "none": {mk("nothing"), false}} {
		r := &run{}
		r.checkTokenAfterHardening(name, tc.lines)
		if got := r.res.Checks[0].Pass; got != tc.want {
			t.Errorf("%s: pass %v, want %v (%s)", name, got, tc.want, r.res.Checks[0].Detail)
		}
	}
}

// readGPT and putOnESP against a real image, when one has been built.
func TestImagePartitions(t *testing.T) {
	img := "../../out/omertaos.raw"
	if _, err := os.Stat(img); err != nil {
		t.Skip("no out/omertaos.raw; run make image")
	}
	parts, err := readGPT(img)
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]partition{}
	for _, p := range parts {
		labels[p.Label] = p
	}
	if labels["ESP"].Type != espType || labels["root"].Size == 0 || labels["var"].Size == 0 {
		t.Fatalf("partitions %+v", parts)
	}
	disk := filepath.Join(t.TempDir(), "d.raw")
	if err := copySparse(img, disk); err != nil {
		t.Fatal(err)
	}
	if err := putOnESP(disk, map[string][]byte{"/omerta.yaml": []byte("profile: pro\n"), "/efi/omerta.yaml": []byte("{}\n")}); err != nil {
		t.Fatal(err)
	}
	if err := mtools("mtype", "-i", disk+"@@"+itoa(labels["ESP"].Offset), "::/omerta.yaml"); err != nil {
		t.Fatal(err)
	}
}

func itoa(n int64) string { return fmtInt(n) }

func fmtInt(n int64) string { return strconv.FormatInt(n, 10) }

// The other scenarios run beside the main one from the start (main can
// wait on them without a deadlock), the skipped one does not run, and
// every scenario's checks are kept, whether main fails or not.
func TestScenariosBesideMain(t *testing.T) {
	for _, mainFails := range []bool{false, true} {
		r := &run{}
		othersBegan := make(chan struct{})
		main := scenario{"main", false, func(ctx context.Context) error {
			for i := 0; i < 50; i++ {
				r.check("main", fmt.Sprint("before ", i), true, "")
			}
			select {
			case <-othersBegan:
			case <-time.After(time.Minute):
				t.Error("the other scenarios did not begin beside main")
			}
			if mainFails {
				return errors.New("main failed")
			}
			r.check("main", "after", true, "")
			return nil
		}}
		others := []scenario{
			{"a", false, func(context.Context) error { close(othersBegan); r.check("a", "x", true, ""); return nil }},
			{"b", true, func(context.Context) error { t.Error("skipped scenario ran"); return nil }},
			{"c", false, func(context.Context) error { r.check("c", "y", false, "z"); return nil }},
		}
		r.runScenarios(context.Background(), time.Now(), main, others)
		// 50 + "after" (or main's failure, which is a check) + a + c.
		if want := 53; len(r.res.Checks) != want {
			t.Errorf("mainFails %v: %d checks, want %d", mainFails, len(r.res.Checks), want)
		}
	}
}

// The sandboxed entry is the shipped sample tool's, with only its id and
// isolation changed, and it is a valid manifest.
func TestSandboxManifest(t *testing.T) {
	doc, err := sandboxManifest("../..")
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if m.Metadata.ID != sandboxEntry || m.Spec.Isolation != manifest.IsolationSandbox {
		t.Errorf("id %q isolation %q", m.Metadata.ID, m.Spec.Isolation)
	}
}

// A boot's milestones are each pattern's first line, and a missing one is
// left out rather than zero.
func TestBootMilestones(t *testing.T) {
	at := func(s float64, text string) line {
		return line{At: time.Duration(s * float64(time.Second)), Text: text}
	}
	got := bootMilestones([]line{
		at(8.3, "EFI stub: Loaded initrd from LINUX_EFI_INITRD_MEDIA_GUID device path"),
		at(40.2, "Booting initrd of Debian GNU/Linux 13 (trixie)."),
		at(179.7, "Welcome to Debian GNU/Linux 13 (trixie)!"),
		at(200, "Welcome to Debian GNU/Linux 13 (trixie)!"),
		at(324.0, "[  314.325720] omerta[615]: omerta-firstboot: attempt 1 starting (from the beginning)"),
	})
	want := map[string]float64{"kernel_loaded": 8.3, "initrd_systemd": 40.2, "root_systemd": 179.7, "firstboot_start": 324}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

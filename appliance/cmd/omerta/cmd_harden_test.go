package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/omertaos/omertaos/appliance/terminal"
	"github.com/omertaos/omertaos/hardening"
)

func TestHardenApplyThenCheck(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "etc/omerta"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc/omerta/omerta.yaml"), []byte("profile: enterprise\nconsole:\n  port: 8443\n"), 0o644)

	out, err := runCmd(t, "harden", "--root", dir)
	if err != nil {
		t.Fatalf("harden: %v\n%s", err, out)
	}
	if !strings.Contains(out, "profile enterprise") || !strings.Contains(out, "kmod.usb-storage") {
		t.Errorf("profile from the site configuration not used:\n%s", out)
	}
	nft, _ := os.ReadFile(filepath.Join(dir, "etc/nftables.conf"))
	if !strings.Contains(string(nft), "tcp dport 8443 accept") {
		t.Errorf("console port from the site configuration not admitted:\n%s", nft)
	}

	out, err = runCmd(t, "harden", "--root", dir, "--check")
	if err != nil || !strings.Contains(out, "no drift") {
		t.Fatalf("check after apply: %v\n%s", err, out)
	}

	os.WriteFile(filepath.Join(dir, "etc/sysctl.d/99-zzz-local.conf"), []byte("kernel.sysrq = 1\n"), 0o644)
	out, err = runCmd(t, "harden", "--root", dir, "--check")
	var ec exitCode
	if !asExit(err, &ec) || ec != 1 {
		t.Fatalf("drift: err = %v, want exit 1\n%s", err, out)
	}
	if !strings.Contains(out, "sysctl.kernel.sysrq") || !strings.Contains(out, "drift in 1 controls") {
		t.Errorf("drift output:\n%s", out)
	}

	if _, err := runCmd(t, "harden", "--root", dir, "--profile", "gold"); err == nil || !strings.Contains(err.Error(), "--profile") {
		t.Errorf("bad --profile: %v", err)
	}
	if _, err := runCmd(t, "harden", "--root", dir, "--live"); err == nil || !strings.Contains(err.Error(), "--live") {
		t.Errorf("--live on a temp root: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "etc/omerta/omerta.yaml"), []byte("profile: gold\n"), 0o644)
	if _, err := runCmd(t, "harden", "--root", dir, "--check"); err == nil || !strings.Contains(err.Error(), "profile") {
		t.Errorf("bad site configuration: %v", err)
	}
}

// Actual values and waivers come from files in the root; a control sequence
// or a bidi override in one prints escaped, in the table and in --json.
func TestHardenOutputEscapesForeignText(t *testing.T) {
	evil := "UMASK 022\r\x1b[2Kno drift\u202e\u009b2J"
	results := []hardening.Result{{ID: "cis.umask\x1b[1A", Result: hardening.Outcome("fail\r"), Actual: evil, Waiver: "because\x07"}}
	var table, js bytes.Buffer
	printTable(&table, results)
	if err := writeJSON(&js, results); err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"table": table.String(), "json": js.String()} {
		for i, r := range out {
			if r != '\n' && terminal.Unsafe(r) {
				t.Errorf("%s holds %U at byte %d: %q", name, r, i, out)
			}
		}
	}
	if !strings.Contains(table.String(), `UMASK 022\r\x1b[2Kno drift\u202e\u009b2J [waived: because\x07]`) {
		t.Errorf("table:\n%s", table.String())
	}
	var back []hardening.Result
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back) != 1 || back[0].Actual != evil {
		t.Errorf("--json does not decode to the same values: %v %+v", err, back)
	}

	long := []hardening.Result{{ID: "x", Result: hardening.Pass, Actual: strings.Repeat("é", 80)}}
	table.Reset()
	printTable(&table, long)
	if !utf8.Valid(table.Bytes()) || !strings.Contains(table.String(), "é...") {
		t.Errorf("a long value is cut inside a rune:\n%s", table.String())
	}
}

// TestHardenSiteConfigStaysInsideRoot: --root's etc/omerta as an absolute
// link, or omerta.yaml itself as one, must resolve inside the root; the
// host's file (here one saying enterprise) must not choose the profile.
func TestHardenSiteConfigStaysInsideRoot(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "omerta.yaml"), []byte("profile: enterprise\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, plant := range map[string]func(root string) error{
		"directory link": func(root string) error {
			return os.Symlink(outside, filepath.Join(root, "etc/omerta"))
		},
		"file link": func(root string) error {
			if err := os.MkdirAll(filepath.Join(root, "etc/omerta"), 0o755); err != nil {
				return err
			}
			return os.Symlink(filepath.Join(outside, "omerta.yaml"), filepath.Join(root, "etc/omerta/omerta.yaml"))
		},
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := plant(root); err != nil {
				t.Fatal(err)
			}
			out, err := runCmd(t, "harden", "--root", root)
			if err != nil {
				t.Fatalf("harden: %v\n%s", err, out)
			}
			if strings.Contains(out, "profile enterprise") || !strings.Contains(out, "profile user") {
				t.Errorf("the profile came from outside the root:\n%s", out)
			}
		})
	}
}

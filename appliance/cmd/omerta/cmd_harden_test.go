package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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

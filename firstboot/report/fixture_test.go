package report

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/config"
)

// testKey is the fixed signing key of the golden files, from a seed in
// testdata so the signatures (Ed25519 is deterministic) never change.
func testKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	b, err := os.ReadFile("testdata/signing.seed")
	if err != nil {
		t.Fatal(err)
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		t.Fatalf("testdata/signing.seed: want %d bytes of hex", ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(seed)
}

// otherKey is an attacker's key.
func otherKey() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("someone else"))
	return ed25519.NewKeyFromSeed(seed[:])
}

var t0 = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

// ev is evidence over content, with the hash computed, not typed in.
func ev(source, content, excerpt string) Evidence {
	sum := sha256.Sum256([]byte(content))
	return Evidence{Source: source, SHA256: hex.EncodeToString(sum[:]), Excerpt: excerpt}
}

// testReport is an unsealed report shaped like a first boot of the pro
// profile on a GPU server; the evidence is what those files hold on Debian.
func testReport() *Report {
	nft := "table inet omerta {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t\tct state established,related accept\n\t\tiif \"lo\" accept\n\t\ttcp dport 443 accept\n\t}\n}\n"
	loginDefs := "MAIL_DIR\t\t/var/mail\nPASS_MAX_DAYS\t99999\nUMASK\t\t022\n"
	return &Report{
		Header: Header{
			Image:        Image{Version: "0.1.0", Digest: "sha256:" + strings.Repeat("ab", 32)},
			MachineID:    "4f1c8e2a9b7d4c6e8f0a1b2c3d4e5f60",
			BootID:       "a3b2c1d0-e9f8-4a7b-8c6d-5e4f3a2b1c0d",
			Hostname:     "omerta-7f3a2c",
			Profile:      config.ProfilePro,
			StartedAt:    at(0),
			FinishedAt:   at(97),
			ClockTrusted: false,
			Tools:        map[string]string{"omerta": "0.1.0 (commit 2546867)", "nft": "v1.1.3 (Commodore Bullmoose #4)", "kernel": "6.12.21-amd64"},
			Attempts:     2,
			Probe: Probe{Status: "warn", Checks: []ProbeCheck{
				{ID: "cpu.cores", Status: "pass", Reason: "enough cores", Measured: "32", Required: ">= 8"},
				{ID: "gpu.memory", Status: "warn", Reason: "below the recommended GPU memory for pro", Measured: "24 GiB", Required: ">= 40 GiB"},
			}},
			LynisAudit: LynisAudit{Status: AuditDeferred},
			GPUExtension: &GPUExtension{Outcome: GPUExtensionMerged, Reason: "8 NVIDIA GPUs on the PCI bus",
				DriverVersion: "550.163.01", Modules: "open", Kernel: "6.12.57+deb13-amd64", SHA256: strings.Repeat("5e", 32)},
			Site: Site{
				Sources: []config.Source{
					{Path: "/etc/omerta/omerta.yaml", Present: true, SHA256: strings.Repeat("0f", 32)},
					{Path: "/efi/omerta.yaml", Present: true, SHA256: strings.Repeat("e1", 32), Error: `/efi/omerta.yaml: line 3: console.port: 70000 is not a port (1..65535)`},
					{Path: "/boot/efi/omerta.yaml"},
				},
				Problems: []string{`/efi/omerta.yaml: line 3: console.port: 70000 is not a port (1..65535)`},
			},
			Steps: []Step{
				{Name: "identity", Status: "done", Attempts: 1, StartedAt: at(0), FinishedAt: at(1)},
				{Name: "keys", Status: "done", Attempts: 1, StartedAt: at(1), FinishedAt: at(2)},
				{Name: "probe", Status: "done", Attempts: 1, StartedAt: at(2), FinishedAt: at(5)},
				{Name: "harden", Status: "done", Attempts: 2, StartedAt: at(20), FinishedAt: at(31), Error: ""},
				{Name: "verify", Status: "done", Attempts: 1, StartedAt: at(31), FinishedAt: at(33)},
				{Name: "token", Status: "done", Attempts: 1, StartedAt: at(33), FinishedAt: at(96)},
				{Name: "report", Status: "running", Attempts: 1, StartedAt: at(97)},
			},
		},
		Records: []Record{
			{
				ID: "kspp.sysctl.kptr_restrict", Title: "Hide kernel pointers from all users",
				References: []Reference{{"KSPP", "kernel.kptr_restrict"}, {"DISA-SRG", "SRG-OS-000132-GPOS-00067"}},
				Expected:   "2", Actual: "2", Result: OutcomeFixed,
				Evidence: []Evidence{ev("/proc/sys/kernel/kptr_restrict", "2\n", "2")},
				Time:     at(31),
			},
			{
				ID: "cis.3.3.1.ip_forward", Title: "Ensure IP forwarding is disabled",
				References: []Reference{{"CIS-Debian12", "3.3.1"}},
				Expected:   "0", Actual: "1", Result: OutcomeNotApplicable,
				Waiver:   "containerd's bridge networking needs net.ipv4.ip_forward=1; forwarding is limited by the nftables forward chain",
				Evidence: []Evidence{ev("/proc/sys/net/ipv4/ip_forward", "1\n", "1")},
				Time:     at(31),
			},
			{
				ID: "cis.1.1.1.8.overlayfs", Title: "Ensure overlayfs kernel module is not available",
				References: []Reference{{"CIS-Debian12", "1.1.1.8"}},
				Expected:   "module not loadable", Actual: "loaded", Result: OutcomeNotApplicable,
				Waiver:   "containerd's overlayfs snapshotter needs it",
				Evidence: []Evidence{ev("/proc/modules", "overlay 151552 0 - Live 0x0000000000000000\n", "overlay 151552 0 - Live")},
				Time:     at(32),
			},
			{
				ID: "cis.5.4.1.5.umask", Title: "Ensure default user umask is configured",
				References: []Reference{{"CIS-Debian12", "5.4.1.5"}},
				Expected:   "UMASK 027", Actual: "UMASK 022", Result: OutcomeFail,
				Evidence: []Evidence{ev("/etc/login.defs", loginDefs, "UMASK\t\t022")},
				Time:     at(32),
			},
			{
				ID: "omerta.nftables.input", Title: "Default-deny input policy admitting only the console port",
				References: []Reference{{"CIS-Debian12", "4.3.1"}},
				Expected:   "policy drop; tcp dport 443 accept", Actual: "policy drop; tcp dport 443 accept", Result: OutcomePass,
				Evidence: []Evidence{ev("nft list table inet omerta", nft, nft)},
				Time:     at(32),
			},
			{
				ID: "kspp.cmdline.lockdown", Title: "Kernel lockdown enabled on the command line",
				References: []Reference{{"KSPP", "lockdown=confidentiality"}},
				Expected:   "lockdown=confidentiality", Actual: "<absent> & not set by the image", Result: OutcomeNotChecked,
				Evidence: []Evidence{ev("/proc/cmdline", "BOOT_IMAGE=/vmlinuz root=LABEL=root ro quiet\n", "<script>alert(1)</script> BOOT_IMAGE=/vmlinuz root=LABEL=root ro quiet")},
				Time:     at(33),
			},
			{
				ID: "omerta.auditd.rules", Title: "Audit rules loaded", Result: OutcomeError,
				Expected: "rules loaded", Actual: "auditctl: exit status 1",
				Evidence: []Evidence{{Source: "auditctl -l", Excerpt: "You must be root to run this program."}},
				Time:     at(33),
			},
			{
				ID: "omerta.journald.persistent", Title: "Journal kept on disk", Result: OutcomeInformational,
				Expected: "Storage=persistent", Actual: "Storage=persistent",
				Time: at(33),
			},
		},
	}
}

// testAddendum is the Lynis audit that ran after testReport's first boot:
// Lynis 3.1.4's result on that machine, its warning as ParseLynisReport
// words it.
func testAddendum() Addendum {
	return Addendum{
		Kind: AddendumLynis, Status: AuditDone, Attempts: 1,
		BootID: "a3b2c1d0-e9f8-4a7b-8c6d-5e4f3a2b1c0d", StartedAt: at(140), FinishedAt: at(1103), ClockTrusted: true,
		Lynis: &Lynis{Version: "3.1.4", Index: 63, Warnings: []string{"PKGS-7392: Found one or more vulnerable packages."}, Suggestions: 38},
	}
}

// sealedPending returns the test report as first boot sealed it, the
// Lynis audit still to come, and its JSON.
func sealedPending(t testing.TB) (*Report, []byte) {
	t.Helper()
	r := testReport()
	if err := Seal(r, testKey(t)); err != nil {
		t.Fatalf("Seal: %v", err)
	}
	data, err := Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return r, data
}

// sealed returns the test report with its Lynis audit sealed in, and its
// JSON: the golden report.
func sealed(t testing.TB) (*Report, []byte) {
	t.Helper()
	r, _ := sealedPending(t)
	if err := AppendAddendum(r, testAddendum(), testKey(t)); err != nil {
		t.Fatalf("AppendAddendum: %v", err)
	}
	data, err := Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return r, data
}

func readTestFile(p string) ([]byte, error) { return os.ReadFile(p) }

package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/terminal"

	"github.com/omertaos/omertaos/firstboot/report"
)

const (
	reportGolden = "../../../firstboot/report/testdata/report.golden.json"
	reportPub    = "../../../firstboot/report/testdata/signing.pub"
)

// runReport runs `omerta args...` in process and returns its output and the
// exit status main would use.
func runReport(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := runCmd(t, args...)
	var ec exitCode
	switch {
	case err == nil:
		return out, 0
	case errors.As(err, &ec):
		return out, int(ec)
	default:
		return out + "error: " + err.Error(), -1
	}
}

func tamperedReport(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(reportGolden)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Replace(data, []byte(`"attempts": 2`), []byte(`"attempts": 1`), 1)
	if bytes.Equal(bad, data) {
		t.Fatal("golden report has no attempts to edit")
	}
	p := filepath.Join(t.TempDir(), "report.json")
	if err := os.WriteFile(p, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReportVerifyCommand(t *testing.T) {
	pubData, err := os.ReadFile(reportPub)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := report.ParsePublicKey(pubData)
	if err != nil {
		t.Fatal(err)
	}
	pemData, _ := report.EncodePublicKeyPEM(pub)
	pemPath := filepath.Join(t.TempDir(), "signing.pem")
	os.WriteFile(pemPath, pemData, 0o644)
	fp := report.KeyFingerprint(pub)

	cases := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"embedded key", []string{reportGolden}, 3, []string{"ok    signature", "WARNING: no trusted key given", "SELF-CONSISTENT ONLY"}},
		{"pubkey file", []string{reportGolden, "--pubkey", reportPub}, 0, []string{"ok    trusted key", "VERIFIED: signed by the trusted key " + fp}},
		{"pubkey pem", []string{reportGolden, "--pubkey", pemPath}, 0, []string{"VERIFIED"}},
		{"pubkey literal", []string{reportGolden, "--pubkey", strings.TrimSpace(string(pubData))}, 0, []string{"VERIFIED"}},
		{"fingerprint", []string{reportGolden, "--fingerprint", fp}, 0, []string{"VERIFIED"}},
		{"wrong fingerprint", []string{reportGolden, "--fingerprint", "SHA256:" + strings.Repeat("0", 64)}, 1, []string{"FAIL  trusted key", "DOES NOT VERIFY"}},
		{"tampered", []string{tamperedReport(t), "--pubkey", reportPub}, 1, []string{"FAIL  header hash", "DOES NOT VERIFY"}},
		{"tampered, no key", []string{tamperedReport(t)}, 1, []string{"FAIL  header hash", "DOES NOT VERIFY"}},
		{"re-signed, no key", []string{resignedReport(t)}, 3, []string{"WARNING: no trusted key given", "SELF-CONSISTENT ONLY"}},
		{"re-signed, pubkey", []string{resignedReport(t), "--pubkey", reportPub}, 1, []string{"FAIL  trusted key", "DOES NOT VERIFY"}},
		{"re-signed, fingerprint", []string{resignedReport(t), "--fingerprint", fp}, 1, []string{"FAIL  trusted key"}},
		{"missing file", []string{filepath.Join(t.TempDir(), "none.json")}, -1, []string{"reading report:", "no such file"}},
		{"bad pubkey", []string{reportGolden, "--pubkey", "not-a-key"}, -1, []string{"--pubkey: open not-a-key"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, code := runReport(t, append([]string{"report", "verify"}, tc.args...)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}

	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		trusted bool
	}{
		{"trusted", []string{reportGolden, "--pubkey", reportPub}, 0, true},
		{"self-consistent only", []string{reportGolden}, 3, false},
		{"re-signed", []string{resignedReport(t)}, 3, false},
		{"re-signed, pubkey", []string{resignedReport(t), "--pubkey", reportPub}, 1, false},
	} {
		out, code := runReport(t, append([]string{"report", "verify", "--json"}, tc.args...)...)
		var v report.Verification
		if err := json.Unmarshal([]byte(out), &v); err != nil || code != tc.code || v.Trusted != tc.trusted || len(v.Checks) < 10 {
			t.Errorf("--json %s: exit %d, want %d (%v)\n%s", tc.name, code, tc.code, err, out)
		}
	}
}

// resignedReport is the golden report with a failed control turned into a
// pass, re-signed by someone else's key: self-consistent, not trustworthy.
func resignedReport(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(reportGolden)
	if err != nil {
		t.Fatal(err)
	}
	r, err := report.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	for i := range r.Records {
		if r.Records[i].Result == report.OutcomeFail {
			r.Records[i].Result = report.OutcomePass
		}
	}
	seed := sha256.Sum256([]byte("attacker"))
	if err := report.Seal(r, ed25519.NewKeyFromSeed(seed[:])); err != nil {
		t.Fatal(err)
	}
	forged, err := report.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "resigned.json")
	if err := os.WriteFile(p, forged, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReportHTMLCommand(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "report.html")
	if msg, code := runReport(t, "report", "html", reportGolden, "--pubkey", reportPub, "-o", out); code != 0 {
		t.Fatalf("exit %d: %s", code, msg)
	}
	page, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(page, []byte("Signature verified against the supplied key")) {
		t.Error("page lacks the verified banner")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temp files left beside the output: %v", entries)
	}

	// Rendered, but not presented as fine: the page says so and so does
	// the exit status.
	for _, p := range []string{reportGolden, resignedReport(t)} {
		msg, code := runReport(t, "report", "html", p, "-o", out)
		if code != 3 || !strings.Contains(msg, "only self-consistent") {
			t.Errorf("%s without a key: exit %d: %s", p, code, msg)
		}
		page, _ = os.ReadFile(out)
		if !bytes.Contains(page, []byte("Self-consistent")) {
			t.Errorf("%s rendered without the self-consistent banner", p)
		}
	}
	if msg, code := runReport(t, "report", "html", resignedReport(t), "--pubkey", reportPub, "-o", out); code != 1 {
		t.Errorf("re-signed, pubkey: exit %d: %s", code, msg)
	}
	msg, code := runReport(t, "report", "html", tamperedReport(t), "-o", out)
	if code != 1 || !strings.Contains(msg, "does not verify") {
		t.Errorf("tampered: exit %d: %s", code, msg)
	}
	page, _ = os.ReadFile(out)
	if !bytes.Contains(page, []byte("does NOT verify")) {
		t.Error("tampered report rendered without the warning")
	}

	// A parent that is a regular file cannot hold the output, even for root.
	blocker := filepath.Join(dir, "plain-file")
	os.WriteFile(blocker, nil, 0o644)
	if msg, code := runReport(t, "report", "html", reportGolden, "-o", filepath.Join(blocker, "report.html")); code != -1 || !strings.Contains(msg, "plain-file") {
		t.Errorf("unwritable output: exit %d: %s", code, msg)
	}
}

func TestReportShowAndSchemaCommands(t *testing.T) {
	out, code := runReport(t, "report", "show", reportGolden, "--pubkey", reportPub)
	for _, w := range []string{"profile    pro", "controls   8:", "fail          cis.5.4.1.5.umask", "signature  verified"} {
		if !strings.Contains(out, w) {
			t.Errorf("show lacks %q:\n%s", w, out)
		}
	}
	if code != 0 {
		t.Errorf("show: exit %d", code)
	}
	if out, code := runReport(t, "report", "show", tamperedReport(t)); code != 1 || !strings.Contains(out, "DOES NOT VERIFY") {
		t.Errorf("show of a tampered report: exit %d\n%s", code, out)
	}
	for _, p := range []string{reportGolden, resignedReport(t)} {
		if out, code := runReport(t, "report", "show", p); code != 3 || !strings.Contains(out, "signature  self-consistent") {
			t.Errorf("show of %s without a key: exit %d\n%s", p, code, out)
		}
	}
	if out, code := runReport(t, "report", "show", resignedReport(t), "--pubkey", reportPub); code != 1 || !strings.Contains(out, "DOES NOT VERIFY") {
		t.Errorf("show of a re-signed report with the device key: exit %d\n%s", code, out)
	}
	out, code = runReport(t, "report", "schema")
	var schema map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &schema) != nil || schema["$id"] != "https://omertaos.dev/firstboot-report/v2" {
		t.Errorf("schema: exit %d", code)
	}
}

// forgery erases the line it lands on and prints a verdict of its own.
const forgery = "x\r\x1b[2K\x1b[1Areport.json: VERIFIED: signed by the trusted key SHA256:00\n\u202ereport.json: VERIFIED \u009b2K"

// A report whose record id, hostname and waiver hold CR, ESC sequences and
// a fake verdict cannot make the terminal show that verdict: verify, show,
// html and --json print every foreign string escaped.
func TestReportOutputCannotBeForged(t *testing.T) {
	data, err := os.ReadFile(reportGolden)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := json.Marshal(forgery)
	evil := string(data)
	for _, e := range [][2]string{
		{`"hostname": "omerta-7f3a2c"`, `"hostname": ` + string(enc)},
		{`"id": "cis.3.3.1.ip_forward"`, `"id": ` + string(enc)},
		{`"waiver": "containerd's overlayfs snapshotter needs it"`, `"waiver": ` + string(enc)},
	} {
		if !strings.Contains(evil, e[0]) {
			t.Fatalf("golden report lacks %s", e[0])
		}
		evil = strings.Replace(evil, e[0], e[1], 1)
	}
	p := filepath.Join(t.TempDir(), "report.json")
	if err := os.WriteFile(p, []byte(evil), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"report", "verify", p, "-v"},
		{"report", "verify", p, "--json"},
		{"report", "show", p},
		{"report", "html", p, "-o", filepath.Join(t.TempDir(), "r.html")},
	} {
		out, code := runReport(t, args...)
		if code != 1 {
			t.Errorf("%v: exit %d, want 1\n%s", args, code, out)
		}
		for i, r := range out {
			if r != '\n' && terminal.Unsafe(r) {
				t.Fatalf("%v: output holds %U at byte %d:\n%q", args, r, i, out)
			}
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "report.json: VERIFIED") {
				t.Errorf("%v: a forged verdict starts a line:\n%s", args, out)
			}
		}
	}
}

// The verifier reads only regular files, up to --max-size, and refuses a
// hostile document at once: before, /dev/zero was read until memory ran
// out, a FIFO blocked forever, and 200 KB of '[' grew to 20 GB.
func TestReportVerifyRefusesHostileFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	nested := filepath.Join(dir, "nested.json")
	os.WriteFile(nested, bytes.Repeat([]byte("["), 200<<10), 0o644)
	big := filepath.Join(dir, "big.json")
	os.WriteFile(big, bytes.Repeat([]byte(" "), 16<<20+1), 0o644)
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"/dev/zero", []string{"/dev/zero"}, -1, "not a regular file"},
		{"FIFO", []string{fifo}, -1, "not a regular file"},
		{"directory", []string{dir}, -1, "not a regular file"},
		{"over the default size", []string{big}, -1, "--max-size raises the limit"},
		{"over --max-size", []string{reportGolden, "--max-size", "1KiB"}, -1, "larger than the limit of 1024 bytes"},
		{"under a raised --max-size", []string{big, "--max-size", "17MiB"}, 1, "FAIL  json"},
		{"bad --max-size", []string{reportGolden, "--max-size", "0"}, -1, `"0" is not a size`},
		{"200 KB of [", []string{nested}, 1, "nested deeper than 64 levels"},
		{"pubkey FIFO", []string{reportGolden, "--pubkey", fifo}, -1, "not a regular file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			out, code := runReport(t, append([]string{"report", "verify"}, tc.args...)...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, want %d and %q:\n%.2000s", code, tc.code, tc.want, out)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
	for _, sub := range []string{"show", "html"} {
		if out, code := runReport(t, "report", sub, "/dev/zero"); code != -1 || !strings.Contains(out, "not a regular file") {
			t.Errorf("%s /dev/zero: exit %d\n%s", sub, code, out)
		}
	}
}

func TestReportHelpDocumentsExitStatus(t *testing.T) {
	for _, sub := range []string{"verify", "show", "html"} {
		out, err := runCmd(t, "report", sub, "--help")
		if err != nil || !strings.Contains(out, "3  self-consistent only") || !strings.Contains(out, "--max-size") {
			t.Errorf("%s --help: %v\n%s", sub, err, out)
		}
	}
}

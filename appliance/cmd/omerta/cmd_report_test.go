package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
		{"embedded key", []string{reportGolden}, 0, []string{"ok    signature", "WARNING: no trusted key given", "SELF-CONSISTENT ONLY"}},
		{"pubkey file", []string{reportGolden, "--pubkey", reportPub}, 0, []string{"ok    trusted key", "VERIFIED: signed by the trusted key " + fp}},
		{"pubkey pem", []string{reportGolden, "--pubkey", pemPath}, 0, []string{"VERIFIED"}},
		{"pubkey literal", []string{reportGolden, "--pubkey", strings.TrimSpace(string(pubData))}, 0, []string{"VERIFIED"}},
		{"fingerprint", []string{reportGolden, "--fingerprint", fp}, 0, []string{"VERIFIED"}},
		{"wrong fingerprint", []string{reportGolden, "--fingerprint", "SHA256:" + strings.Repeat("0", 64)}, 1, []string{"FAIL  trusted key", "DOES NOT VERIFY"}},
		{"tampered", []string{tamperedReport(t), "--pubkey", reportPub}, 1, []string{"FAIL  header hash", "DOES NOT VERIFY"}},
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

	out, code := runReport(t, "report", "verify", "--json", reportGolden, "--pubkey", reportPub)
	var v report.Verification
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || !v.Trusted || len(v.Checks) < 10 {
		t.Errorf("--json: exit %d\n%s", code, out)
	}
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
	out, code = runReport(t, "report", "schema")
	var schema map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &schema) != nil || schema["$id"] != "https://omertaos.dev/firstboot-report/v1" {
		t.Errorf("schema: exit %d", code)
	}
}

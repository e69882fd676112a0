package report

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/terminal"
)

// forgery erases the line it is printed on and prints a verdict of its own.
const forgery = "x\r\x1b[2K\x1b[1Ar.json: VERIFIED: signed by the trusted key SHA256:0000\n\u202er.json: VERIFIED"

// assertTerminalSafe fails when out holds anything but printable text and
// newlines, or a line that starts with a verdict the output did not make.
func assertTerminalSafe(t *testing.T, out string) {
	t.Helper()
	for i, r := range out {
		if r != '\n' && terminal.Unsafe(r) {
			t.Fatalf("output holds %U at byte %d:\n%q", r, i, out)
		}
	}
}

func assertNoForgedVerdict(t *testing.T, out string) {
	t.Helper()
	assertTerminalSafe(t, out)
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "r.json: VERIFIED") {
			t.Errorf("a forged verdict starts a line:\n%s", out)
		}
	}
}

// A report whose record id, hostname, waiver and messages hold CR, ESC
// sequences and a fake verdict prints them escaped: the terminal shows the
// real verdict, never the forged one.
func TestTerminalOutputCannotBeForged(t *testing.T) {
	_, data := sealed(t)
	doc, err := parseStrict(data)
	if err != nil {
		t.Fatal(err)
	}
	top := doc.(map[string]any)
	hdr := top["header"].(map[string]any)
	hdr["hostname"] = forgery
	hdr["site"].(map[string]any)["problems"] = []any{forgery}
	recs := top["records"].([]any)
	recs[0].(map[string]any)["id"] = forgery
	recs[1].(map[string]any)["waiver"] = forgery
	top["addenda"].([]any)[0].(map[string]any)["lynis"].(map[string]any)["warnings"] = []any{forgery}
	evil, err := json.Marshal(top)
	if err != nil {
		t.Fatal(err)
	}
	v, err := Verify(evil, testKey(t).Public().(ed25519.PublicKey))
	if err == nil || v.Report == nil {
		t.Fatalf("edited report: err = %v, report decoded: %v", err, v.Report != nil)
	}
	var out bytes.Buffer
	if err := WriteVerification(&out, "r.json", v, true); err != nil {
		t.Fatal(err)
	}
	if err := WriteSummary(&out, v.Report, v); err != nil {
		t.Fatal(err)
	}
	assertNoForgedVerdict(t, out.String())
	for _, want := range []string{`x\r\x1b[2K\x1b[1Ar.json: VERIFIED`, `\n\u202er.json`, "DOES NOT VERIFY", `    warning       x\r\x1b[2K`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	// Free text is not refused, so a sealed report can carry the forgery
	// in a waiver and still be self-consistent.
	r := testReport()
	r.Records[1].Waiver = forgery
	r.Header.Site.Problems = []string{forgery}
	if err := Seal(r, otherKey()); err != nil {
		t.Fatal(err)
	}
	data, _ = Marshal(r)
	v, err = Verify(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := WriteVerification(&out, "r.json", v, false); err != nil {
		t.Fatal(err)
	}
	if err := WriteSummary(&out, v.Report, v); err != nil {
		t.Fatal(err)
	}
	assertNoForgedVerdict(t, out.String())
	if !strings.Contains(out.String(), "SELF-CONSISTENT ONLY") || !strings.Contains(out.String(), `waived: x\r\x1b[2K`) {
		t.Errorf("output:\n%s", out.String())
	}
}

// Identifiers are names, not text: a control or formatting character in one
// is refused, naming the field, by Seal and by Verify.
func TestIdentifiersRefuseControlCharacters(t *testing.T) {
	cases := []struct {
		name string
		edit func(r *Report)
		want string
	}{
		{"record id CR", func(r *Report) { r.Records[2].ID = "a\rb" }, `records[2].id: "a\rb" holds the control or formatting character U+000D at byte 1`},
		{"record id ESC", func(r *Report) { r.Records[0].ID = "\x1b[2K" }, "records[0].id"},
		{"hostname", func(r *Report) { r.Header.Hostname = "host\nr.json: VERIFIED" }, "header.hostname"},
		{"hostname bidi", func(r *Report) { r.Header.Hostname = "host\u202e" }, "U+202E"},
		{"machine id C1", func(r *Report) { r.Header.MachineID = "\u009b1m" }, "header.machine_id"},
		{"boot id", func(r *Report) { r.Header.BootID = "\x00" }, "header.boot_id"},
		{"image version", func(r *Report) { r.Header.Image.Version = "0.1\x7f" }, "header.image.version"},
		{"step name", func(r *Report) { r.Header.Steps[1].Name = "keys\u2066" }, "header.steps[1].name"},
		{"step status", func(r *Report) { r.Header.Steps[1].Status = "done\r" }, "header.steps[1].status"},
		{"probe check id", func(r *Report) { r.Header.Probe.Checks[1].ID = "gpu\u200f" }, "header.probe.checks[1].id"},
		{"reference", func(r *Report) { r.Records[0].References[0].ID = "1.2\t" }, "records[0].references[0].id"},
		{"tool name", func(r *Report) { r.Header.Tools["nft\x1b"] = "1" }, "header.tools key"},
		{"invalid UTF-8", func(r *Report) { r.Records[0].ID = "a\xffb" }, "records[0].id: invalid UTF-8 at byte 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := testReport()
			tc.edit(r)
			if err := Seal(r, testKey(t)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Seal error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	// Verify refuses them too, in a report signed as it is.
	r := testReport()
	if err := Seal(r, testKey(t)); err != nil {
		t.Fatal(err)
	}
	r.Records[0].ID = "a\rb"
	data, _ := Marshal(r)
	if _, err := Verify(data, nil); err == nil || !strings.Contains(err.Error(), "content: records[0].id") {
		t.Errorf("Verify: %v", err)
	}
}

package report

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output; rerun with -update after checking the diff\n%s", path, firstLineDiff(want, got))
	}
}

func firstLineDiff(want, got []byte) string {
	wl, gl := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return fmt.Sprintf("line %d:\n  want: %s\n  got:  %s", i+1, w, g)
		}
	}
	return ""
}

func TestGoldenJSON(t *testing.T) {
	_, data := sealed(t)
	golden(t, "report.golden.json", data)
}

func TestGoldenHTML(t *testing.T) {
	r, _ := sealed(t)
	var buf bytes.Buffer
	if err := RenderHTML(&buf, r); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.golden.html", buf.Bytes())
}

// The golden report must verify as it is stored, so a change to the hashing
// that also regenerated the golden file would still be caught by an old copy
// elsewhere; here it proves the committed file is a valid v1 report.
//
// report-before-gpu-extension.json is the golden report as sealed before
// header.gpu_extension existed: an optional member, whose absence must
// still verify.
func TestGoldenFileVerifies(t *testing.T) {
	for _, name := range []string{"report.golden.json", "report-before-gpu-extension.json"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		v, err := Verify(data, testKey(t).Public().(ed25519.PublicKey))
		if err != nil {
			t.Fatalf("%s does not verify: %v", name, err)
		}
		if !v.Trusted {
			t.Fatalf("%s: verification with the supplied key is not trusted", name)
		}
	}
}

// header.gpu_extension is inside the header hash: changing, adding or
// removing it breaks the signature.
func TestGPUExtensionIsSigned(t *testing.T) {
	_, data := sealed(t)
	pub := testKey(t).Public().(ed25519.PublicKey)
	for name, edit := range map[string]func(g map[string]any, h map[string]any){
		"outcome":    func(g, _ map[string]any) { g["outcome"] = "not-merged" },
		"forced":     func(g, _ map[string]any) { g["forced"] = true },
		"sha256":     func(g, _ map[string]any) { g["sha256"] = strings.Repeat("00", 32) },
		"removed":    func(_, h map[string]any) { delete(h, "gpu_extension") },
		"unreadable": func(g, _ map[string]any) { g["outcome"], g["reason"] = "unreadable", "x" },
	} {
		doc, err := parseStrict(data)
		if err != nil {
			t.Fatal(err)
		}
		h := doc.(map[string]any)["header"].(map[string]any)
		edit(h["gpu_extension"].(map[string]any), h)
		b, _ := json.Marshal(doc)
		if v, err := Verify(b, pub); err == nil || v.OK() {
			t.Errorf("%s: edited header.gpu_extension verified", name)
		}
	}
	// Sealed without it, a report verifies.
	r := testReport()
	r.Header.GPUExtension = nil
	if err := Seal(r, testKey(t)); err != nil {
		t.Fatal(err)
	}
	b, _ := Marshal(r)
	if bytes.Contains(b, []byte("gpu_extension")) {
		t.Fatal("an absent gpu_extension was written")
	}
	if _, err := Verify(b, pub); err != nil {
		t.Fatalf("a report without gpu_extension: %v", err)
	}
}

func TestSealFills(t *testing.T) {
	r, _ := sealed(t)
	if r.Header.SchemaVersion != SchemaVersion {
		t.Errorf("schema_version = %q", r.Header.SchemaVersion)
	}
	want := map[Outcome]int{OutcomePass: 1, OutcomeFixed: 1, OutcomeFail: 1, OutcomeError: 1, OutcomeNotApplicable: 2, OutcomeNotChecked: 1, OutcomeInformational: 1}
	for _, o := range Outcomes {
		if r.Header.Summary[o] != want[o] {
			t.Errorf("summary[%s] = %d, want %d", o, r.Header.Summary[o], want[o])
		}
	}
	for i, rec := range r.Records {
		if rec.Seq != i+1 {
			t.Errorf("records[%d].seq = %d", i, rec.Seq)
		}
		if i > 0 && rec.PrevHash != r.Records[i-1].Hash {
			t.Errorf("records[%d].prev_hash does not link", i)
		}
		if !hexSHA256.MatchString(rec.Hash) {
			t.Errorf("records[%d].hash = %q", i, rec.Hash)
		}
	}
	if r.Records[0].PrevHash != r.Signature.HeaderSHA256 {
		t.Error("first record does not chain from the header hash")
	}
	if r.Signature.ChainHead != r.Records[len(r.Records)-1].Hash {
		t.Error("chain head is not the last record's hash")
	}
	if a := r.Addenda[0]; a.Seq != 1 || a.PrevHash != r.Signature.ChainHead || r.Signature.AddendaHead != a.Hash || !hexSHA256.MatchString(a.Hash) {
		t.Errorf("addendum %+v does not chain from the chain head to the addenda head %s", a, r.Signature.AddendaHead)
	}
	if r.Records[7].References == nil || r.Records[7].Evidence == nil {
		t.Error("nil lists were not normalised to empty ones")
	}
	// Sealing twice gives the same report: Seal depends only on content.
	again := *r
	again.Records = append([]Record(nil), r.Records...)
	again.Addenda = append([]Addendum(nil), r.Addenda...)
	if err := Seal(&again, testKey(t)); err != nil {
		t.Fatal(err)
	}
	if again.Signature != r.Signature {
		t.Error("resealing an unchanged report changed its signature")
	}
}

func TestSealLocalTimesBecomeUTC(t *testing.T) {
	r := testReport()
	zone := time.FixedZone("CET", 3600)
	r.Header.StartedAt = r.Header.StartedAt.In(zone)
	r.Records[0].Time = r.Records[0].Time.In(zone)
	if err := Seal(r, testKey(t)); err != nil {
		t.Fatal(err)
	}
	data, _ := Marshal(r)
	if bytes.Contains(data, []byte("+01:00")) {
		t.Error("a local time survived sealing")
	}
	if _, err := Verify(data, nil); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyTrust(t *testing.T) {
	_, data := sealed(t)
	pub := testKey(t).Public().(ed25519.PublicKey)
	other := otherKey().Public().(ed25519.PublicKey)

	t.Run("embedded key only", func(t *testing.T) {
		v, err := Verify(data, nil)
		if err != nil {
			t.Fatal(err)
		}
		if v.Trusted || v.KeySource != KeyEmbedded || len(v.Warnings) == 0 || !strings.Contains(v.Warnings[0], "self-consistent") {
			t.Errorf("embedded-key verification must warn and not be trusted: %+v", v)
		}
	})
	t.Run("supplied key", func(t *testing.T) {
		v, err := Verify(data, pub)
		if err != nil {
			t.Fatal(err)
		}
		if !v.Trusted || v.KeySource != KeySupplied || len(v.Warnings) != 0 || v.Fingerprint != KeyFingerprint(pub) {
			t.Errorf("supplied-key verification: %+v", v)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		v, err := Verify(data, other)
		if err == nil || v.Trusted || !strings.Contains(err.Error(), "trusted key") {
			t.Errorf("verification against another key: err=%v", err)
		}
	})
	t.Run("short key", func(t *testing.T) {
		if _, err := Verify(data, pub[:16]); err == nil {
			t.Error("a 16-byte key was accepted")
		}
	})
	t.Run("fingerprint pin", func(t *testing.T) {
		if _, err := VerifyWith(data, VerifyOptions{Fingerprint: strings.ToUpper(KeyFingerprint(pub)[7:])}); err == nil {
			t.Error("a fingerprint without the SHA256: prefix matched")
		}
		v, err := VerifyWith(data, VerifyOptions{Fingerprint: KeyFingerprint(pub)})
		if err != nil || !v.Trusted {
			t.Errorf("fingerprint pin: %v %+v", err, v)
		}
		if _, err := VerifyWith(data, VerifyOptions{Fingerprint: KeyFingerprint(other)}); err == nil {
			t.Error("another key's fingerprint was accepted")
		}
	})
}

// An attacker who edits the report and re-signs it with their own key gets
// past the embedded-key check (which is why it warns) but not past a
// supplied key or fingerprint.
func TestVerifyResignedByAttacker(t *testing.T) {
	r, _ := sealed(t)
	r.Records[3].Result, r.Records[3].Actual = OutcomePass, "UMASK 027"
	if err := Seal(r, otherKey()); err != nil {
		t.Fatal(err)
	}
	forged, _ := Marshal(r)
	if _, err := Verify(forged, nil); err != nil {
		t.Fatalf("a re-signed report is self-consistent, yet: %v", err)
	}
	pub := testKey(t).Public().(ed25519.PublicKey)
	if _, err := Verify(forged, pub); err == nil {
		t.Error("a report re-signed by another key verified against the device key")
	}
	if _, err := VerifyWith(forged, VerifyOptions{Fingerprint: KeyFingerprint(pub)}); err == nil {
		t.Error("a report re-signed by another key matched the device fingerprint")
	}
}

// Hashes cover values, so any faithful re-serialisation still verifies.
func TestVerifyAcceptsReformatting(t *testing.T) {
	_, data := sealed(t)
	pub := testKey(t).Public().(ed25519.PublicKey)
	var compact bytes.Buffer
	if err := json.Compact(&compact, data); err != nil {
		t.Fatal(err)
	}
	var generic any
	if err := json.Unmarshal(data, &generic); err != nil {
		t.Fatal(err)
	}
	sorted, _ := json.MarshalIndent(generic, "", "\t") // sorted members, HTML-escaped strings
	for name, doc := range map[string][]byte{"compact": compact.Bytes(), "sorted and escaped": sorted} {
		if _, err := Verify(doc, pub); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestVerifyRejectsMalformed(t *testing.T) {
	_, data := sealed(t)
	pub := testKey(t).Public().(ed25519.PublicKey)
	s := string(data)
	cases := []struct {
		name, doc, want string
	}{
		{"empty", "", "json"},
		{"not an object", "[]", "json"},
		{"invalid UTF-8", strings.Replace(s, "omerta-7f3a2c", "omerta-\xff3a2c", 1), "json"},
		{"trailing data", s + "{}", "json"},
		{"duplicated member", strings.Replace(s, `"hostname": "omerta-7f3a2c",`, `"hostname": "omerta-7f3a2c", "hostname": "omerta-7f3a2c",`, 1), "appears twice"},
		{"unknown member", strings.Replace(s, `"hostname":`, `"owner": "x", "hostname":`, 1), "strict decoding"},
		{"member name in another case", strings.Replace(s, `"hostname":`, `"Hostname":`, 1), "strict decoding"},
		{"missing member", strings.Replace(s, `"boot_id": "a3b2c1d0-e9f8-4a7b-8c6d-5e4f3a2b1c0d",`, ``, 1), "missing member header.boot_id"},
		{"other schema version", strings.Replace(s, SchemaVersion, "omertaos.dev/firstboot-report/v1", 1), "schema version"},
		{"null addenda", strings.Replace(s, `"addenda": [`, `"addenda": null, "x": [`, 1), "json"},
		{"time spelled differently", strings.Replace(s, `"started_at": "2025-03-14T09:26:53Z"`, `"started_at": "2025-03-14T10:26:53+01:00"`, 1), "header.started_at: 2025-03-14T10:26:53+01:00 is not in UTC"},
		{"null list", strings.Replace(s, `"problems": [`, `"problems": null, "x": [`, 1), "json"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := Verify([]byte(tc.doc), pub)
			if err == nil {
				t.Fatal("verified")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if v.OK() || v.Trusted {
				t.Error("verification says OK")
			}
		})
	}
}

func TestSealRefusesBadContent(t *testing.T) {
	cases := []struct {
		name string
		edit func(r *Report)
		want string
	}{
		{"result outside XCCDF", func(r *Report) { r.Records[2].Result = "passed" }, `records[2].result: result "passed" is not one of`},
		{"empty result", func(r *Report) { r.Records[0].Result = "" }, "records[0].result"},
		{"duplicate id", func(r *Report) { r.Records[4].ID = r.Records[1].ID }, `records[4].id: "cis.3.3.1.ip_forward" already used by records[1]`},
		{"empty id", func(r *Report) { r.Records[1].ID = "" }, "records[1].id: empty"},
		{"bad profile", func(r *Report) { r.Header.Profile = "gold" }, `header.profile: profile "gold" is not one of`},
		{"no attempts", func(r *Report) { r.Header.Attempts = 0 }, "header.attempts: 0"},
		{"bad probe status", func(r *Report) { r.Header.Probe.Status = "ok" }, `header.probe.status: "ok"`},
		{"lynis_audit status", func(r *Report) { r.Header.LynisAudit.Status = "later" }, `header.lynis_audit.status: "later" is not one of deferred, skipped`},
		{"skipped without reason", func(r *Report) { r.Header.LynisAudit.Status = AuditSkipped }, "header.lynis_audit.reason: empty"},
		{"deferred with reason", func(r *Report) { r.Header.LynisAudit.Reason = "because" }, `header.lynis_audit.reason: "because", but a deferred audit`},
		{"gpu_extension outcome", func(r *Report) { r.Header.GPUExtension.Outcome = "maybe" }, `header.gpu_extension.outcome: "maybe" is not one of`},
		{"gpu_extension reason", func(r *Report) { r.Header.GPUExtension.Reason = "" }, "header.gpu_extension.reason: empty"},
		{"gpu_extension sha256", func(r *Report) { r.Header.GPUExtension.SHA256 = "ABC" }, `header.gpu_extension.sha256: "ABC"`},
		{"gpu_extension kernel", func(r *Report) { r.Header.GPUExtension.Kernel = "6.12\x1b[2J" }, "header.gpu_extension.kernel"},
		{"lynis index", withAddenda(func(a []Addendum) { a[0].Lynis.Index = 101 }), "addenda[0].lynis.index: 101"},
		{"lynis suggestions", withAddenda(func(a []Addendum) { a[0].Lynis.Suggestions = -1 }), "addenda[0].lynis.suggestions: -1"},
		{"addendum kind", withAddenda(func(a []Addendum) { a[0].Kind = "nmap" }), `addenda[0].kind: "nmap" is not "lynis"`},
		{"addendum status", withAddenda(func(a []Addendum) { a[0].Status = "pending" }), `addenda[0].status: "pending" is not one of done, failed`},
		{"done without result", withAddenda(func(a []Addendum) { a[0].Lynis = nil }), "addenda[0].lynis: null, but the audit is done"},
		{"done with error", withAddenda(func(a []Addendum) { a[0].Error = "x" }), `addenda[0].error: "x", but the audit is done`},
		{"failed with result", withAddenda(func(a []Addendum) { a[0].Status, a[0].Error = AuditFailed, "x" }), "addenda[0].lynis: set, but the audit failed"},
		{"failed without error", withAddenda(func(a []Addendum) { a[0].Status, a[0].Lynis = AuditFailed, nil }), "addenda[0].error: empty"},
		{"no attempts", withAddenda(func(a []Addendum) { a[0].Attempts = 0 }), "addenda[0].attempts: 0"},
		{"ends before it starts", withAddenda(func(a []Addendum) { a[0].FinishedAt = at(1) }), "addenda[0].finished_at: 2025-03-14T09:26:54Z is before started_at"},
		{"addendum boot id", withAddenda(func(a []Addendum) { a[0].BootID = "b\x1b" }), "addenda[0].boot_id"},
		{"result after a result", func(r *Report) { r.Addenda = []Addendum{testAddendum(), testAddendum()} }, "addenda[1]: addenda[0] already sealed the audit's result"},
		{"result of a skipped audit", func(r *Report) {
			r.Header.LynisAudit = LynisAudit{Status: AuditSkipped, Reason: "firstboot.lynis is false"}
			r.Addenda = []Addendum{testAddendum()}
		}, "addenda[0]: header.lynis_audit says the audit was skipped"},
		{"evidence hash", func(r *Report) { r.Records[0].Evidence[0].SHA256 = "ABC" }, `records[0].evidence[0].sha256: "ABC"`},
		{"evidence source", func(r *Report) { r.Records[0].Evidence[0].Source = "" }, "records[0].evidence[0].source: empty"},
		{"reference", func(r *Report) { r.Records[0].References[0].ID = "" }, "records[0].references[0]"},
		{"image digest", func(r *Report) { r.Header.Image.Digest = "md5:00" }, "header.image.digest"},
		{"step name", func(r *Report) { r.Header.Steps[0].Name = "" }, "header.steps[0].name: empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := testReport()
			tc.edit(r)
			err := Seal(r, testKey(t))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Seal error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if err := Seal(testReport(), ed25519.PrivateKey(make([]byte, 12))); err == nil {
		t.Error("Seal accepted a 12-byte key")
	}
}

// withAddenda is an edit of the test report with its audit sealed in.
func withAddenda(f func(a []Addendum)) func(r *Report) {
	return func(r *Report) {
		r.Addenda = []Addendum{testAddendum()}
		f(r.Addenda)
	}
}

func TestNoRecordsNoAddenda(t *testing.T) {
	r := testReport()
	r.Records = nil
	if err := Seal(r, testKey(t)); err != nil {
		t.Fatal(err)
	}
	if r.Signature.ChainHead != r.Signature.HeaderSHA256 || r.Signature.AddendaHead != r.Signature.ChainHead {
		t.Error("with no records and no addenda the chain and addenda heads must be the header hash")
	}
	data, _ := Marshal(r)
	if !bytes.Contains(data, []byte(`"addenda": []`)) || !bytes.Contains(data, []byte(`"records": []`)) {
		t.Errorf("want addenda [] and records []:\n%s", data)
	}
	if _, err := Verify(data, testKey(t).Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	// An addendum or a record appended to an empty chain must fail.
	for _, bad := range []string{
		strings.Replace(string(data), `"addenda": []`, `"addenda": [{}]`, 1),
		strings.Replace(string(data), `"records": []`, `"records": [{}]`, 1),
	} {
		if _, err := Verify([]byte(bad), nil); err == nil {
			t.Errorf("verified:\n%s", bad)
		}
	}
}

func TestParse(t *testing.T) {
	_, data := sealed(t)
	r, err := Parse(data)
	if err != nil || r.Header.Hostname != "omerta-7f3a2c" || len(r.Records) != 8 || len(r.Addenda) != 1 {
		t.Fatalf("Parse: %v", err)
	}
	if _, err := Parse([]byte(`{"header":{"nope":1}}`)); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("Parse of an unknown member: %v", err)
	}
}

func TestHTMLShowsTamperingAndEscapes(t *testing.T) {
	r, data := sealed(t)
	var buf bytes.Buffer
	if err := RenderHTML(&buf, r); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, want := range []string{"Self-consistent", KeyFingerprint(testKey(t).Public().(ed25519.PublicKey)), "&lt;script&gt;alert(1)&lt;/script&gt;", "Waiver: containerd&#39;s overlayfs snapshotter needs it", "hardening index 63"} {
		if !strings.Contains(page, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	if strings.Contains(page, "<script>") || strings.Contains(page, "http://") || strings.Contains(page, "https://") || strings.Contains(page, "<link") {
		t.Error("HTML holds a script or an external reference")
	}

	tampered := bytes.Replace(data, []byte(`"actual": "UMASK 022"`), []byte(`"actual": "UMASK 027"`), 1)
	v, err := Verify(tampered, nil)
	if err == nil {
		t.Fatal("tampered report verified")
	}
	buf.Reset()
	if err := RenderHTMLVerified(&buf, v.Report, v); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "does NOT verify") || !strings.Contains(buf.String(), "record 4 cis.5.4.1.5.umask") {
		t.Error("HTML of a tampered report does not say so")
	}
	buf.Reset()
	v, _ = Verify(data, testKey(t).Public().(ed25519.PublicKey))
	if err := RenderHTMLVerified(&buf, r, v); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "Signature verified against the supplied key") {
		t.Error("HTML of a trusted verification does not say so")
	}
}

func TestWriteVerificationCollapsesPassingRecords(t *testing.T) {
	r, data := sealed(t)
	v, err := Verify(data, testKey(t).Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	var short, long bytes.Buffer
	if err := WriteVerification(&short, "r.json", v, false); err != nil {
		t.Fatal(err)
	}
	if err := WriteVerification(&long, "r.json", v, true); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("ok    %d records: seq, hash and link ok\n", len(r.Records))
	if !strings.Contains(short.String(), want) || strings.Contains(short.String(), "record 1 ") {
		t.Errorf("short output lacks %q or lists records:\n%s", want, short.String())
	}
	if n := strings.Count(long.String(), "\nok    record "); n != len(r.Records) {
		t.Errorf("verbose output lists %d records, want %d", n, len(r.Records))
	}
}

package report

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestGoldenPendingJSON(t *testing.T) {
	_, data := sealedPending(t)
	golden(t, "report-pending.golden.json", data)
}

// A report whose audit has not been sealed yet is complete as far as it
// goes: it verifies, trusted, and says the audit is pending.
func TestPendingAuditVerifies(t *testing.T) {
	_, data := sealedPending(t)
	pub := testKey(t).Public().(ed25519.PublicKey)
	v, err := Verify(data, pub)
	if err != nil || !v.Trusted {
		t.Fatalf("pending report: %v, trusted %v", err, v.Trusted)
	}
	if v.Audit == nil || v.Audit.Status != AuditPending || v.Audit.Lynis != nil {
		t.Errorf("audit = %+v, want pending", v.Audit)
	}
	var out bytes.Buffer
	if err := WriteVerification(&out, "r.json", v, false); err != nil {
		t.Fatal(err)
	}
	if err := WriteSummary(&out, v.Report, v); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ok    lynis audit: pending", "ok    addenda head: ", "after 0 addenda", "r.json: VERIFIED", "  lynis      pending"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	var page bytes.Buffer
	if err := RenderHTMLVerified(&page, v.Report, v); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(page.String(), "<strong>pending</strong>: it runs once the console is up") || !strings.Contains(page.String(), "<h2>Addenda (0)</h2>") {
		t.Error("the HTML does not say the audit is pending")
	}
}

// Sealing the audit leaves what first boot sealed as it was: the header,
// the records and their hashes; only the signature is new.
func TestAppendAddendumKeepsFirstBootsSeal(t *testing.T) {
	pending, before := sealedPending(t)
	first := pending.Signature
	if err := AppendAddendum(pending, testAddendum(), testKey(t)); err != nil {
		t.Fatal(err)
	}
	s := pending.Signature
	if s.HeaderSHA256 != first.HeaderSHA256 || s.ChainHead != first.ChainHead || s.Value == first.Value || s.AddendaHead == first.AddendaHead {
		t.Errorf("signature before %+v, after %+v", first, s)
	}
	after, _ := Marshal(pending)
	var a, b map[string]json.RawMessage
	json.Unmarshal(before, &a)
	json.Unmarshal(after, &b)
	if !bytes.Equal(a["header"], b["header"]) || !bytes.Equal(a["records"], b["records"]) {
		t.Error("sealing the addendum changed the header or the records")
	}
	v, err := Verify(after, testKey(t).Public().(ed25519.PublicKey))
	if err != nil || v.Audit == nil || v.Audit.Status != AuditDone || v.Audit.Lynis.Index != 63 || v.Audit.Addendum != 1 {
		t.Fatalf("after the addendum: %v, audit %+v", err, v.Audit)
	}
	if got := v.Audit.Describe(); got != "hardening index 63, 1 warning(s), 38 suggestion(s) (Lynis 3.1.4, 16m3s), sealed in addendum 1" {
		t.Errorf("Describe = %q", got)
	}
}

func TestAppendAddendumRefuses(t *testing.T) {
	key := testKey(t)
	skipped := testReport()
	skipped.Header.LynisAudit = LynisAudit{Status: AuditSkipped, Reason: "firstboot.lynis is false in the site configuration"}
	if err := Seal(skipped, key); err != nil {
		t.Fatal(err)
	}
	done, _ := sealed(t)
	cases := []struct {
		name string
		r    *Report
		a    Addendum
		key  ed25519.PrivateKey
		want string
		is   error
	}{
		{"another key", func() *Report { r, _ := sealedPending(t); return r }(), testAddendum(), otherKey(), "report is signed by another key", ErrOtherKey},
		{"a skipped audit", skipped, testAddendum(), key, "header.lynis_audit says the audit was skipped", nil},
		{"a second result", done, testAddendum(), key, "addenda[1]: addenda[0] already sealed the audit's result", nil},
		{"a bad result", func() *Report { r, _ := sealedPending(t); return r }(), func() Addendum { a := testAddendum(); a.Lynis.Index = -1; return a }(), key, "addenda[0].lynis.index: -1", nil},
		{"a short key", done, testAddendum(), key[:10], "signing key is 10 bytes", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := Marshal(tc.r)
			err := AppendAddendum(tc.r, tc.a, tc.key)
			if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("AppendAddendum = %v, want %q", err, tc.want)
			}
			if after, _ := Marshal(tc.r); !bytes.Equal(before, after) {
				t.Error("a refused addendum changed the report")
			}
		})
	}
}

// twoAddenda is the report of an audit that failed on every attempt and
// succeeded when the operator retried it.
func twoAddenda(t testing.TB) []byte {
	t.Helper()
	r, _ := sealedPending(t)
	failed := testAddendum()
	failed.Status, failed.Error, failed.Lynis, failed.Attempts = AuditFailed, "lynis: exit status 1: Fatal: can't find include directory", nil, 3
	if err := AppendAddendum(r, failed, testKey(t)); err != nil {
		t.Fatal(err)
	}
	if err := AppendAddendum(r, testAddendum(), testKey(t)); err != nil {
		t.Fatal(err)
	}
	data, _ := Marshal(r)
	v, err := Verify(data, testKey(t).Public().(ed25519.PublicKey))
	if err != nil || v.Audit.Status != AuditDone || v.Audit.Addendum != 2 {
		t.Fatalf("failed then done: %v %+v", err, v.Audit)
	}
	return data
}

// addendaEdit applies f to the addenda array and re-serialises.
func addendaEdit(t *testing.T, data []byte, f func(ads []any, sig map[string]any) []any) []byte {
	t.Helper()
	doc, err := parseStrict(data)
	if err != nil {
		t.Fatal(err)
	}
	top := doc.(map[string]any)
	top["addenda"] = f(top["addenda"].([]any), top["signature"].(map[string]any))
	b, err := json.Marshal(top)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The attacks on the addenda, including those that fix up seq, prev_hash,
// hash and addenda_head as someone who knows the scheme would: each ends
// at a failed check, with or without a trusted key.
func TestVerifyFailsOnAddendaAttacks(t *testing.T) {
	_, one := sealed(t)
	two := twoAddenda(t)
	_, pending := sealedPending(t)
	pub := testKey(t).Public().(ed25519.PublicKey)
	rechain := func(ads []any, sig map[string]any) []any {
		prev := sig["chain_head"].(string)
		for i, a := range ads {
			m := a.(map[string]any)
			m["seq"] = json.Number(fmt.Sprint(i + 1))
			m["prev_hash"] = prev
			h, err := hashGeneric(m, "hash")
			if err != nil {
				t.Fatal(err)
			}
			m["hash"] = h
			prev = h
		}
		sig["addenda_head"] = prev
		return ads
	}
	better := func(ads []any, _ map[string]any) []any {
		ads[len(ads)-1].(map[string]any)["lynis"].(map[string]any)["index"] = json.Number("97")
		return ads
	}
	cases := []struct {
		name string
		data []byte
		f    func(ads []any, sig map[string]any) []any
	}{
		{"remove it", one, func(ads []any, _ map[string]any) []any { return ads[:0] }},
		{"remove it, rechain", one, func(ads []any, sig map[string]any) []any { return rechain(ads[:0], sig) }},
		{"raise the index", one, better},
		{"raise the index, rechain", one, func(ads []any, sig map[string]any) []any { return rechain(better(ads, sig), sig) }},
		{"drop the warnings, rechain", one, func(ads []any, sig map[string]any) []any {
			ads[0].(map[string]any)["lynis"].(map[string]any)["warnings"] = []any{}
			return rechain(ads, sig)
		}},
		{"reorder", two, func(ads []any, _ map[string]any) []any { ads[0], ads[1] = ads[1], ads[0]; return ads }},
		{"reorder, rechain", two, func(ads []any, sig map[string]any) []any { ads[0], ads[1] = ads[1], ads[0]; return rechain(ads, sig) }},
		{"remove the failure", two, func(ads []any, _ map[string]any) []any { return ads[1:] }},
		{"remove the failure, rechain", two, func(ads []any, sig map[string]any) []any { return rechain(ads[1:], sig) }},
		{"remove the result", two, func(ads []any, _ map[string]any) []any { return ads[:1] }},
		{"forge one onto a pending report", pending, func(ads []any, sig map[string]any) []any {
			a, err := parseStrict(mustMarshal(t, testAddendum()))
			if err != nil {
				t.Fatal(err)
			}
			return rechain(append(ads, a), sig)
		}},
		{"move it to another report", func() []byte {
			r := testReport()
			r.Header.Hostname = "another-machine"
			if err := Seal(r, testKey(t)); err != nil {
				t.Fatal(err)
			}
			data, _ := Marshal(r)
			return data
		}(), func(ads []any, sig map[string]any) []any {
			doc, _ := parseStrict(one)
			sig["addenda_head"] = doc.(map[string]any)["signature"].(map[string]any)["addenda_head"]
			return doc.(map[string]any)["addenda"].([]any)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := addendaEdit(t, tc.data, tc.f)
			for _, key := range []ed25519.PublicKey{nil, pub} {
				if v, err := Verify(b, key); err == nil || v.OK() || v.Audit != nil {
					t.Errorf("verified (key supplied: %v)", key != nil)
				}
			}
		})
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A failed audit is sealed too, and says why; its HTML and summary say so.
func TestFailedAuditIsSealed(t *testing.T) {
	r, _ := sealedPending(t)
	a := testAddendum()
	a.Status, a.Error, a.Lynis, a.Attempts = AuditFailed, "lynis: exit status 1: \x1b[31mFatal\x1b[0m", nil, 3
	if err := AppendAddendum(r, a, testKey(t)); err != nil {
		t.Fatal(err)
	}
	data, _ := Marshal(r)
	v, err := Verify(data, testKey(t).Public().(ed25519.PublicKey))
	if err != nil || v.Audit.Status != AuditFailed || v.Audit.Attempts != 3 {
		t.Fatalf("%v %+v", err, v.Audit)
	}
	var out bytes.Buffer
	if err := WriteSummary(&out, r, v); err != nil {
		t.Fatal(err)
	}
	assertTerminalSafe(t, out.String())
	if !strings.Contains(out.String(), `lynis      failed after 3 attempt(s), sealed in addendum 1: lynis: exit status 1: \x1b[31mFatal`) {
		t.Errorf("summary:\n%s", out.String())
	}
	var page bytes.Buffer
	if err := RenderHTML(&page, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(page.String(), "<strong>failed</strong> after 3 attempt(s)") {
		t.Error("the HTML does not say the audit failed")
	}
}

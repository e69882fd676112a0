package report

import (
	"bytes"
	"crypto/ed25519"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// Vectors from RFC 8785 (Appendix B and section 3.2.3) and ECMAScript.
func TestES6Number(t *testing.T) {
	cases := []struct {
		in   float64
		want string
	}{
		{0, "0"},
		{math.Copysign(0, -1), "0"},
		{1, "1"},
		{-1, "-1"},
		{63, "63"},
		{1e21, "1e+21"},
		{1e20, "100000000000000000000"},
		{123456789012345680000, "123456789012345680000"},
		{1e-6, "0.000001"},
		{1e-7, "1e-7"},
		{0.1, "0.1"},
		{333333333.3333333, "333333333.3333333"},
		{5e-324, "5e-324"},
		{1.7976931348623157e308, "1.7976931348623157e+308"},
		{-1.5e-9, "-1.5e-9"},
		{9007199254740992, "9007199254740992"},
		{4.5, "4.5"},
		{2e-3, "0.002"},
	}
	for _, tc := range cases {
		if got := es6Number(tc.in); got != tc.want {
			t.Errorf("es6Number(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCanonical(t *testing.T) {
	cases := []struct{ in, want string }{
		// RFC 8785 section 3.2.3: sorting by UTF-16 code units.
		{`{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}`,
			"{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"\u00f6\":\"Latin Small Letter O With Diaeresis\",\"\u20ac\":\"Euro Sign\",\"\U0001F600\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}"},
		// RFC 8785 section 3.2.2: literals, numbers and strings.
		{`{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001], "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/", "literals": [null, true, false]}`,
			`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`},
		{` [ "<&>", "\u2028", "\u007f", "\t" ] `, "[\"<&>\",\"\u2028\",\"\u007f\",\"\\t\"]"},
		{`{}`, `{}`},
		{`{"b":[],"a":{"d":1,"c":2}}`, `{"a":{"c":2,"d":1},"b":[]}`},
	}
	for _, tc := range cases {
		v, err := parseStrict([]byte(tc.in))
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		got, err := canonical(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tc.want {
			t.Errorf("canonical(%s)\n got  %s\n want %s", tc.in, got, tc.want)
		}
	}
}

func TestParseStrictRefuses(t *testing.T) {
	for _, in := range []string{
		`{"a":1,"a":1}`,
		`{"a":{"b":1,"b":2}}`,
		`[1] [2]`,
		`{"a":1`,
		"\"\xff\"",
		``,
		`{"a":1e400}`,
	} {
		v, err := parseStrict([]byte(in))
		if err == nil {
			_, err = canonical(nil, v)
		}
		if err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// An auditor's own tools must reach the same hashes. The package comment
// promises that jq does for v1 reports; hold it to that, and to sha256sum.
func TestHashesReproducibleWithJQ(t *testing.T) {
	if _, err := exec.LookPath("jq"); err != nil {
		t.Skip("jq is not installed (apt-get install jq)")
	}
	r, data := sealed(t)
	path := t.TempDir() + "/report.json"
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sha := func(filter string) string {
		t.Helper()
		out, err := exec.Command("sh", "-c", "jq -cjS '"+filter+"' "+path+" | sha256sum").Output()
		if err != nil {
			t.Fatalf("jq %s: %v", filter, err)
		}
		return strings.Fields(string(out))[0]
	}
	if got := sha(".header"); got != r.Signature.HeaderSHA256 {
		t.Errorf("jq header hash %s, report says %s", got, r.Signature.HeaderSHA256)
	}
	for i, rec := range r.Records {
		if got := sha(".records[" + strconv.Itoa(i) + "] | del(.hash)"); got != rec.Hash {
			t.Errorf("jq hash of records[%d] %s, report says %s", i, got, rec.Hash)
		}
	}
	for i, a := range r.Addenda {
		if got := sha(".addenda[" + strconv.Itoa(i) + "] | del(.hash)"); got != a.Hash {
			t.Errorf("jq hash of addenda[%d] %s, report says %s", i, got, a.Hash)
		}
	}
	if len(r.Addenda) == 0 || r.Addenda[0].PrevHash != r.Signature.ChainHead || r.Signature.AddendaHead != r.Addenda[len(r.Addenda)-1].Hash {
		t.Errorf("addenda do not chain from the chain head to the addenda head: %+v", r.Signature)
	}
	// And the signature with nothing but the standard library's Ed25519 over
	// the documented message.
	msg := "omertaos.dev/firstboot-report/v2\nheader_sha256=" + r.Signature.HeaderSHA256 + "\nchain_head=" + r.Signature.ChainHead +
		"\naddenda_head=" + r.Signature.AddendaHead + "\n"
	if !bytes.Equal([]byte(msg), SignedMessage(r.Signature.HeaderSHA256, r.Signature.ChainHead, r.Signature.AddendaHead)) {
		t.Error("SignedMessage differs from the documented message")
	}
	if !ed25519.Verify(testKey(t).Public().(ed25519.PublicKey), []byte(msg), mustB64(t, r.Signature.Value)) {
		t.Error("signature does not verify over the documented message")
	}
}

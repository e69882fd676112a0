package apiclient

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// FuzzResponse feeds arbitrary response bodies to what the client does with
// them: decoding never panics, and the message kept from an error answer is
// bounded and, once quoted by Error, free of control characters.
func FuzzResponse(f *testing.F) {
	for _, s := range []string{
		`{"error":"query parameter limit: must be between 1 and 1000"}`,
		`{"error":"a\r\n\u001b[2KVERIFIED"}`,
		`{"probe_id":1,"verdict":{"profile":"user","status":"warn","checks":[]},"result":{"schema_version":"1"}}`,
		`[{"seq":1,"detail":{}}]`,
		`<html>` + strings.Repeat("x", 2000),
		"\xff\xfe", `{"error":`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var pv apitype.ProbeView
		_ = decode(body, &pv)
		var recs []apitype.AuditRecord
		_ = decode(body, &recs)
		msg := errorMessage(body)
		if len(msg) > maxMessage+len("…") {
			t.Fatalf("message of %d bytes kept", len(msg))
		}
		e := (&Error{Method: "GET", Path: "/x", Status: 400, Message: msg}).Error()
		if strings.ContainsFunc(e, func(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }) || !utf8.ValidString(e) {
			t.Fatalf("Error() = %q holds a control character or invalid UTF-8", e)
		}
	})
}

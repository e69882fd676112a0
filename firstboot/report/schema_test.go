package report

import (
	"bytes"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema))
	if err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	c.AssertContent()
	const url = "https://omertaos.dev/firstboot-report/v2"
	if err := c.AddResource(url, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(url)
	if err != nil {
		t.Fatalf("published schema does not compile: %v", err)
	}
	return s
}

// The published schema must describe what Seal and AppendAddendum write,
// including the variants the fixture does not hold (audit pending,
// skipped or failed, no records).
func TestSchemaAcceptsSealedReports(t *testing.T) {
	s := compileSchema(t)
	_, full := sealed(t)
	_, pending := sealedPending(t)
	bare := testReport()
	bare.Records, bare.Header.Site.Sources, bare.Header.Steps = nil, nil, nil
	bare.Header.LynisAudit = LynisAudit{Status: AuditSkipped, Reason: "Lynis is not installed"}
	bare.Header.GPUExtension = nil
	if err := Seal(bare, testKey(t)); err != nil {
		t.Fatal(err)
	}
	bareData, _ := Marshal(bare)
	failed, _ := sealedPending(t)
	a := testAddendum()
	a.Status, a.Error, a.Lynis = AuditFailed, "lynis: exit status 1", nil
	if err := AppendAddendum(failed, a, testKey(t)); err != nil {
		t.Fatal(err)
	}
	failedData, _ := Marshal(failed)
	unreadable := testReport()
	unreadable.Header.GPUExtension = &GPUExtension{Outcome: GPUExtensionUnreadable, Reason: "/run/omerta/gpu-extension.json: state: outcome: \"x\" is not one of merged, not-merged, refused, failed"}
	if err := Seal(unreadable, testKey(t)); err != nil {
		t.Fatal(err)
	}
	unreadableData, _ := Marshal(unreadable)
	for name, data := range map[string][]byte{"full": full, "pending": pending, "bare": bareData, "failed": failedData, "unreadable": unreadableData} {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(doc); err != nil {
			t.Errorf("%s report fails the published schema: %v", name, err)
		}
	}
}

func TestSchemaRefusesWhatVerifyRefuses(t *testing.T) {
	s := compileSchema(t)
	_, data := sealed(t)
	for name, edit := range map[string][2]string{
		"result outside XCCDF":  {`"result": "fail"`, `"result": "failed"`},
		"unknown member":        {`"hostname":`, `"owner": "x", "hostname":`},
		"other version":         {`"schema_version": "omertaos.dev/firstboot-report/v2"`, `"schema_version": "omertaos.dev/firstboot-report/v1"`},
		"addendum kind":         {`"kind": "lynis"`, `"kind": "nmap"`},
		"done with an error":    {"\"error\": \"\",\n      \"attempts\"", "\"error\": \"x\",\n      \"attempts\""},
		"deferred with reason":  {"\"status\": \"deferred\",\n      \"reason\": \"\"", "\"status\": \"deferred\",\n      \"reason\": \"x\""},
		"no addenda head":       {`"addenda_head":`, `"addenda_tail":`},
		"null list":             {`"steps": [`, `"steps": null, "x": [`},
		"bad profile":           {`"profile": "pro"`, `"profile": "gold"`},
		"bad time":              {`"started_at": "2025-03-14T09:26:53Z"`, `"started_at": "yesterday"`},
		"CR in hostname":        {`"hostname": "omerta-7f3a2c"`, `"hostname": "omerta\r7f3a2c"`},
		"ESC in record id":      {`"id": "cis.3.3.1.ip_forward"`, `"id": "\u001b[2Kcis.3.3.1.ip_forward"`},
		"bidi in step name":     {`"name": "keys"`, `"name": "keys\u202e"`},
		"C1 in tool name":       {`"kernel":`, `"kernel\u009b":`},
		"gpu_extension outcome": {`"outcome": "merged"`, `"outcome": "maybe"`},
		"gpu_extension member":  {`"forced": false,`, `"forced": false, "gpus": [],`},
	} {
		bad := strings.Replace(string(data), edit[0], edit[1], 1)
		if bad == string(data) {
			t.Fatalf("%s: edit did not apply", name)
		}
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(bad))
		if err != nil {
			continue // not even JSON; nothing for the schema to say
		}
		if err := s.Validate(doc); err == nil {
			t.Errorf("%s: schema accepts it", name)
		}
	}
}

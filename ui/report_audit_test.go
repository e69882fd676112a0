package ui

import (
	"encoding/json"
	"testing"
)

func TestReportAuditState(t *testing.T) {
	for _, tc := range []struct {
		name, report string
		want         auditView
	}{
		{"sealed", `{"header":{"lynis_audit":{"status":"deferred"}},"addenda":[{"kind":"lynis","status":"done","lynis":{"version":"3.1.4","index":85,"warnings":["w"]}}]}`,
			auditView{State: "done", Version: "3.1.4", Index: 85, Warnings: []string{"w"}}},
		{"running", `{"header":{"lynis_audit":{"status":"deferred"}},"addenda":[]}`, auditView{State: "running"}},
		{"skipped", `{"header":{"lynis_audit":{"status":"skipped","reason":"firstboot.lynis is false"}}}`, auditView{State: "skipped", Reason: "firstboot.lynis is false"}},
		{"failed", `{"header":{"lynis_audit":{"status":"deferred"}},"addenda":[{"kind":"lynis","status":"failed","error":"lynis: exit 1"}]}`, auditView{State: "failed", Reason: "lynis: exit 1"}},
		{"retried: the last one counts", `{"header":{"lynis_audit":{"status":"deferred"}},"addenda":[{"kind":"lynis","status":"failed","error":"x"},{"kind":"lynis","status":"done","lynis":{"index":80}}]}`,
			auditView{State: "done", Index: 80}},
		{"other kinds are not the audit", `{"header":{"lynis_audit":{"status":"deferred"}},"addenda":[{"kind":"other","status":"done"}]}`, auditView{State: "running"}},
		{"a report without audit fields", `{"header":{}}`, auditView{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r reportAuditJSON
			if err := json.Unmarshal([]byte(tc.report), &r); err != nil {
				t.Fatal(err)
			}
			got := r.audit()
			if got.State != tc.want.State || got.Reason != tc.want.Reason || got.Index != tc.want.Index || got.Version != tc.want.Version || len(got.Warnings) != len(tc.want.Warnings) {
				t.Errorf("audit() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

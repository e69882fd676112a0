package ui

// The Lynis audit runs after first boot (omerta-lynis.service) and is
// sealed into the report as an addendum: until then the report's header
// says it is deferred. The console shows which, so that a person who opens
// the report during the audit is told it is still running.

// reportAuditJSON is the part of a v2 report that says where the audit is.
type reportAuditJSON struct {
	Header struct {
		LynisAudit struct {
			Status string `json:"status"`
			Reason string `json:"reason"`
		} `json:"lynis_audit"`
	} `json:"header"`
	Addenda []struct {
		Kind   string `json:"kind"`
		Status string `json:"status"`
		Error  string `json:"error"`
		Lynis  *struct {
			Version  string   `json:"version"`
			Index    int      `json:"index"`
			Warnings []string `json:"warnings"`
		} `json:"lynis"`
	} `json:"addenda"`
}

// auditView is the audit as the pages show it. State is "running",
// "done", "failed", "skipped" or "" (the report says nothing of it).
type auditView struct {
	State    string
	Reason   string // why it was skipped or failed; foreign text, escaped by the template
	Version  string
	Index    int
	Warnings []string
}

// audit reads the audit's state: the last Lynis addendum decides, and
// without one the header's deferred or skipped.
func (r reportAuditJSON) audit() auditView {
	for i := len(r.Addenda) - 1; i >= 0; i-- {
		a := r.Addenda[i]
		if a.Kind != "lynis" {
			continue
		}
		v := auditView{State: a.Status, Reason: a.Error}
		if a.Lynis != nil {
			v.Version, v.Index, v.Warnings = a.Lynis.Version, a.Lynis.Index, a.Lynis.Warnings
		}
		return v
	}
	switch r.Header.LynisAudit.Status {
	case "deferred":
		return auditView{State: "running"}
	case "skipped":
		return auditView{State: "skipped", Reason: r.Header.LynisAudit.Reason}
	}
	return auditView{}
}

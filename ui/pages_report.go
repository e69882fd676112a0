package ui

import (
	"encoding/json"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apitype"
)

type reportRecord struct {
	Seq      int    `json:"seq"`
	ID       string `json:"id"`
	Title    string `json:"title"`
	Expected string `json:"expected"`
	Actual   string `json:"actual"`
	Result   string `json:"result"`
	Waiver   string `json:"waiver"`
}

type reportDoc struct {
	Header struct {
		SchemaVersion string `json:"schema_version"`
		Image         struct {
			Version string `json:"version"`
			Digest  string `json:"digest"`
		} `json:"image"`
		MachineID  string         `json:"machine_id"`
		Hostname   string         `json:"hostname"`
		Profile    string         `json:"profile"`
		StartedAt  time.Time      `json:"started_at"`
		FinishedAt time.Time      `json:"finished_at"`
		Summary    map[string]int `json:"summary"`
		Probe      struct {
			Status string `json:"status"`
		} `json:"probe"`
	} `json:"header"`
	Records   []reportRecord `json:"records"`
	Signature struct {
		Algorithm      string `json:"algorithm"`
		KeyFingerprint string `json:"key_fingerprint"`
	} `json:"signature"`
}

type reportData struct {
	Doc          reportDoc
	Audit        auditView
	Verification apitype.ReportVerification
	Unreadable   bool
}

func (s *Server) reportPage(c *fiber.Ctx) error {
	w := who(c)
	if !can(w, actReportsRead) {
		return s.errorPage(c, fiber.StatusForbidden, "Your role ("+w.Role+") may not read the first-boot report.")
	}
	r, err := api(c).Report(c.UserContext())
	if err != nil {
		if statusOf(err) == fiber.StatusNotFound {
			return s.render(c, fiber.StatusOK, "report", &page{Title: "First-boot report", Nav: "report", Who: w, CSRF: w.CSRFToken, D: nil})
		}
		return s.backendError(c, err)
	}
	d := &reportData{Verification: r.Verification}
	var a reportAuditJSON
	if err := json.Unmarshal(r.Report, &d.Doc); err != nil || json.Unmarshal(r.Report, &a) != nil {
		d.Unreadable = true
	}
	d.Audit = a.audit()
	return s.render(c, fiber.StatusOK, "report", &page{Title: "First-boot report", Nav: "report", Who: w, CSRF: w.CSRFToken, D: d})
}

// reportJSON downloads the report as omertad serves it, to be verified
// offline (`omerta report verify`).
func (s *Server) reportJSON(c *fiber.Ctx) error {
	r, err := api(c).Report(c.UserContext())
	if err != nil {
		return s.backendError(c, err)
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="firstboot-report.json"`)
	return c.Send(r.Report)
}

// reportHTML downloads the report's HTML rendering. It is a document of
// its own (with its own styles), so it is an attachment, sandboxed should
// a browser show it anyway.
func (s *Server) reportHTML(c *fiber.Ctx) error {
	b, err := api(c).ReportHTML(c.UserContext())
	if err != nil {
		return s.backendError(c, err)
	}
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="firstboot-report.html"`)
	c.Set("Content-Security-Policy", ContentSecurityPolicy+"; sandbox")
	return c.Send(b)
}

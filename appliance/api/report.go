package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/rootfs"
	"github.com/omertaos/omertaos/firstboot/report"
)

// ReportFiles are where the first-boot report and the device's public key
// are (firstboot.ReportPath and firstboot.SigningPubPath on the
// appliance), inside Root. A zero Root leaves the report routes out.
type ReportFiles struct {
	Root          rootfs.Root
	ReportPath    string
	PublicKeyPath string
}

// Bounds of what the report routes read. A report is tens of kilobytes;
// the cap leaves the answer, report and verification together, well
// inside the client's response cap (apiclient.DefaultMaxResponse).
const (
	maxReportBytes    = 4 << 20
	maxPublicKeyBytes = 64 << 10
)

// reportRoutes serves GET /report (the report as stored, with what
// verifying it against the device's public key found) and GET
// /report.html (the same, rendered as a printable page).
func (s *Server) reportRoutes(v1 fiber.Router) {
	v1.Get("/report", s.getReport)
	v1.Get("/report.html", s.getReportHTML)
}

// verifiedReport reads and verifies the report, or finds both done in
// the cache (see reportCache). A report that does not verify is not an
// error here: the verification says what failed. Misses are verified one
// at a time, so that a burst of requests verifies once.
func (s *Server) verifiedReport() (*reportEntry, error) {
	f, c := s.deps.Report, &s.report
	ids := [2]fileID{statID(f.Root, f.ReportPath), statID(f.Root, f.PublicKeyPath)} // before the reads
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.lookup(ids); e != nil {
		return e, nil
	}
	data, err := f.Root.ReadFile(f.ReportPath, maxReportBytes)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fiber.NewError(fiber.StatusNotFound, "no first-boot report at "+f.ReportPath+" yet: first boot has not finished")
	}
	if err != nil {
		return nil, fmt.Errorf("reading the first-boot report: %w", err)
	}
	key, keyErr := f.Root.ReadFile(f.PublicKeyPath, maxPublicKeyBytes)
	sum := contentSum(data, key, keyErr)
	if c.entry == nil || c.entry.sum != sum {
		c.entry = &reportEntry{sum: sum, data: data, v: verifyReport(data, key, keyErr, f.PublicKeyPath)}
	}
	c.ids = ids
	return c.entry, nil
}

// verifyReport checks data against the device's public key (key, or why
// it could not be read).
func verifyReport(data, key []byte, keyErr error, keyPath string) *report.Verification {
	opts := report.VerifyOptions{MaxBytes: maxReportBytes}
	keyProblem := keyErr
	if keyErr == nil {
		var err error
		if opts.PublicKey, err = report.ParsePublicKey(key); err != nil {
			keyProblem = fmt.Errorf("%s: %w", keyPath, err)
		}
	}
	v, _ := report.VerifyWith(data, opts) // failures are in v
	if keyProblem != nil {
		v.Warnings = append([]string{"the device's public key could not be read (" + keyProblem.Error() +
			"): the report was checked against the key inside it only"}, v.Warnings...)
	}
	return v
}

func (s *Server) getReport(c *fiber.Ctx) error {
	e, err := s.verifiedReport()
	if err != nil {
		return err
	}
	b, err := e.json()
	if err != nil {
		return fmt.Errorf("encoding the first-boot report's answer: %w", err)
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(b)
}

// reportView is GET /report's answer: the report as stored, with what
// verifying it found.
func reportView(data []byte, v *report.Verification) apitype.ReportView {
	out := apitype.ReportView{Report: json.RawMessage("null"), Verification: verificationView(v)}
	if json.Valid(data) {
		out.Report = json.RawMessage(bytes.TrimSpace(data))
	}
	if r := v.Report; r != nil {
		out.Summary = reportSummary(r)
	}
	return out
}

func (s *Server) getReportHTML(c *fiber.Ctx) error {
	e, err := s.verifiedReport()
	if err != nil {
		return err
	}
	v := e.v
	if v.Report == nil {
		return fiber.NewError(fiber.StatusUnprocessableEntity, "the first-boot report cannot be rendered: "+verificationView(v).Error)
	}
	var buf bytes.Buffer
	if err := report.RenderHTMLVerified(&buf, v.Report, v); err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	// The page is self-contained: its own style sheet, no script at all.
	// Only the style blocks it was rendered with may apply, by hash, so
	// that nothing injected into it could style or run.
	c.Set(fiber.HeaderContentSecurityPolicy, "default-src 'none'; style-src "+styleSources(buf.Bytes())+
		"; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	return c.Send(buf.Bytes())
}

// styleSources lists the hashes of page's <style> blocks for a CSP
// style-src, or 'none'.
func styleSources(page []byte) string {
	var srcs []string
	for rest := page; ; {
		_, after, ok := bytes.Cut(rest, []byte("<style>"))
		if !ok {
			break
		}
		css, tail, ok := bytes.Cut(after, []byte("</style>"))
		if !ok {
			break
		}
		sum := sha256.Sum256(css)
		srcs = append(srcs, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
		rest = tail
	}
	if len(srcs) == 0 {
		return "'none'"
	}
	return strings.Join(srcs, " ")
}

func verificationView(v *report.Verification) apitype.ReportVerification {
	out := apitype.ReportVerification{
		Status: apitype.ReportFailed, Trusted: v.Trusted, KeySource: string(v.KeySource), Fingerprint: v.Fingerprint,
		Checks: make([]apitype.ReportCheck, 0, len(v.Checks)), Warnings: append([]string{}, v.Warnings...),
	}
	switch {
	case v.OK() && v.Trusted:
		out.Status = apitype.ReportVerified
	case v.OK():
		out.Status = apitype.ReportSelfConsistent
	}
	for _, ch := range v.Checks {
		out.Checks = append(out.Checks, apitype.ReportCheck{Name: ch.Name, OK: ch.OK, Detail: ch.Detail})
	}
	if failed := v.Failed(); len(failed) > 0 {
		out.Error = failed[0].Name + ": " + failed[0].Detail
	}
	return out
}

func reportSummary(r *report.Report) *apitype.ReportSummary {
	h := r.Header
	out := &apitype.ReportSummary{
		Hostname: h.Hostname, Profile: string(h.Profile), ImageVersion: h.Image.Version, FinishedAt: h.FinishedAt,
		ClockTrusted: h.ClockTrusted, ProbeStatus: h.Probe.Status, Records: len(r.Records), Outcomes: map[string]int{},
	}
	for o, n := range h.Summary {
		out.Outcomes[string(o)] = n
	}
	return out
}

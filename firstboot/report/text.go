package report

import (
	"fmt"
	"io"
	"strings"

	"github.com/omertaos/omertaos/appliance/terminal"
)

// WriteVerification prints what v checked, one line per check, then its
// warnings and a last line with the verdict, for `omerta report verify`.
// Every string that may come from the report or the caller is escaped for
// the terminal (terminal.Escape), so that none can rewrite a line or forge
// the verdict.
//
// Unless verbose, a run of passing per-record checks is shown as one line;
// failing checks are always shown one by one.
func WriteVerification(w io.Writer, name string, v *Verification, verbose bool) error {
	ew := &errWriter{w: w}
	name = esc(name)
	run := 0 // passing record checks not yet printed
	flush := func() {
		if run > 0 {
			ew.printf("ok    %d records: seq, hash and link ok\n", run)
			run = 0
		}
	}
	for _, c := range v.Checks {
		if c.OK && !verbose && strings.HasPrefix(c.Name, "record ") {
			run++
			continue
		}
		flush()
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		ew.printf("%s  %s: %s\n", mark, esc(c.Name), esc(c.Detail))
	}
	flush()
	for _, warn := range v.Warnings {
		ew.printf("\nWARNING: %s.\n", esc(warn))
	}
	switch {
	case !v.OK():
		ew.printf("\n%s: DOES NOT VERIFY (%d of %d checks failed)\n", name, len(v.Failed()), len(v.Checks))
	case v.Trusted:
		ew.printf("\n%s: VERIFIED: signed by the trusted key %s\n", name, esc(v.Fingerprint))
	default:
		ew.printf("\n%s: SELF-CONSISTENT ONLY: signed by the key inside it, %s; compare with the key on the appliance's console\n", name, esc(v.Fingerprint))
	}
	return ew.err
}

// WriteSummary prints a short overview of r for a terminal, with the
// signature status from v. Every string from the report is escaped for the
// terminal: r may be one that failed verification.
func WriteSummary(w io.Writer, r *Report, v *Verification) error {
	ew := &errWriter{w: w}
	writeHeader(ew, &r.Header)
	writeAudit(ew, r)
	var counts []string
	for _, o := range Outcomes {
		if n := r.Header.Summary[o]; n > 0 {
			counts = append(counts, fmt.Sprintf("%d %s", n, o))
		}
	}
	ew.printf("  controls   %d: %s\n", len(r.Records), strings.Join(counts, ", "))
	for _, rec := range r.Records {
		switch {
		case rec.Result == OutcomeFail || rec.Result == OutcomeError:
			ew.printf("    %-13s %s: expected %q, found %q\n", rec.Result, esc(rec.ID), rec.Expected, rec.Actual)
		case rec.Waiver != "":
			ew.printf("    %-13s %s: waived: %s\n", esc(string(rec.Result)), esc(rec.ID), esc(rec.Waiver))
		}
	}
	switch {
	case v == nil:
		ew.printf("  signature  not checked\n")
	case !v.OK():
		ew.printf("  signature  DOES NOT VERIFY: %s: %s\n", esc(v.Failed()[0].Name), esc(v.Failed()[0].Detail))
	case v.Trusted:
		ew.printf("  signature  verified, trusted key %s\n", esc(v.Fingerprint))
	default:
		ew.printf("  signature  self-consistent, key %s (not checked against a trusted key)\n", esc(v.Fingerprint))
	}
	return ew.err
}

func writeHeader(ew *errWriter, h *Header) {
	ew.printf("OMERTAOS first-boot report (%s)\n", esc(h.SchemaVersion))
	ew.printf("  host       %s  machine-id %s\n", esc(h.Hostname), esc(h.MachineID))
	ew.printf("  image      %s %s\n", esc(h.Image.Version), esc(h.Image.Digest))
	ew.printf("  profile    %s\n", esc(string(h.Profile)))
	clock := "clock synchronised"
	if !h.ClockTrusted {
		clock = "clock NOT synchronised"
	}
	ew.printf("  ran        %s .. %s (%s), %d attempt(s)\n", h.StartedAt.Format("2006-01-02 15:04:05Z07:00"), h.FinishedAt.Format("15:04:05Z07:00"), clock, h.Attempts)
	ew.printf("  probe      %s (%d checks)\n", esc(h.Probe.Status), len(h.Probe.Checks))
	if g := h.GPUExtension; g != nil {
		ew.printf("  nvidia     %s\n", esc(g.Describe()))
	}
	for _, p := range h.Site.Problems {
		ew.printf("  site       %s\n", esc(p))
	}
}

// writeAudit prints the Lynis audit's state and, when it is done, its
// warnings.
func writeAudit(ew *errWriter, r *Report) {
	st := r.AuditState()
	ew.printf("  lynis      %s\n", esc(st.Describe()))
	if st.Lynis != nil {
		for _, w := range st.Lynis.Warnings {
			ew.printf("    warning       %s\n", esc(w))
		}
	}
}

// esc is terminal.Escape, short for the many format calls above.
func esc(s string) string { return terminal.Escape(s) }

// errWriter keeps the first write error so a run of prints needs one check.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

package report

import (
	"fmt"
	"io"
	"strings"
)

// WriteVerification prints what v checked, one line per check, then its
// warnings and a last line with the verdict, for `omerta report verify`.
//
// Unless verbose, a run of passing per-record checks is shown as one line;
// failing checks are always shown one by one.
func WriteVerification(w io.Writer, name string, v *Verification, verbose bool) error {
	ew := &errWriter{w: w}
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
		ew.printf("%s  %s: %s\n", mark, c.Name, c.Detail)
	}
	flush()
	for _, warn := range v.Warnings {
		ew.printf("\nWARNING: %s.\n", warn)
	}
	switch {
	case !v.OK():
		ew.printf("\n%s: DOES NOT VERIFY (%d of %d checks failed)\n", name, len(v.Failed()), len(v.Checks))
	case v.Trusted:
		ew.printf("\n%s: VERIFIED: signed by the trusted key %s\n", name, v.Fingerprint)
	default:
		ew.printf("\n%s: SELF-CONSISTENT ONLY: signed by the key inside it, %s; compare with the key on the appliance's console\n", name, v.Fingerprint)
	}
	return ew.err
}

// WriteSummary prints a short overview of r for a terminal, with the
// signature status from v.
func WriteSummary(w io.Writer, r *Report, v *Verification) error {
	ew := &errWriter{w: w}
	h := r.Header
	ew.printf("OMERTAOS first-boot report (%s)\n", h.SchemaVersion)
	ew.printf("  host       %s  machine-id %s\n", h.Hostname, h.MachineID)
	ew.printf("  image      %s %s\n", h.Image.Version, h.Image.Digest)
	ew.printf("  profile    %s\n", h.Profile)
	clock := "clock synchronised"
	if !h.ClockTrusted {
		clock = "clock NOT synchronised"
	}
	ew.printf("  ran        %s .. %s (%s), %d attempt(s)\n", h.StartedAt.Format("2006-01-02 15:04:05Z07:00"), h.FinishedAt.Format("15:04:05Z07:00"), clock, h.Attempts)
	ew.printf("  probe      %s (%d checks)\n", h.Probe.Status, len(h.Probe.Checks))
	if h.Lynis != nil {
		ew.printf("  lynis      index %d, %d warning(s), %d suggestion(s) (Lynis %s)\n", h.Lynis.Index, len(h.Lynis.Warnings), h.Lynis.Suggestions, h.Lynis.Version)
	} else {
		ew.printf("  lynis      not run\n")
	}
	for _, p := range h.Site.Problems {
		ew.printf("  site       %s\n", p)
	}
	var counts []string
	for _, o := range Outcomes {
		if n := h.Summary[o]; n > 0 {
			counts = append(counts, fmt.Sprintf("%d %s", n, o))
		}
	}
	ew.printf("  controls   %d: %s\n", len(r.Records), strings.Join(counts, ", "))
	for _, rec := range r.Records {
		switch {
		case rec.Result == OutcomeFail || rec.Result == OutcomeError:
			ew.printf("    %-13s %s: expected %q, found %q\n", rec.Result, rec.ID, rec.Expected, rec.Actual)
		case rec.Waiver != "":
			ew.printf("    %-13s %s: waived: %s\n", rec.Result, rec.ID, rec.Waiver)
		}
	}
	switch {
	case v == nil:
		ew.printf("  signature  not checked\n")
	case !v.OK():
		ew.printf("  signature  DOES NOT VERIFY: %s: %s\n", v.Failed()[0].Name, v.Failed()[0].Detail)
	case v.Trusted:
		ew.printf("  signature  verified, trusted key %s\n", v.Fingerprint)
	default:
		ew.printf("  signature  self-consistent, key %s (not checked against a trusted key)\n", v.Fingerprint)
	}
	return ew.err
}

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

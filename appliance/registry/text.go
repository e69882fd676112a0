package registry

import (
	"fmt"
	"io"
	"strings"

	"github.com/omertaos/omertaos/appliance/terminal"
)

// WriteText prints r for a person: the registry and the keys, one line per
// finding (the right ones too), then the verdict. Every line goes through
// terminal.Escape: a registry's names cannot rewrite the terminal.
func WriteText(w io.Writer, r *Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "registry  %s\n", terminal.Escape(r.Dir))
	keys := "no trusted key"
	if len(r.TrustedKeys) > 0 {
		keys = fmt.Sprintf("%d trusted key(s): %s", len(r.TrustedKeys), strings.Join(r.TrustedKeys, ", "))
	}
	dir := r.TrustDir
	if dir == "" {
		dir = "(keys given directly)"
	}
	fmt.Fprintf(&b, "trust     %s: %s\n", terminal.Escape(dir), keys)
	fmt.Fprintf(&b, "contents  %d lock entries, %d catalog entries\n", r.LockEntries, r.CatalogEntries)
	for _, f := range r.Findings {
		// "ok    x: ok: ..." would say it twice.
		line := f.text(f.Code != CodeOK)
		fmt.Fprintf(&b, "%-5s %s\n", label(f.Severity), terminal.Escape(line))
	}
	verdict := "VERIFIED"
	if !r.OK() {
		verdict = "DOES NOT VERIFY"
	}
	fmt.Fprintf(&b, "%d ok, %d warnings, %d failures: %s\n", r.Counts.OK, r.Counts.Warnings, r.Counts.Failures, verdict)
	_, err := io.WriteString(w, b.String())
	return err
}

func label(s Severity) string {
	switch s {
	case SeverityOK:
		return "ok"
	case SeverityWarning:
		return "warn"
	}
	return "FAIL"
}

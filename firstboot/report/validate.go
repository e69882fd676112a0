package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/terminal"
)

var (
	hexSHA256   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	imageDigest = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

// validate checks what the schema cannot express and what a reader relies
// on; each error names the field and the reason.
func validate(r *Report) error {
	h := &r.Header
	if err := validateIdentifiers(r); err != nil {
		return err
	}
	if h.SchemaVersion != SchemaVersion {
		return fmt.Errorf("header.schema_version: %q is not %q", h.SchemaVersion, SchemaVersion)
	}
	if h.Image.Digest != "" && !imageDigest.MatchString(h.Image.Digest) {
		return fmt.Errorf("header.image.digest: %q is not sha256:<64 lowercase hex>", h.Image.Digest)
	}
	if err := utc("header.started_at", h.StartedAt); err != nil {
		return err
	}
	if err := utc("header.finished_at", h.FinishedAt); err != nil {
		return err
	}
	if _, err := config.ParseProfile(string(h.Profile)); err != nil {
		return fmt.Errorf("header.profile: %w", err)
	}
	if h.Attempts < 1 {
		return fmt.Errorf("header.attempts: %d is not a positive count", h.Attempts)
	}
	if !slices.Contains(probeStatuses, h.Probe.Status) {
		return fmt.Errorf("header.probe.status: %q is not one of pass, warn, fail, error", h.Probe.Status)
	}
	if err := validateLynisAudit(h.LynisAudit); err != nil {
		return err
	}
	if err := validateGPUExtension(h.GPUExtension); err != nil {
		return err
	}
	for i, s := range h.Steps {
		if s.Name == "" {
			return fmt.Errorf("header.steps[%d].name: empty", i)
		}
		if err := utc(fmt.Sprintf("header.steps[%d].started_at", i), s.StartedAt); err != nil {
			return err
		}
		if err := utc(fmt.Sprintf("header.steps[%d].finished_at", i), s.FinishedAt); err != nil {
			return err
		}
		if s.Attempts < 0 {
			return fmt.Errorf("header.steps[%d].attempts: %d is negative", i, s.Attempts)
		}
	}
	if r.Records == nil || r.Addenda == nil {
		return errors.New("records and addenda: null, want a list (empty when there are none)")
	}
	if err := validateRecords(r.Records); err != nil {
		return err
	}
	return validateAddenda(r.Addenda, h.LynisAudit)
}

func validateLynisAudit(la LynisAudit) error {
	switch la.Status {
	case AuditDeferred:
		if la.Reason != "" {
			return fmt.Errorf("header.lynis_audit.reason: %q, but a deferred audit has no reason", la.Reason)
		}
	case AuditSkipped:
		if la.Reason == "" {
			return errors.New("header.lynis_audit.reason: empty; a skipped audit says why")
		}
	default:
		return fmt.Errorf("header.lynis_audit.status: %q is not one of deferred, skipped", la.Status)
	}
	return nil
}

var gpuExtensionOutcomes = []string{GPUExtensionMerged, GPUExtensionNotMerged, GPUExtensionRefused, GPUExtensionFailed, GPUExtensionUnreadable}

// validateGPUExtension checks header.gpu_extension, when present.
func validateGPUExtension(g *GPUExtension) error {
	if g == nil {
		return nil
	}
	if !slices.Contains(gpuExtensionOutcomes, g.Outcome) {
		return fmt.Errorf("header.gpu_extension.outcome: %q is not one of merged, not-merged, refused, failed, unreadable", g.Outcome)
	}
	if g.Reason == "" {
		return errors.New("header.gpu_extension.reason: empty; every outcome says why")
	}
	if g.SHA256 != "" && !hexSHA256.MatchString(g.SHA256) {
		return fmt.Errorf("header.gpu_extension.sha256: %q is not 64 lowercase hex digits", g.SHA256)
	}
	return identifiers("header.gpu_extension", "outcome", g.Outcome, "driver_version", g.DriverVersion, "modules", g.Modules, "kernel", g.Kernel)
}

// validateAddenda checks each addendum and their order: only a deferred
// audit takes one, and nothing follows the one that sealed a result.
func validateAddenda(ads []Addendum, la LynisAudit) error {
	sealed := -1
	for i, a := range ads {
		at := fmt.Sprintf("addenda[%d]", i)
		switch {
		case a.Kind != AddendumLynis:
			return fmt.Errorf("%s.kind: %q is not %q", at, a.Kind, AddendumLynis)
		case la.Status != AuditDeferred:
			return fmt.Errorf("%s: header.lynis_audit says the audit was %s, so it has no result to seal", at, la.Status)
		case sealed >= 0:
			return fmt.Errorf("%s: addenda[%d] already sealed the audit's result", at, sealed)
		case a.Attempts < 1:
			return fmt.Errorf("%s.attempts: %d is not a positive count", at, a.Attempts)
		}
		if err := validateAddendumResult(at, a); err != nil {
			return err
		}
		if a.Status == AuditDone {
			sealed = i
		}
		if err := utc(at+".started_at", a.StartedAt); err != nil {
			return err
		}
		if err := utc(at+".finished_at", a.FinishedAt); err != nil {
			return err
		}
		if a.FinishedAt.Before(a.StartedAt) {
			return fmt.Errorf("%s.finished_at: %s is before started_at %s", at, a.FinishedAt.Format(time.RFC3339), a.StartedAt.Format(time.RFC3339))
		}
	}
	return nil
}

// validateAddendumResult checks that a done audit has a result and no
// error, and a failed one the reverse.
func validateAddendumResult(at string, a Addendum) error {
	switch a.Status {
	case AuditDone:
		l := a.Lynis
		switch {
		case l == nil:
			return fmt.Errorf("%s.lynis: null, but the audit is done", at)
		case a.Error != "":
			return fmt.Errorf("%s.error: %q, but the audit is done", at, a.Error)
		case l.Index < 0 || l.Index > 100:
			return fmt.Errorf("%s.lynis.index: %d is outside 0..100", at, l.Index)
		case l.Suggestions < 0:
			return fmt.Errorf("%s.lynis.suggestions: %d is negative", at, l.Suggestions)
		}
	case AuditFailed:
		if a.Lynis != nil {
			return fmt.Errorf("%s.lynis: set, but the audit failed", at)
		}
		if a.Error == "" {
			return fmt.Errorf("%s.error: empty; a failed audit says why", at)
		}
	default:
		return fmt.Errorf("%s.status: %q is not one of done, failed", at, a.Status)
	}
	return nil
}

// validateRecords checks each record's id, result, time, references and
// evidence.
func validateRecords(recs []Record) error {
	seen := make(map[string]int, len(recs))
	for i, rec := range recs {
		at := fmt.Sprintf("records[%d]", i)
		if rec.ID == "" {
			return fmt.Errorf("%s.id: empty", at)
		}
		if j, dup := seen[rec.ID]; dup {
			return fmt.Errorf("%s.id: %q already used by records[%d]", at, rec.ID, j)
		}
		seen[rec.ID] = i
		if !rec.Result.Valid() {
			_, err := ParseOutcome(string(rec.Result))
			return fmt.Errorf("%s.result: %w", at, err)
		}
		if err := utc(at+".time", rec.Time); err != nil {
			return err
		}
		for j, ref := range rec.References {
			if ref.Scheme == "" || ref.ID == "" {
				return fmt.Errorf("%s.references[%d]: scheme and id must both be set", at, j)
			}
		}
		for j, ev := range rec.Evidence {
			if ev.Source == "" {
				return fmt.Errorf("%s.evidence[%d].source: empty", at, j)
			}
			if ev.SHA256 != "" && !hexSHA256.MatchString(ev.SHA256) {
				return fmt.Errorf("%s.evidence[%d].sha256: %q is not 64 lowercase hex", at, j, ev.SHA256)
			}
		}
	}
	return nil
}

// validateIdentifiers refuses a control or formatting character (see
// terminal.Unsafe) in the values that name things: a record id holding CR
// and ESC sequences could print as a forged verdict, and no honest
// identifier needs one. Free text (titles, evidence, waivers, messages, the
// versions tools print about themselves) may hold anything; it is escaped
// wherever it is printed.
func validateIdentifiers(r *Report) error {
	h := &r.Header
	fields := []struct{ name, value string }{
		{"header.image.version", h.Image.Version},
		{"header.machine_id", h.MachineID},
		{"header.boot_id", h.BootID},
		{"header.hostname", h.Hostname},
		{"header.lynis_audit.status", h.LynisAudit.Status},
	}
	for _, f := range fields {
		if err := identifier(f.name, f.value); err != nil {
			return err
		}
	}
	for _, k := range slices.Sorted(maps.Keys(h.Tools)) {
		if err := identifier("header.tools key", k); err != nil {
			return err
		}
	}
	for i, c := range h.Probe.Checks {
		if err := identifiers(fmt.Sprintf("header.probe.checks[%d]", i), "id", c.ID, "status", c.Status); err != nil {
			return err
		}
	}
	for i, s := range h.Steps {
		if err := identifiers(fmt.Sprintf("header.steps[%d]", i), "name", s.Name, "status", s.Status); err != nil {
			return err
		}
	}
	for i, a := range r.Addenda {
		if err := identifiers(fmt.Sprintf("addenda[%d]", i), "kind", a.Kind, "status", a.Status, "boot_id", a.BootID); err != nil {
			return err
		}
	}
	for i, rec := range r.Records {
		if err := identifier(fmt.Sprintf("records[%d].id", i), rec.ID); err != nil {
			return err
		}
		for j, ref := range rec.References {
			if err := identifiers(fmt.Sprintf("records[%d].references[%d]", i, j), "scheme", ref.Scheme, "id", ref.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

// identifiers checks the members of one object, given as name, value pairs.
func identifiers(at string, pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if err := identifier(at+"."+pairs[i], pairs[i+1]); err != nil {
			return err
		}
	}
	return nil
}

func identifier(field, s string) error {
	i, r := terminal.FirstUnsafe(s)
	switch {
	case i < 0:
		return nil
	case r == utf8.RuneError:
		return fmt.Errorf("%s: invalid UTF-8 at byte %d", field, i)
	}
	return fmt.Errorf("%s: %q holds the control or formatting character %U at byte %d", field, s, r, i)
}

// utc refuses a time with an offset: one spelling per instant keeps the
// canonical form unique, and an auditor compares times without arithmetic.
func utc(field string, t time.Time) error {
	if _, off := t.Zone(); off != 0 {
		return fmt.Errorf("%s: %s is not in UTC", field, t.Format(time.RFC3339Nano))
	}
	return nil
}

// decodeStrict decodes data into v refusing unknown members and trailing data.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the report")
	}
	return nil
}

package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"time"

	"github.com/omertaos/omertaos/appliance/config"
)

var (
	hexSHA256   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	imageDigest = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

// validate checks what the schema cannot express and what a reader relies
// on; each error names the field and the reason.
func validate(r *Report) error {
	h := &r.Header
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
	if l := h.Lynis; l != nil && (l.Index < 0 || l.Index > 100) {
		return fmt.Errorf("header.lynis.index: %d is outside 0..100", l.Index)
	}
	if l := h.Lynis; l != nil && l.Suggestions < 0 {
		return fmt.Errorf("header.lynis.suggestions: %d is negative", l.Suggestions)
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
	seen := make(map[string]int, len(r.Records))
	for i, rec := range r.Records {
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

package report

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// ErrOtherKey is returned (wrapped) by AppendAddendum when the key given is
// not the one the report is signed by.
var ErrOtherKey = errors.New("report is signed by another key")

// AppendAddendum seals a into r and signs the whole report again with
// priv, which must be the key r is signed by. r is a sealed report (from
// Seal, or the Report of a Verification that passed): its header and
// records keep their hashes, so what first boot sealed is exactly what the
// new signature covers, and the addendum's chain starts at their chain
// head. On error r is left as it was.
func AppendAddendum(r *Report, a Addendum, priv ed25519.PrivateKey) error {
	if len(priv) != ed25519.PrivateKeySize {
		return fmt.Errorf("sealing addendum: signing key is %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	pub := priv.Public().(ed25519.PublicKey)
	if r.Signature.PublicKey != base64.StdEncoding.EncodeToString(pub) {
		return fmt.Errorf("sealing addendum: %w: %s, not %s", ErrOtherKey, r.Signature.KeyFingerprint, KeyFingerprint(pub))
	}
	old, prev := r.Signature, r.Addenda
	r.Addenda = append(prev[:len(prev):len(prev)], a)
	err := Seal(r, priv)
	if err == nil && (r.Signature.HeaderSHA256 != old.HeaderSHA256 || r.Signature.ChainHead != old.ChainHead) {
		err = errors.New("the header or the records changed since the report was sealed")
	}
	if err != nil {
		r.Addenda, r.Signature = prev, old
		return fmt.Errorf("sealing addendum: %w", err)
	}
	return nil
}

// AuditState is the Lynis audit as a report tells it.
type AuditState struct {
	// Status is AuditSkipped, AuditPending (deferred and not sealed yet),
	// AuditDone or AuditFailed.
	Status string `json:"status"`
	// Reason says why the audit was skipped, or why it failed.
	Reason string `json:"reason,omitempty"`
	// Addendum is the seq of the addendum that sealed the audit; 0 when
	// none has.
	Addendum   int       `json:"addendum,omitempty"`
	Attempts   int       `json:"attempts,omitempty"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Lynis is the audit's result when Status is AuditDone.
	Lynis *Lynis `json:"lynis,omitempty"`
}

// AuditState returns the state of the Lynis audit: the last Lynis addendum
// when there is one, else what the header decided. A report that does not
// verify may say anything; call it on a verified one.
func (r *Report) AuditState() AuditState {
	for i := len(r.Addenda) - 1; i >= 0; i-- {
		a := r.Addenda[i]
		if a.Kind != AddendumLynis {
			continue
		}
		return AuditState{Status: a.Status, Reason: a.Error, Addendum: a.Seq, Attempts: a.Attempts,
			StartedAt: a.StartedAt, FinishedAt: a.FinishedAt, Lynis: a.Lynis}
	}
	if r.Header.LynisAudit.Status == AuditSkipped {
		return AuditState{Status: AuditSkipped, Reason: r.Header.LynisAudit.Reason}
	}
	return AuditState{Status: AuditPending}
}

// Describe says the state in one line, for the verifier's checks and the
// summary; strings from the report are not escaped here.
func (s AuditState) Describe() string {
	switch s.Status {
	case AuditSkipped:
		return "skipped: " + s.Reason
	case AuditPending:
		return "pending: deferred until the console is up, and not sealed into this copy of the report yet"
	case AuditFailed:
		return fmt.Sprintf("failed after %d attempt(s), sealed in addendum %d: %s", s.Attempts, s.Addendum, s.Reason)
	case AuditDone:
		if l := s.Lynis; l != nil {
			return fmt.Sprintf("hardening index %d, %d warning(s), %d suggestion(s) (Lynis %s, %s), sealed in addendum %d",
				l.Index, len(l.Warnings), l.Suggestions, l.Version, s.FinishedAt.Sub(s.StartedAt).Round(time.Second), s.Addendum)
		}
	}
	return s.Status
}

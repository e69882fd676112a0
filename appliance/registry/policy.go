package registry

import (
	"github.com/omertaos/omertaos/appliance/config"
)

// Decision is the answer to "may this agent, image or model be used?",
// with everything that was checked, for the caller to return to the client
// and to append to the audit chain.
type Decision struct {
	Allowed bool           `json:"allowed"`
	Subject string         `json:"subject"` // `agent "web"`, `image sha256:...`, `model "gpt-4.5"`
	Profile config.Profile `json:"profile"`
	// Code is the finding that decided: CodeOK, CodeUnsigned (allowed with
	// a warning outside enterprise), or the first failure.
	Code   Code   `json:"code"`
	Reason string `json:"reason"`
	// Signed: a registry whose lock verified against a trusted key vouches
	// for the subject; Registry and KeyID say which.
	Signed   bool   `json:"signed"`
	Registry string `json:"registry,omitempty"`
	KeyID    string `json:"key_id,omitempty"`
	// ImageDigest is the OCI digest the vouching registry pins for an
	// agent's image or an image archive: import or run exactly that.
	ImageDigest string `json:"image_digest,omitempty"`
	// Warnings are to be shown to the operator and audited, notably
	// "allowed unsigned by the user profile".
	Warnings []string  `json:"warnings,omitempty"`
	Findings []Finding `json:"findings"`
	// Model is the model's manifest, for CheckModel.
	Model *Manifest `json:"-"`
}

// Err is nil when the decision allows, and a *DeniedError otherwise.
func (d Decision) Err() error {
	if d.Allowed {
		return nil
	}
	return &DeniedError{Decision: d}
}

// DeniedError is a refusal; errors.Is(err, ErrDenied) holds, and
// errors.Is(err, ErrNotFound) too when no registry lists the subject.
type DeniedError struct{ Decision Decision }

func (e *DeniedError) Error() string {
	return e.Decision.Subject + " refused: " + e.Decision.Reason
}

func (e *DeniedError) Is(target error) bool {
	return target == ErrDenied || target == ErrNotFound && e.Decision.Code == CodeNotFound
}

// AllowsUnsigned reports whether profile p lets an operator use what no
// trusted signature vouches for. Only user and pro do; enterprise, and any
// profile this package does not know, refuse (fail closed).
func AllowsUnsigned(p config.Profile) bool {
	return p == config.ProfileUser || p == config.ProfilePro
}

// unsignedClass: a finding that only says "nobody trusted vouches for
// it", which a profile may accept; every other failure is refused in every
// profile.
func unsignedClass(c Code) bool { return c == CodeUnsigned || c == CodeMissingPublicKey }

// Decide applies profile p to the findings about subject. signed says
// whether a trusted signature vouches for it with no failure of its own.
//
//   - any failure other than unsigned or missing-public-key: refused, in
//     every profile (a digest that does not match, a placeholder, a bad
//     signature, an invalid manifest, a model that does not fit);
//   - signed: allowed;
//   - otherwise unsigned: refused in enterprise, allowed with a warning in
//     user and pro.
func Decide(p config.Profile, subject string, fs []Finding, signed bool) Decision {
	d := Decision{Subject: subject, Profile: p, Signed: signed, Findings: fs}
	if d.Findings == nil {
		d.Findings = []Finding{}
	}
	var unsigned *Finding
	for i := range fs {
		f := fs[i]
		if !f.Failed() {
			continue
		}
		if unsignedClass(f.Code) {
			if unsigned == nil {
				unsigned = &fs[i]
			}
			continue
		}
		if signed && f.Code != CodeInsufficientVRAM && f.Code != CodeNotFound {
			// A registry that does vouch cleanly outweighs another
			// that fails; the failure stays in Findings.
			continue
		}
		d.Code, d.Reason = f.Code, f.String()
		return d
	}
	switch {
	case signed:
		d.Allowed, d.Code, d.Reason = true, CodeOK, subject+" is vouched for by a registry signed with a trusted key"
	case AllowsUnsigned(p):
		d.Allowed, d.Code = true, CodeUnsigned
		d.Reason = subject + " is not signed by a trusted key"
		if unsigned != nil {
			d.Reason += ": " + unsigned.String()
		}
		d.Warnings = append(d.Warnings, d.Reason+"; allowed by the "+string(p)+" profile")
	default:
		d.Code = CodeUnsigned
		d.Reason = subject + " is not signed by a trusted key, and the " + profileName(p) + " profile accepts only signed ones"
		if unsigned != nil {
			d.Reason += " (" + unsigned.String() + ")"
		}
	}
	return d
}

func profileName(p config.Profile) string {
	if p == "" {
		return "unset"
	}
	return string(p)
}

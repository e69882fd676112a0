package registry

import (
	"errors"
	"strings"
)

// Code classifies one finding. The codes are part of the JSON output and of
// the Decision the agents service records: they do not change meaning.
type Code string

// The finding codes.
const (
	// CodeOK: the file, entry, manifest or signature checked out.
	CodeOK Code = "ok"
	// CodeDigestMismatch: a file's SHA-256 is not the one the lock (or a
	// manifest's integrity.sha256) names.
	CodeDigestMismatch Code = "digest-mismatch"
	// CodeMissingFromLock: REGISTRY.yaml lists a path the lock lacks.
	CodeMissingFromLock Code = "missing-from-lock"
	// CodeMissingFile: the lock (or the index) names a file that is not there.
	CodeMissingFile Code = "missing-file"
	// CodeRefusedFile: a path names something other than a regular file,
	// a symlink leading outside the registry, or a file over its size cap.
	CodeRefusedFile Code = "refused-file"
	// CodePlaceholderDigest: a digest of all zeros, cut short with "...",
	// the word "placeholder", or the digest of empty input.
	CodePlaceholderDigest Code = "placeholder-digest"
	// CodePlaceholderSignature: a signature field that is not a minisign
	// signature at all, such as "minisign:ABC123".
	CodePlaceholderSignature Code = "placeholder-signature"
	// CodeMissingPublicKey: a signature by a key ID the trust directory
	// does not hold. Never skipped: it fails like a bad signature.
	CodeMissingPublicKey Code = "missing-public-key"
	// CodeBadSignature: a minisign signature that does not verify (content
	// or trusted comment changed), or a malformed signature file.
	CodeBadSignature Code = "bad-signature"
	// CodeUnsigned: the lock has no signature file.
	CodeUnsigned Code = "unsigned"
	// CodeInvalidManifest: a document (REGISTRY.yaml, the lock, a
	// manifest) that does not parse or has a field of the wrong kind,
	// missing, unknown or out of range; Field names it.
	CodeInvalidManifest Code = "invalid-manifest"
	// CodeInvalidKey: a file in the trust directory, or the registry's own
	// signing.public_key, that is not a minisign public key.
	CodeInvalidKey Code = "invalid-key"
	// CodeNotChecked: an integrity field about an artifact that is not in
	// the registry (a download URL); it cannot be checked offline.
	CodeNotChecked Code = "not-checked"
	// CodeNotFound: no configured registry lists the subject.
	CodeNotFound Code = "not-found"
	// CodeInsufficientVRAM: a model needs more GPU memory than any GPU has free.
	CodeInsufficientVRAM Code = "insufficient-vram"
)

// Severity says what a finding does to the verdict.
type Severity string

// The severities.
const (
	SeverityOK      Severity = "ok"
	SeverityWarning Severity = "warning" // reported; the registry still verifies
	SeverityFailure Severity = "failure" // the registry does not verify
)

// severityOf is each code's usual severity; a finding may say otherwise
// (the registry's own signing.public_key is only informative, so a missing
// one is a warning).
func severityOf(c Code) Severity {
	switch c {
	case CodeOK:
		return SeverityOK
	case CodeNotChecked:
		return SeverityWarning
	}
	return SeverityFailure
}

// Finding is one result about one file, entry, manifest or signature.
// Every string in it that came from the registry is quoted (strconv.Quote)
// or is a path the registry checks for safe characters, so a finding prints
// on one line; terminals still get it through terminal.Escape.
type Finding struct {
	// Subject is the file concerned, relative to the registry
	// ("models/openai/gpt-4.5.yaml", "registry.lock.json"), or "trust"
	// for the trust directory.
	Subject string `json:"subject"`
	// Kind and Name identify the entry (model "gpt-4.5"), when known.
	Kind string `json:"kind,omitempty"`
	Name string `json:"name,omitempty"`
	// Field is the dotted path inside Subject ("integrity.sha256",
	// "entries[3].path"), empty for the file as a whole.
	Field    string   `json:"field,omitempty"`
	Code     Code     `json:"code"`
	Severity Severity `json:"severity"`
	Detail   string   `json:"detail"`
	// Want and Got are the digests compared, for digest findings.
	Want string `json:"want,omitempty"`
	Got  string `json:"got,omitempty"`
}

// String renders "SUBJECT: FIELD: CODE: DETAIL".
func (f Finding) String() string { return f.text(true) }

func (f Finding) text(withCode bool) string {
	var b strings.Builder
	b.WriteString(f.Subject)
	if f.Field != "" {
		b.WriteString(": ")
		b.WriteString(f.Field)
	}
	if withCode {
		b.WriteString(": ")
		b.WriteString(string(f.Code))
	}
	if f.Detail != "" {
		b.WriteString(": ")
		b.WriteString(f.Detail)
	}
	return b.String()
}

// Failed reports whether the finding fails the verification.
func (f Finding) Failed() bool { return f.Severity == SeverityFailure }

// findings collects the findings about one subject.
type findings struct {
	list    []Finding
	subject string
	kind    string
	name    string
}

func (fs *findings) add(field string, c Code, detail string) *Finding {
	fs.list = append(fs.list, Finding{Subject: fs.subject, Kind: fs.kind, Name: fs.name, Field: field, Code: c, Severity: severityOf(c), Detail: detail})
	return &fs.list[len(fs.list)-1]
}

func (fs *findings) invalid(field, detail string) {
	fs.add(field, CodeInvalidManifest, detail)
}

// The sentinel errors, for the API layer to map to status codes.
var (
	// ErrDenied: a Decision refused the subject.
	ErrDenied = errors.New("refused by registry verification")
	// ErrNotFound: no configured registry lists the subject.
	ErrNotFound = errors.New("not in any registry")
	// ErrInvalid: input (a key, a manifest) that cannot be used at all.
	ErrInvalid = errors.New("invalid")
)

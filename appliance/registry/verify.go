package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Result is everything Verify found about one registry.
type Result struct {
	Dir string `json:"dir"`
	// Signature is the check of registry.lock.json.minisig.
	Signature SigCheck `json:"signature"`
	// TrustDir and TrustedKeys are the keys it was checked against.
	TrustDir    string   `json:"trust_dir,omitempty"`
	TrustedKeys []string `json:"trusted_keys"`
	// LockEntries and CatalogEntries count what the two files list.
	LockEntries    int `json:"lock_entries"`
	CatalogEntries int `json:"catalog_entries"`
	// Findings is every result, the right ones included, in this order:
	// REGISTRY.yaml, the lock, its signature, catalog entries missing from
	// the lock, each lock entry (file, then manifest), the trust directory.
	Findings []Finding `json:"findings"`
	Counts   Counts    `json:"counts"`
	// Verified is OK(), for JSON readers.
	Verified bool `json:"verified"`
}

// Counts sums the findings by severity.
type Counts struct {
	OK       int `json:"ok"`
	Warnings int `json:"warnings"`
	Failures int `json:"failures"`
}

// OK reports whether nothing failed: every file matches the lock, every
// catalog entry is in it, the lock is signed by a trusted key, and no
// manifest is invalid or carries a placeholder.
func (r *Result) OK() bool { return r.Counts.Failures == 0 }

// Failures returns the findings that fail the verification.
func (r *Result) Failures() []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Failed() {
			out = append(out, f)
		}
	}
	return out
}

func (r *Result) count() {
	defer func() { r.Verified = r.OK() }()
	r.Counts = Counts{}
	for _, f := range r.Findings {
		switch f.Severity {
		case SeverityOK:
			r.Counts.OK++
		case SeverityWarning:
			r.Counts.Warnings++
		default:
			r.Counts.Failures++
		}
	}
}

// Option adjusts Verify.
type Option func(*options)

type options struct{ lim Limits }

// WithLimits replaces DefaultLimits; zero fields keep their default.
func WithLimits(l Limits) Option { return func(o *options) { o.lim = l } }

// Verify checks the registry in dir against the keys of trust (nil trusts
// nothing): every file against the lock's SHA-256, every catalog entry
// against the lock, the lock's signature, and each manifest's fields and
// integrity. Problems are findings, never errors: the error is only for a
// directory that cannot be opened or a cancelled ctx.
func Verify(ctx context.Context, dir string, trust *Keyring, opts ...Option) (*Result, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	lim := o.lim.withDefaults()
	d, err := openDir(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	r := &Result{Dir: dir, TrustedKeys: trust.IDs()}
	if trust != nil {
		r.TrustDir = trust.Dir
	}
	v := &verification{ctx: ctx, d: d, trust: trust, lim: lim, r: r}
	if err := v.run(); err != nil {
		return nil, err
	}
	r.count()
	return r, nil
}

// verification is one run of Verify.
type verification struct {
	ctx   context.Context
	d     *dirFS
	trust *Keyring
	lim   Limits
	r     *Result
}

func (v *verification) add(fs ...Finding) { v.r.Findings = append(v.r.Findings, fs...) }

func (v *verification) run() error {
	ix := v.index()
	lock, lockData := v.lock()
	if lockData != nil {
		v.r.Signature = v.signature(lockData)
	}
	if ix != nil {
		v.signingKey(ix)
	}
	listed := map[string]CatalogEntry{}
	if ix != nil {
		for _, e := range ix.Catalog {
			if e.valid {
				listed[e.Path] = e
			}
		}
		if err := v.catalog(ix, lock); err != nil {
			return err
		}
	}
	if lock != nil {
		for _, e := range lock.Entries {
			fs, err := checkEntry(v.ctx, v.d, e, listed, v.trust, v.lim)
			if err != nil {
				return err
			}
			v.add(fs...)
		}
	}
	if v.trust != nil {
		for _, f := range v.trust.Problems {
			// The signature finding already fails for a missing key;
			// the directory's own problems explain it.
			f.Severity = SeverityWarning
			v.add(f)
		}
	}
	return nil
}

func (v *verification) index() *Index {
	data, err := v.d.readFile(IndexFile, v.lim.IndexBytes)
	if err != nil {
		v.fileProblem(IndexFile, err)
		return nil
	}
	ix, fs := ParseIndex(data, v.lim)
	v.add(fs...)
	if ix != nil {
		v.r.CatalogEntries = len(ix.Catalog)
	}
	return ix
}

func (v *verification) lock() (*Lock, []byte) {
	data, err := v.d.readFile(LockFile, v.lim.LockBytes)
	if err != nil {
		v.fileProblem(LockFile, err)
		return nil, nil
	}
	lock, fs := ParseLock(data, v.lim)
	v.add(fs...)
	if lock != nil {
		v.r.LockEntries = len(lock.Entries)
	}
	return lock, data
}

func (v *verification) fileProblem(subject string, err error) {
	var fe *fileError
	if errors.As(err, &fe) {
		v.add(Finding{Subject: subject, Code: fe.Code, Severity: severityOf(fe.Code), Detail: fe.Detail})
		return
	}
	v.add(Finding{Subject: subject, Code: CodeRefusedFile, Severity: SeverityFailure, Detail: errText(err)})
}

// signature checks the lock's .minisig; a missing one is CodeUnsigned.
func (v *verification) signature(lock []byte) SigCheck {
	c := checkLockSignature(v.d, lock, v.trust, v.lim)
	v.add(Finding{Subject: SignatureFile, Code: c.Code, Severity: severityOf(c.Code), Detail: c.Detail})
	return c
}

func checkLockSignature(d *dirFS, lock []byte, trust *Keyring, lim Limits) SigCheck {
	sig, err := d.readFile(SignatureFile, lim.SignatureBytes)
	var fe *fileError
	switch {
	case errors.As(err, &fe) && fe.Code == CodeMissingFile:
		return SigCheck{Code: CodeUnsigned, Detail: LockFile + " has no signature (" + SignatureFile + "); sign it with omerta registry sign"}
	case errors.As(err, &fe):
		return SigCheck{Code: CodeBadSignature, Detail: "the signature file " + fe.Detail}
	case err != nil:
		return SigCheck{Code: CodeBadSignature, Detail: "the signature file: " + errText(err)}
	}
	return VerifySignature(lock, sig, trust)
}

// signingKey looks at the key REGISTRY.yaml names. It is only the
// registry's own word, so a problem with it is a warning: what counts is
// the trust directory.
func (v *verification) signingKey(ix *Index) {
	if ix.SigningKey == "" {
		return
	}
	warn := func(c Code, detail string) {
		v.add(Finding{Subject: IndexFile, Field: "signing.public_key", Code: c, Severity: SeverityWarning, Detail: detail})
	}
	data, err := v.d.readFile(ix.SigningKey, maxKeyBytes)
	if err != nil {
		var fe *fileError
		c := CodeRefusedFile
		if errors.As(err, &fe) {
			c = fe.Code
		}
		warn(c, "the registry names its public key "+quote(ix.SigningKey)+", which "+strings.TrimPrefix(err.Error(), "path "))
		return
	}
	pk, err := ParsePublicKey(data)
	if err != nil {
		warn(CodeInvalidKey, quote(ix.SigningKey)+": "+err.Error())
		return
	}
	if id := KeyID(pk.ID()); v.r.Signature.KeyID != "" && v.r.Signature.KeyID != id {
		warn(CodeInvalidKey, fmt.Sprintf("the registry names key ID %s, but the lock is signed by %s", id, v.r.Signature.KeyID))
	}
}

// catalog reports every catalog entry that the lock lacks or lists as
// another kind. An entry missing from the lock is still read, so that its
// manifest's own problems are reported too.
func (v *verification) catalog(ix *Index, lock *Lock) error {
	inLock := map[string]LockEntry{}
	if lock != nil {
		for _, e := range lock.Entries {
			if e.valid {
				inLock[e.Path] = e
			}
		}
	}
	for _, c := range ix.Catalog {
		if !c.valid {
			continue
		}
		le, ok := inLock[c.Path]
		if ok && le.Kind != c.Kind {
			v.add(Finding{Subject: IndexFile, Field: c.Field, Code: CodeInvalidManifest, Severity: SeverityFailure,
				Detail: fmt.Sprintf("lists %s as a %s; the lock says %s", quote(c.Path), c.Kind, le.Kind)})
			continue
		}
		if ok {
			continue
		}
		v.add(Finding{Subject: c.Path, Kind: c.Kind, Code: CodeMissingFromLock, Severity: SeverityFailure,
			Detail: IndexFile + " lists it at " + c.Field + ", but " + LockFile + " has no entry for it; nothing outside the lock is trusted"})
		if err := v.unlocked(c); err != nil {
			return err
		}
	}
	return nil
}

func (v *verification) unlocked(c CatalogEntry) error {
	if err := v.ctx.Err(); err != nil {
		return err
	}
	if !isManifestKind(c.Kind) {
		return nil
	}
	data, err := v.d.readFile(c.Path, v.lim.ManifestBytes)
	if err != nil {
		var fe *fileError
		if errors.As(err, &fe) {
			v.add(Finding{Subject: c.Path, Kind: c.Kind, Code: fe.Code, Severity: severityOf(fe.Code), Detail: fe.Detail})
		}
		return nil
	}
	m, fs := ParseManifest(c.Path, c.Kind, data, v.lim)
	v.add(fs...)
	if m != nil {
		ifs, err := checkIntegrity(v.ctx, v.d, c.Path, m, v.trust, v.lim)
		if err != nil {
			return err
		}
		v.add(ifs...)
	}
	return nil
}

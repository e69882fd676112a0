package report

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
)

// KeySource says which key a signature was checked against.
type KeySource string

const (
	// KeyEmbedded: the key inside the report. A valid signature then proves
	// only that the report is self-consistent: whoever edited it could have
	// re-signed it with a key of their own.
	KeyEmbedded KeySource = "embedded"
	// KeySupplied: a key (or its fingerprint) the verifier obtained out of
	// band, from the console banner or the operator. Only this proves origin.
	KeySupplied KeySource = "supplied"
)

// Check is one thing Verify checked.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	// err is the error behind a failure, when there was one, so that the
	// error Verify returns can be matched with errors.Is (ErrTooDeep…).
	err error
}

// Verification is what Verify found.
type Verification struct {
	// Report is the decoded report; nil when the data did not decode.
	Report *Report `json:"-"`
	// Checks lists everything checked, in order.
	Checks []Check `json:"checks"`
	// KeySource says whether the signature was checked against the embedded
	// key or one the caller supplied.
	KeySource KeySource `json:"key_source"`
	// Fingerprint is the fingerprint of the key the signature was checked
	// against.
	Fingerprint string `json:"fingerprint"`
	// Trusted is true when every check passed and the key came from the
	// caller, not from the report.
	Trusted bool `json:"trusted"`
	// Warnings are said loudly but do not fail verification.
	Warnings []string `json:"warnings"`
	// Audit is the state of the Lynis audit, set when every check passed:
	// pending until its addendum is sealed, which does not fail
	// verification.
	Audit *AuditState `json:"audit,omitempty"`
}

// OK reports whether every check passed.
func (v *Verification) OK() bool {
	for _, c := range v.Checks {
		if !c.OK {
			return false
		}
	}
	return len(v.Checks) > 0
}

// Failed returns the checks that did not pass.
func (v *Verification) Failed() []Check {
	var out []Check
	for _, c := range v.Checks {
		if !c.OK {
			out = append(out, c)
		}
	}
	return out
}

func (v *Verification) pass(name, format string, args ...any) {
	v.Checks = append(v.Checks, Check{Name: name, OK: true, Detail: fmt.Sprintf(format, args...)})
}

func (v *Verification) fail(name, format string, args ...any) {
	v.Checks = append(v.Checks, Check{Name: name, Detail: fmt.Sprintf(format, args...)})
}

// failErr records a failed check whose detail is err.
func (v *Verification) failErr(name string, err error) {
	v.Checks = append(v.Checks, Check{Name: name, Detail: err.Error(), err: err})
}

// VerifyOptions says what the verifier trusts.
type VerifyOptions struct {
	// PublicKey, when set, is the key the signature must verify against; the
	// embedded key must equal it.
	PublicKey ed25519.PublicKey
	// Fingerprint, when set ("SHA256:<hex>", as the console prints it), pins
	// the embedded key.
	Fingerprint string
	// MaxBytes is the largest document read; 0 means DefaultMaxBytes.
	MaxBytes int64
}

func (o VerifyOptions) maxBytes() int64 {
	if o.MaxBytes > 0 {
		return o.MaxBytes
	}
	return DefaultMaxBytes
}

// ErrUntrustedKey is never returned; see Verification.Warnings. It is the text
// shown when no key was supplied.
const untrustedWarning = "no trusted key given (--pubkey or --fingerprint): the signature was checked against the key inside the report, which proves only that the report is self-consistent, not who wrote it; anyone who edits the report can re-sign it with a key of their own"

// Verify checks data as a sealed report. With pub nil the signature is checked
// against the key embedded in the report, and the Verification says that this
// proves only self-consistency. The error is non-nil when any check failed.
func Verify(data []byte, pub ed25519.PublicKey) (*Verification, error) {
	return VerifyWith(data, VerifyOptions{PublicKey: pub})
}

// VerifyWith is Verify with the full set of options.
func VerifyWith(data []byte, opts VerifyOptions) (*Verification, error) {
	v := &Verification{KeySource: KeyEmbedded}
	if opts.PublicKey != nil || opts.Fingerprint != "" {
		v.KeySource = KeySupplied
	}
	if opts.PublicKey != nil && len(opts.PublicKey) != ed25519.PublicKeySize {
		v.fail("trusted key", "supplied public key is %d bytes, want %d", len(opts.PublicKey), ed25519.PublicKeySize)
		return v, v.err()
	}
	if limit := opts.maxBytes(); int64(len(data)) > limit {
		v.failErr("size", &LimitError{Err: ErrTooLarge, Limit: limit})
		return v, v.err()
	}
	v.verify(data, opts)
	if v.KeySource == KeyEmbedded {
		v.Warnings = append(v.Warnings, untrustedWarning)
	}
	v.Trusted = v.OK() && v.KeySource == KeySupplied
	return v, v.err()
}

func (v *Verification) err() error {
	failed := v.Failed()
	if len(failed) == 0 {
		return nil
	}
	more := ""
	if len(failed) > 1 {
		more = fmt.Sprintf(" (and %d more failed checks)", len(failed)-1)
	}
	if failed[0].err != nil {
		return fmt.Errorf("report does not verify: %s: %w%s", failed[0].Name, failed[0].err, more)
	}
	return fmt.Errorf("report does not verify: %s: %s%s", failed[0].Name, failed[0].Detail, more)
}

// verify runs the checks in order: the shape of the document, its content,
// the hash chain, then the signature. A failure that makes the later checks
// meaningless stops there.
func (v *Verification) verify(data []byte, opts VerifyOptions) {
	top, r, ok := v.checkShape(data)
	if !ok {
		return
	}
	v.Report = r
	v.checkContent(r)
	if !v.checkChain(top, r) {
		return
	}
	v.checkSignature(r, opts)
	if v.OK() {
		// Said as a passing check, so that it is in every listing: a
		// pending audit is a fact about this copy, not a failure.
		st := r.AuditState()
		v.Audit = &st
		v.pass("lynis audit", "%s", st.Describe())
	}
}

// checkShape parses data strictly and decodes it as a v2 report that is
// exactly the encoding of what was decoded.
func (v *Verification) checkShape(data []byte) (map[string]any, *Report, bool) {
	doc, err := parseStrict(data)
	if err != nil {
		v.failErr("json", err)
		return nil, nil, false
	}
	top, ok := doc.(map[string]any)
	if !ok {
		v.fail("json", "top-level value is not an object")
		return nil, nil, false
	}
	v.pass("json", "well-formed UTF-8 JSON, no duplicated members")

	// The schema version first: a report of another version has another
	// shape, and every later message would mislead.
	hdr, _ := top["header"].(map[string]any)
	sv, _ := hdr["schema_version"].(string)
	if sv != SchemaVersion {
		v.fail("schema version", "header.schema_version %q is not the known %q", sv, SchemaVersion)
		return nil, nil, false
	}
	v.pass("schema version", "%s", sv)

	var r Report
	if err := decodeStrict(data, &r); err != nil {
		v.failErr("strict decoding", err)
		return nil, nil, false
	}
	// Decoding is case-insensitive about member names and lenient about
	// alternative spellings of times; re-encoding and comparing canonical
	// forms makes the document exactly the encoding of what was decoded.
	again, err := json.Marshal(&r)
	if err != nil {
		v.fail("strict decoding", "re-encoding: %v", err)
		return nil, nil, false
	}
	ga, _ := parseStrict(again)
	c1, err1 := canonical(nil, doc)
	c2, err2 := canonical(nil, ga)
	if err1 != nil || err2 != nil || !bytes.Equal(c1, c2) {
		v.fail("strict decoding", "document is not the canonical encoding of a v2 report (%s)", firstDifference(doc, ga))
		return nil, nil, false
	}
	v.pass("strict decoding", "no unknown or missing members, every value in its v2 type and form")
	return top, &r, true
}

// checkContent checks what the schema cannot say and the summary counts.
func (v *Verification) checkContent(r *Report) {
	if err := validate(r); err != nil {
		v.failErr("content", err)
	} else {
		v.pass("content", "%d records, every result in the XCCDF vocabulary", len(r.Records))
	}
	if want := summarise(r.Records); !maps.Equal(want, r.Header.Summary) {
		v.fail("summary", "header.summary %s does not match the records %s", fmtSummary(r.Header.Summary), fmtSummary(want))
	} else {
		v.pass("summary", "%s", fmtSummary(want))
	}
}

// checkChain recomputes the header hash and every link of the record chain
// and of the addenda after it, from the generic document top; false means
// the header could not be hashed.
func (v *Verification) checkChain(top map[string]any, r *Report) bool {
	hh, err := hashGeneric(top["header"], "")
	switch {
	case err != nil:
		v.failErr("header hash", err)
		return false
	case hh != r.Signature.HeaderSHA256:
		v.fail("header hash", "computed %s, signature.header_sha256 says %s", hh, r.Signature.HeaderSHA256)
	default:
		v.pass("header hash", "%s", hh)
	}

	recs, _ := top["records"].([]any)
	prev := hh
	for i, raw := range recs {
		rec := r.Records[i]
		v.checkLink(fmt.Sprintf("record %d %s", i+1, rec.ID), i, raw, link{rec.Seq, rec.PrevHash, rec.Hash}, prev)
		prev = rec.Hash
	}
	if r.Signature.ChainHead != prev {
		v.fail("chain head", "signature.chain_head %s is not the last link %s", short(r.Signature.ChainHead), short(prev))
	} else {
		v.pass("chain head", "%s after %d records", prev, len(recs))
	}

	ads, _ := top["addenda"].([]any)
	for i, raw := range ads {
		a := r.Addenda[i]
		v.checkLink(fmt.Sprintf("addendum %d %s", i+1, a.Kind), i, raw, link{a.Seq, a.PrevHash, a.Hash}, prev)
		prev = a.Hash
	}
	if r.Signature.AddendaHead != prev {
		v.fail("addenda head", "signature.addenda_head %s is not the last link %s (an addendum was removed, added or changed)", short(r.Signature.AddendaHead), short(prev))
	} else {
		v.pass("addenda head", "%s after %d addenda", prev, len(ads))
	}
	return true
}

// link is what a record or an addendum says about its place in the chain.
type link struct {
	seq            int
	prevHash, hash string
}

// checkLink checks the i-th link of a chain: its number, its link to prev
// and its hash over raw, the element as the document holds it.
func (v *Verification) checkLink(name string, i int, raw any, l link, prev string) {
	var bad []string
	if l.seq != i+1 {
		bad = append(bad, fmt.Sprintf("seq is %d, want %d", l.seq, i+1))
	}
	if l.prevHash != prev {
		bad = append(bad, fmt.Sprintf("prev_hash %s does not link to %s", short(l.prevHash), short(prev)))
	}
	h, err := hashGeneric(raw, "hash")
	if err != nil {
		bad = append(bad, err.Error())
	} else if h != l.hash {
		bad = append(bad, fmt.Sprintf("content hashes to %s, it says %s", short(h), short(l.hash)))
	}
	if len(bad) > 0 {
		v.fail(name, "%s", strings.Join(bad, "; "))
	} else {
		v.pass(name, "seq, hash %s and link ok", short(h))
	}
}

// checkSignature checks the algorithm, the embedded key and its fingerprint,
// the trusted key when one was supplied, and the signature itself.
func (v *Verification) checkSignature(r *Report, opts VerifyOptions) {
	if r.Signature.Algorithm != Algorithm {
		v.fail("algorithm", "%q is not %q", r.Signature.Algorithm, Algorithm)
		return
	}
	v.pass("algorithm", "%s", Algorithm)

	embedded, err := base64.StdEncoding.Strict().DecodeString(r.Signature.PublicKey)
	if err != nil || len(embedded) != ed25519.PublicKeySize {
		v.fail("embedded key", "signature.public_key is not a base64 Ed25519 public key")
		return
	}
	if fp := KeyFingerprint(embedded); fp != r.Signature.KeyFingerprint {
		v.fail("key fingerprint", "signature.key_fingerprint %q is not the embedded key's %s", r.Signature.KeyFingerprint, fp)
	} else {
		v.pass("key fingerprint", "%s matches the embedded key", fp)
	}

	key := v.checkTrustedKey(embedded, opts)
	v.Fingerprint = KeyFingerprint(key)

	sig, err := base64.StdEncoding.Strict().DecodeString(r.Signature.Value)
	switch {
	case err != nil || len(sig) != ed25519.SignatureSize:
		v.fail("signature", "signature.value is not a base64 Ed25519 signature")
	case !ed25519.Verify(key, SignedMessage(r.Signature.HeaderSHA256, r.Signature.ChainHead, r.Signature.AddendaHead), sig):
		v.fail("signature", "does not verify against %s key %s", v.KeySource, v.Fingerprint)
	default:
		v.pass("signature", "valid Ed25519 signature over header hash, chain head and addenda head by %s key %s", v.KeySource, v.Fingerprint)
	}
}

// checkTrustedKey compares the embedded key with the one the caller trusts,
// if any, and returns the key the signature is to be checked against.
func (v *Verification) checkTrustedKey(embedded ed25519.PublicKey, opts VerifyOptions) ed25519.PublicKey {
	switch {
	case opts.PublicKey != nil:
		if !bytes.Equal(opts.PublicKey, embedded) {
			v.fail("trusted key", "report was signed by %s, not by the supplied key %s", KeyFingerprint(embedded), KeyFingerprint(opts.PublicKey))
		} else {
			v.pass("trusted key", "embedded key is the supplied key %s", KeyFingerprint(opts.PublicKey))
		}
		return opts.PublicKey
	case opts.Fingerprint != "":
		if !strings.EqualFold(strings.TrimSpace(opts.Fingerprint), KeyFingerprint(embedded)) {
			v.fail("trusted key", "report was signed by %s, not by the supplied fingerprint %q", KeyFingerprint(embedded), opts.Fingerprint)
		} else {
			v.pass("trusted key", "embedded key matches the supplied fingerprint")
		}
	}
	return embedded
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	if h == "" {
		return `""`
	}
	return h
}

func fmtSummary(m map[Outcome]int) string {
	var parts []string
	for _, o := range Outcomes {
		parts = append(parts, fmt.Sprintf("%s=%d", o, m[o]))
	}
	for k, n := range m {
		if !k.Valid() {
			parts = append(parts, fmt.Sprintf("%q=%d", string(k), n))
		}
	}
	return strings.Join(parts, " ")
}

// firstDifference names the first member where two generic values differ,
// so a strict-decoding failure says where to look. Both come from
// parseStrict, so their depth is bounded.
func firstDifference(a, b any) string {
	d := differ{}
	return d.diff(a, b)
}

// differ keeps the path as a stack, formatted only for the one difference
// it reports.
type differ struct{ path []pathElem }

func (d *differ) at(e pathElem) string {
	return pathName(formatPath(append(d.path, e)))
}

func (d *differ) diff(a, b any) string {
	switch at := a.(type) {
	case map[string]any:
		bt, ok := b.(map[string]any)
		if !ok {
			return pathName(formatPath(d.path)) + " has the wrong type"
		}
		return d.diffObject(at, bt)
	case []any:
		bt, ok := b.([]any)
		if !ok || len(at) != len(bt) {
			return pathName(formatPath(d.path)) + " has the wrong type or length"
		}
		for i := range at {
			d.path = append(d.path, pathElem{index: i})
			s := d.diff(at[i], bt[i])
			d.path = d.path[:len(d.path)-1]
			if s != "" {
				return s
			}
		}
		return ""
	}
	ca, _ := canonical(nil, a)
	cb, _ := canonical(nil, b)
	if !bytes.Equal(ca, cb) {
		return fmt.Sprintf("%s is %s, which reads back as %s", pathName(formatPath(d.path)), ca, cb)
	}
	return ""
}

func (d *differ) diffObject(a, b map[string]any) string {
	for k := range a {
		if _, ok := b[k]; !ok {
			return fmt.Sprintf("unknown member %s", d.at(pathElem{key: k, index: -1}))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			return fmt.Sprintf("missing member %s", d.at(pathElem{key: k, index: -1}))
		}
		d.path = append(d.path, pathElem{key: k, index: -1})
		s := d.diff(a[k], b[k])
		d.path = d.path[:len(d.path)-1]
		if s != "" {
			return s
		}
	}
	return ""
}

package report

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/omertaos/omertaos/appliance/config"
)

// KeyFingerprint returns "SHA256:" followed by the lowercase hex SHA-256 of
// the raw 32-byte public key. The console prints it as "Report key:".
func KeyFingerprint(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "SHA256:" + hex.EncodeToString(sum[:])
}

// SignedMessage returns the exact bytes that Signature.Value signs:
//
//	omertaos.dev/firstboot-report/v2\n
//	header_sha256=<64 lowercase hex>\n
//	chain_head=<64 lowercase hex>\n
//	addenda_head=<64 lowercase hex>\n
func SignedMessage(headerSHA256, chainHead, addendaHead string) []byte {
	return fmt.Appendf(nil, "%s\nheader_sha256=%s\nchain_head=%s\naddenda_head=%s\n", SchemaVersion, headerSHA256, chainHead, addendaHead)
}

// Seal completes r and signs it with priv: it sets the schema version, puts
// every time in UTC, replaces nil lists and maps by empty ones (the schema has
// no nulls except an addendum's lynis), numbers the records and the addenda
// from 1, computes the summary, chains the records from the header and the
// addenda from the records, and fills the signature. It refuses a report
// whose content Verify would refuse, naming the field.
func Seal(r *Report, priv ed25519.PrivateKey) error {
	if len(priv) != ed25519.PrivateKeySize {
		return fmt.Errorf("sealing report: signing key is %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	normalise(r)
	if err := validate(r); err != nil {
		return fmt.Errorf("sealing report: %w", err)
	}
	hh, err := hashJSON(r.Header, "")
	if err != nil {
		return fmt.Errorf("sealing report: hashing header: %w", err)
	}
	chainHead, err := chainRecords(r.Records, hh)
	if err != nil {
		return err
	}
	addendaHead, err := chainAddenda(r.Addenda, chainHead)
	if err != nil {
		return err
	}
	pub := priv.Public().(ed25519.PublicKey)
	r.Signature = Signature{
		Algorithm:      Algorithm,
		PublicKey:      base64.StdEncoding.EncodeToString(pub),
		KeyFingerprint: KeyFingerprint(pub),
		ChainHead:      chainHead,
		HeaderSHA256:   hh,
		AddendaHead:    addendaHead,
		Value:          base64.StdEncoding.EncodeToString(ed25519.Sign(priv, SignedMessage(hh, chainHead, addendaHead))),
	}
	return nil
}

// chainRecords links the records from prev and returns the last hash.
func chainRecords(recs []Record, prev string) (string, error) {
	for i := range recs {
		rec := &recs[i]
		rec.PrevHash, rec.Hash = prev, ""
		h, err := hashJSON(rec, "hash")
		if err != nil {
			return "", fmt.Errorf("sealing report: hashing records[%d]: %w", i, err)
		}
		rec.Hash = h
		prev = h
	}
	return prev, nil
}

// chainAddenda links the addenda from prev and returns the last hash.
func chainAddenda(ads []Addendum, prev string) (string, error) {
	for i := range ads {
		a := &ads[i]
		a.PrevHash, a.Hash = prev, ""
		h, err := hashJSON(a, "hash")
		if err != nil {
			return "", fmt.Errorf("sealing report: hashing addenda[%d]: %w", i, err)
		}
		a.Hash = h
		prev = h
	}
	return prev, nil
}

// Marshal returns the report as indented JSON with a final newline, the form
// written to report.json. Any other faithful serialisation verifies too:
// hashes cover values, not bytes.
func Marshal(r *Report) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Auditors read this file in an editor; "\u003e= 8" helps nobody.
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return nil, fmt.Errorf("encoding report: %w", err)
	}
	return buf.Bytes(), nil
}

// Parse strictly decodes a report without verifying it: unknown or duplicated
// members, trailing data and invalid UTF-8 are errors. Use Verify for
// anything you will trust.
func Parse(data []byte) (*Report, error) {
	if _, err := parseStrict(data); err != nil {
		return nil, fmt.Errorf("decoding report: %w", err)
	}
	var r Report
	if err := decodeStrict(data, &r); err != nil {
		return nil, fmt.Errorf("decoding report: %w", err)
	}
	return &r, nil
}

// hashJSON returns the hex SHA-256 of the canonical form of v's JSON encoding
// with the member named omit (if any) removed from the top-level object.
func hashJSON(v any, omit string) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	g, err := parseStrict(b)
	if err != nil {
		return "", err
	}
	return hashGeneric(g, omit)
}

func hashGeneric(g any, omit string) (string, error) {
	if omit != "" {
		obj, ok := g.(map[string]any)
		if !ok {
			return "", errors.New("not an object")
		}
		cp := make(map[string]any, len(obj))
		for k, v := range obj {
			if k != omit {
				cp[k] = v
			}
		}
		g = cp
	}
	c, err := canonical(nil, g)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(c)
	return hex.EncodeToString(sum[:]), nil
}

func normalise(r *Report) {
	h := &r.Header
	h.SchemaVersion = SchemaVersion
	h.StartedAt, h.FinishedAt = h.StartedAt.UTC(), h.FinishedAt.UTC()
	if h.Tools == nil {
		h.Tools = map[string]string{}
	}
	if h.Probe.Checks == nil {
		h.Probe.Checks = []ProbeCheck{}
	}
	if h.Site.Sources == nil {
		h.Site.Sources = []config.Source{}
	}
	if h.Site.Problems == nil {
		h.Site.Problems = []string{}
	}
	if h.Steps == nil {
		h.Steps = []Step{}
	}
	for i := range h.Steps {
		s := &h.Steps[i]
		s.StartedAt, s.FinishedAt = s.StartedAt.UTC(), s.FinishedAt.UTC()
	}
	if r.Records == nil {
		r.Records = []Record{}
	}
	for i := range r.Records {
		rec := &r.Records[i]
		rec.Seq = i + 1
		rec.Time = rec.Time.UTC()
		if rec.References == nil {
			rec.References = []Reference{}
		}
		if rec.Evidence == nil {
			rec.Evidence = []Evidence{}
		}
	}
	h.Summary = summarise(r.Records)
	if r.Addenda == nil {
		r.Addenda = []Addendum{}
	}
	for i := range r.Addenda {
		a := &r.Addenda[i]
		a.Seq = i + 1
		a.StartedAt, a.FinishedAt = a.StartedAt.UTC(), a.FinishedAt.UTC()
		if a.Lynis != nil && a.Lynis.Warnings == nil {
			a.Lynis.Warnings = []string{}
		}
	}
}

// summarise counts records per result; every outcome appears, zeros included,
// so the summary has one shape whatever the run found.
func summarise(recs []Record) map[Outcome]int {
	m := make(map[Outcome]int, len(Outcomes))
	for _, o := range Outcomes {
		m[o] = 0
	}
	for _, r := range recs {
		m[r.Result]++
	}
	return m
}

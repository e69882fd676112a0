package registry

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/safeyaml"
)

// The files every registry holds, at its top.
const (
	IndexFile     = "REGISTRY.yaml"
	LockFile      = "registry.lock.json"
	SignatureFile = LockFile + ".minisig"
)

// The entry kinds. Model, algorithm and service are OMERTAOS's; agent,
// image and file are this appliance's.
const (
	KindModel     = "model"
	KindAlgorithm = "algorithm"
	KindService   = "service"
	KindAgent     = "agent"
	KindImage     = "image"
	KindFile      = "file"
)

// kinds maps each kind to its REGISTRY.yaml catalog key.
var kinds = map[string]string{
	KindModel: "models", KindAlgorithm: "algorithms", KindService: "services",
	KindAgent: "agents", KindImage: "images", KindFile: "files",
}

// isManifestKind reports whether files of kind k are manifests to parse,
// rather than blobs (OCI archives, model weights) only hashed.
func isManifestKind(k string) bool {
	return k == KindModel || k == KindAlgorithm || k == KindService || k == KindAgent
}

// Lock is registry.lock.json: the SHA-256 of every file of the registry.
type Lock struct {
	GeneratedAt string      `json:"generated_at,omitempty"`
	Entries     []LockEntry `json:"entries"`
}

// LockEntry is one file. Size and Digest are this appliance's additions:
// Size lets a verifier refuse a file that grew, Digest is, for an image,
// the OCI digest (sha256:...) that the import must find in the archive.
type LockEntry struct {
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   *int64 `json:"size,omitempty"`
	Digest string `json:"digest,omitempty"`
	// valid is false when the entry had a finding that makes its path or
	// digest unusable; such an entry is not read.
	valid bool
}

// Limits bound what one registry may hold.
type Limits struct {
	// IndexBytes, LockBytes, ManifestBytes, SignatureBytes cap each file.
	IndexBytes, LockBytes, ManifestBytes, SignatureBytes int64
	// BlobBytes caps a file that is only hashed (an OCI archive, model
	// weights).
	BlobBytes int64
	// Entries caps the entries of the lock and of each catalog list.
	Entries int
}

// DefaultLimits fit a registry of thousands of entries and image archives
// of tens of gigabytes.
func DefaultLimits() Limits {
	return Limits{
		IndexBytes: 1 << 20, LockBytes: 4 << 20, ManifestBytes: manifest.MaxManifestBytes,
		SignatureBytes: 16 << 10, BlobBytes: 64 << 30, Entries: 10000,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	for _, p := range []struct{ v, d *int64 }{
		{&l.IndexBytes, &d.IndexBytes}, {&l.LockBytes, &d.LockBytes}, {&l.ManifestBytes, &d.ManifestBytes},
		{&l.SignatureBytes, &d.SignatureBytes}, {&l.BlobBytes, &d.BlobBytes},
	} {
		if *p.v <= 0 {
			*p.v = *p.d
		}
	}
	if l.Entries <= 0 {
		l.Entries = d.Entries
	}
	return l
}

func (l Limits) yaml(maxBytes int64) safeyaml.Limits {
	return safeyaml.Limits{MaxBytes: int(maxBytes), MaxDepth: 16, MaxNodes: 20*l.Entries + 1000, MaxSeqLen: l.Entries, MaxMapLen: 256}
}

// ParseLock decodes a lock, returning every entry it could read and a
// finding for each problem (subject registry.lock.json, field
// entries[i].sha256 and so on). An entry with a problem in its path or
// digest is kept, marked unusable, so that the caller can still name it.
func ParseLock(data []byte, lim Limits) (*Lock, []Finding) {
	lim = lim.withDefaults()
	fs := &findings{subject: LockFile}
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		// The parser would take YAML too; a lock is JSON, as upstream
		// writes it and as its name says.
		fs.invalid("", "the lock must be a JSON object")
		return nil, fs.list
	}
	top, ok := parseDoc(fs, data, lim.yaml(lim.LockBytes))
	if !ok {
		return nil, fs.list
	}
	o := asObj(fs, "", top)
	l := &Lock{}
	l.GeneratedAt, _ = o.str("generated_at", false, 64)
	list, _ := o.list("entries", true, lim.Entries)
	o.done()
	byPath := map[string]int{}
	byName := map[string]int{}
	for i, v := range list {
		e := lockEntry(fs, manifest.Index("entries", i), v)
		if e.valid {
			if first, dup := byPath[e.Path]; dup {
				fs.invalid(manifest.Key(manifest.Index("entries", i), "path"), fmt.Sprintf("%s is also the path of entries[%d]", quote(e.Path), first))
				e.valid = false
			} else {
				byPath[e.Path] = i
			}
			key := e.Kind + "\x00" + e.Name
			if first, dup := byName[key]; dup && e.Kind != KindFile {
				fs.invalid(manifest.Key(manifest.Index("entries", i), "name"), fmt.Sprintf("%s %s is also entries[%d]", e.Kind, quote(e.Name), first))
			} else {
				byName[key] = i
			}
		}
		l.Entries = append(l.Entries, e)
	}
	return l, fs.list
}

func lockEntry(fs *findings, path string, v any) LockEntry {
	o := asObj(fs, path, v)
	if o == nil {
		return LockEntry{}
	}
	defer o.done()
	var e LockEntry
	before := len(fs.list)
	e.Kind, _ = o.str("kind", true, maxLabel)
	if _, known := kinds[e.Kind]; e.Kind != "" && !known {
		fs.invalid(o.at("kind"), quote(e.Kind)+" is not a kind: one of model, algorithm, service, agent, image, file")
	}
	e.Name, _ = o.label("name", true)
	e.Path, _ = o.str("path", true, maxPath)
	if reason := checkRelPath(e.Path); e.Path != "" && reason != "" {
		fs.invalid(o.at("path"), reason)
	}
	e.SHA256, _ = o.str("sha256", true, maxLabel)
	if e.SHA256 != "" && !allZero(e.SHA256) {
		// All zeros is reported against the file, with its real digest.
		if reason := hexProblem(e.SHA256); reason != "" {
			fs.invalid(o.at("sha256"), reason)
		}
	}
	if n, ok := o.integer("size", false, 0, 1<<50); ok {
		e.Size = &n
	}
	if d, ok := o.str("digest", false, maxLabel); ok && d != "" {
		if reason := ociDigestProblem(d); reason != "" {
			fs.invalid(o.at("digest"), reason)
		} else {
			e.Digest = d
		}
	}
	e.valid = len(fs.list) == before
	return e
}

func allZero(s string) bool { return s != "" && strings.Trim(s, "0") == "" }

// hexProblem says why s is not a SHA-256 in lowercase hex, "" when it is.
func hexProblem(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '0' && c <= '9' || c >= 'a' && c <= 'f' {
			n++
			continue
		}
		if c >= 'A' && c <= 'F' {
			return quote(s) + " has uppercase hex digits; write a SHA-256 in lowercase"
		}
		return quote(s) + " is not hex"
	}
	if n == 64 {
		return ""
	}
	what := ""
	switch n {
	case 32:
		what = " (the length of an MD5)"
	case 40:
		what = " (the length of a SHA-1)"
	}
	return fmt.Sprintf("%s has %d hex digits%s; a SHA-256 has 64", quote(s), n, what)
}

// ociDigestProblem checks an OCI digest, "sha256:" and 64 hex digits.
func ociDigestProblem(d string) string {
	hex, ok := strings.CutPrefix(d, "sha256:")
	if !ok {
		return quote(d) + " is not an OCI digest (sha256:<64 hex digits>)"
	}
	if allZero(hex) {
		return quote(d) + " is all zeros, a placeholder"
	}
	if reason := hexProblem(hex); reason != "" {
		return "digest " + reason
	}
	return ""
}

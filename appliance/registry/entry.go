package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"aead.dev/minisign"
	"golang.org/x/crypto/blake2b"
)

// emptySHA256 is the SHA-256 of no bytes, which upstream manifests use,
// cut short, as a placeholder ("e3b0c44298fc1...").
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// checkEntry checks one lock entry's file against its digest and, for a
// manifest, its fields and integrity. The error is only ctx's.
func checkEntry(ctx context.Context, d *dirFS, e LockEntry, listed map[string]CatalogEntry, trust *Keyring, lim Limits) ([]Finding, error) {
	fs, _, err := checkEntryManifest(ctx, d, e, listed, trust, lim)
	return fs, err
}

// checkEntryManifest is checkEntry returning the parsed manifest too.
func checkEntryManifest(ctx context.Context, d *dirFS, e LockEntry, listed map[string]CatalogEntry, trust *Keyring, lim Limits) ([]Finding, *Manifest, error) {
	if !e.valid {
		return nil, nil, nil // the lock's finding names it
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	fs := &findings{subject: e.Path, kind: e.Kind, name: e.Name}
	var (
		data []byte
		got  string
		n    int64
		err  error
	)
	if isManifestKind(e.Kind) {
		data, err = d.readFile(e.Path, lim.ManifestBytes)
		got, n = sha256Hex(data), int64(len(data))
	} else {
		got, n, err = d.hashFile(ctx, e.Path, lim.BlobBytes)
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return nil, nil, ctxErr
	}
	var fe *fileError
	if errors.As(err, &fe) {
		fs.add("", fe.Code, fe.Detail)
		return fs.list, nil, nil
	}
	if err != nil {
		fs.add("", CodeRefusedFile, errText(err))
		return fs.list, nil, nil
	}
	compareDigest(fs, e, got, n, listed)
	if data == nil {
		return fs.list, nil, nil
	}
	m, mfs := ParseManifest(e.Path, e.Kind, data, lim)
	fs.list = append(fs.list, mfs...)
	if m == nil {
		return fs.list, nil, nil
	}
	if m.Name != "" && m.Name != e.Name {
		fs.invalid("name", fmt.Sprintf("the manifest names %s, the lock %s", quote(m.Name), quote(e.Name)))
	}
	ifs, err := checkIntegrity(ctx, d, e.Path, m, trust, lim)
	return append(fs.list, ifs...), m, err
}

func compareDigest(fs *findings, e LockEntry, got string, n int64, listed map[string]CatalogEntry) {
	switch {
	case allZero(e.SHA256):
		f := fs.add("", CodePlaceholderDigest, "the lock's sha256 is all zeros, a placeholder; it is never accepted (the file's is "+got+")")
		f.Want, f.Got = e.SHA256, got
	case got != e.SHA256:
		f := fs.add("", CodeDigestMismatch, fmt.Sprintf("sha256 is %s, the lock says %s (%d bytes)", got, e.SHA256, n))
		f.Want, f.Got = e.SHA256, got
	case e.Size != nil && *e.Size != n:
		fs.invalid("size", fmt.Sprintf("the lock says %d bytes for a file of %d with the right digest", *e.Size, n))
	default:
		detail := "sha256 " + got + " matches the lock"
		if c, ok := listed[e.Path]; ok {
			detail += "; listed at " + c.Field
		}
		f := fs.add("", CodeOK, detail)
		f.Want, f.Got = e.SHA256, got
	}
}

// checkIntegrity checks a manifest's integrity.sha256 and
// integrity.signature. Placeholders fail whatever the artifact; the values
// are compared with the artifact when it is in the registry, and reported
// as not checked when it is fetched from elsewhere.
func checkIntegrity(ctx context.Context, d *dirFS, subject string, m *Manifest, trust *Keyring, lim Limits) ([]Finding, error) {
	fs := &findings{subject: subject, kind: m.Kind, name: m.Name}
	in := m.Integrity
	sumOK := in.SHA256 != "" && manifestDigest(fs, in.SHA256)
	var parsed minisign.Signature
	sigOK := in.Signature != "" && manifestSignature(fs, in.Signature, &parsed)
	if !sumOK && !sigOK {
		return fs.list, nil
	}
	if m.Artifact == "" {
		where := "it is fetched from elsewhere"
		if url := downloadURL(m); url != "" {
			where = "download.url " + quote(url) + " is not in the registry"
		}
		if sumOK {
			fs.add("integrity.sha256", CodeNotChecked, "cannot be checked offline: "+where)
		}
		if sigOK {
			fs.add("integrity.signature", CodeNotChecked, "cannot be checked offline: "+where)
		}
		return fs.list, nil
	}
	a, err := hashArtifact(ctx, d, m.Artifact, lim)
	if ctxErr := ctx.Err(); ctxErr != nil {
		return nil, ctxErr
	}
	if err != nil {
		var fe *fileError
		code, detail := CodeRefusedFile, errText(err)
		if errors.As(err, &fe) {
			code, detail = fe.Code, fe.Detail
		}
		fs.add("download.url", code, "the artifact "+quote(m.Artifact)+" "+detail)
		return fs.list, nil
	}
	if sumOK {
		if a.sha256 == in.SHA256 {
			f := fs.add("integrity.sha256", CodeOK, "the artifact "+quote(m.Artifact)+" has this sha256")
			f.Want, f.Got = in.SHA256, a.sha256
		} else {
			f := fs.add("integrity.sha256", CodeDigestMismatch, fmt.Sprintf("the artifact %s has sha256 %s, the manifest says %s", quote(m.Artifact), a.sha256, in.SHA256))
			f.Want, f.Got = in.SHA256, a.sha256
		}
	}
	if sigOK {
		c := verifyParsed(parsed, a.blake2b, a.data, []byte(in.Signature), trust)
		fs.add("integrity.signature", c.Code, c.Detail)
	}
	return fs.list, nil
}

func downloadURL(m *Manifest) string {
	switch {
	case m.Model != nil:
		return m.Model.Download.URL
	case m.Service != nil:
		return m.Service.Download.URL
	}
	return ""
}

// manifestDigest classifies integrity.sha256, reporting anything that is
// not a real SHA-256; it returns true for one that is.
func manifestDigest(fs *findings, s string) bool {
	lower := strings.ToLower(s)
	switch {
	case allZero(s):
		fs.add("integrity.sha256", CodePlaceholderDigest, quote(s)+" is all zeros, a placeholder; it is never accepted")
	case strings.Contains(lower, "placeholder"):
		fs.add("integrity.sha256", CodePlaceholderDigest, quote(s)+" says it is a placeholder; it is never accepted")
	case strings.HasSuffix(s, "...") || strings.HasSuffix(s, "…"):
		what := ""
		if strings.HasPrefix(emptySHA256, strings.TrimRight(s, ".…")) {
			what = " (of the SHA-256 of empty input)"
		}
		fs.add("integrity.sha256", CodePlaceholderDigest, quote(s)+" is cut short with \"...\""+what+", a placeholder; it is never accepted")
	case s == emptySHA256:
		fs.add("integrity.sha256", CodePlaceholderDigest, "is the SHA-256 of empty input, a placeholder; it is never accepted")
	default:
		if reason := hexProblem(s); reason != "" {
			fs.invalid("integrity.sha256", reason)
			return false
		}
		return true
	}
	return false
}

// manifestSignature parses integrity.signature, the full text of a
// minisign signature of the artifact (a YAML block scalar). A one-line
// value is a placeholder ("minisign:ABC123"); it returns true when the
// value is a well-formed signature.
func manifestSignature(fs *findings, s string, out *minisign.Signature) bool {
	if err := out.UnmarshalText([]byte(s)); err != nil {
		if isPlaceholderSig(s) {
			fs.add("integrity.signature", CodePlaceholderSignature, quote(s)+" is a placeholder, not a minisign signature; it is never accepted")
		} else {
			fs.add("integrity.signature", CodeBadSignature, "not a minisign signature ("+err.Error()+")")
		}
		return false
	}
	return true
}

// artifact is what one pass over an artifact computes.
type artifact struct {
	sha256  string
	blake2b []byte // BLAKE2b-512, for prehashed minisign signatures
	data    []byte // the content, kept only when it is small (legacy signatures)
}

func hashArtifact(ctx context.Context, d *dirFS, rel string, lim Limits) (artifact, error) {
	f, size, err := d.open(rel, lim.BlobBytes)
	if err != nil {
		return artifact{}, err
	}
	defer f.Close()
	b2, _ := blake2b.New512(nil)
	sh := sha256.New()
	keep := &capWriter{max: int(min(size, lim.ManifestBytes))}
	if _, err := copyBounded(ctx, io.MultiWriter(b2, sh, keep), f, rel, lim.BlobBytes); err != nil {
		return artifact{}, err
	}
	a := artifact{sha256: hex.EncodeToString(sh.Sum(nil)), blake2b: b2.Sum(nil)}
	if !keep.over {
		a.data = keep.buf
	}
	return a, nil
}

// capWriter keeps what is written up to max bytes, and notes when more came.
type capWriter struct {
	buf  []byte
	max  int
	over bool
}

func (w *capWriter) Write(p []byte) (int, error) {
	if !w.over && len(w.buf)+len(p) <= w.max {
		w.buf = append(w.buf, p...)
	} else {
		w.over, w.buf = true, nil
	}
	return len(p), nil
}

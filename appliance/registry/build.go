package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
)

// BuildLock computes the lock of the registry in dir from its
// REGISTRY.yaml: one entry per catalog entry, with the file's SHA-256 and
// size, named by its manifest (or, for a blob, by its file name without
// extension). An image's OCI digest is the one manifest its archive's OCI
// index.json names (archive.go); for an archive that is not an OCI layout
// it is kept from the current lock, if that has one for the same path. Any finding that fails (a file missing, a
// manifest invalid) is returned and no lock is built: a lock must not
// vouch for a broken registry.
func BuildLock(ctx context.Context, dir string, now time.Time, opts ...Option) (*Lock, []Finding, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	lim := o.lim.withDefaults()
	d, err := openDir(dir)
	if err != nil {
		return nil, nil, err
	}
	defer d.Close()
	v := &verification{ctx: ctx, d: d, lim: lim, r: &Result{}}
	ix := v.index()
	old := map[string]LockEntry{}
	if data, err := d.readFile(LockFile, lim.LockBytes); err == nil {
		if l, _ := ParseLock(data, lim); l != nil {
			for _, e := range l.Entries {
				old[e.Path] = e
			}
		}
	}
	if ix == nil || failed(v.r.Findings) {
		return nil, v.r.Findings, nil
	}
	lock := &Lock{GeneratedAt: now.UTC().Format(time.RFC3339)}
	var fs []Finding
	for _, c := range ix.Catalog {
		e, efs, err := buildEntry(ctx, d, c, old[c.Path], lim)
		if err != nil {
			return nil, nil, err
		}
		fs = append(fs, efs...)
		lock.Entries = append(lock.Entries, e)
	}
	if failed(fs) {
		return nil, fs, nil
	}
	slices.SortFunc(lock.Entries, func(a, b LockEntry) int { return strings.Compare(a.Path, b.Path) })
	return lock, fs, nil
}

func buildEntry(ctx context.Context, d *dirFS, c CatalogEntry, old LockEntry, lim Limits) (LockEntry, []Finding, error) {
	e := LockEntry{Kind: c.Kind, Path: c.Path, valid: true}
	fs := &findings{subject: c.Path, kind: c.Kind}
	var n int64
	var err error
	if isManifestKind(c.Kind) {
		var data []byte
		if data, err = d.readFile(c.Path, lim.ManifestBytes); err == nil {
			e.SHA256, n = sha256Hex(data), int64(len(data))
			m, mfs := ParseManifest(c.Path, c.Kind, data, lim)
			fs.list = append(fs.list, mfs...)
			if m != nil {
				e.Name = m.Name
				ifs, ierr := checkIntegrity(ctx, d, c.Path, m, nil, lim)
				if ierr != nil {
					return e, nil, ierr
				}
				fs.list = append(fs.list, signatureUnchecked(ifs)...)
			}
		}
	} else {
		e.SHA256, n, err = d.hashFile(ctx, c.Path, lim.BlobBytes)
		e.Name = strings.SplitN(path.Base(c.Path), ".", 2)[0]
		if old.Kind == c.Kind {
			e.Digest = old.Digest
		}
		if err == nil && c.Kind == KindImage {
			var dg string
			// The archive's own index decides over the old lock's word.
			if dg, err = archiveDigest(ctx, d, c.Path, lim); dg != "" {
				e.Digest = dg
			}
		}
	}
	if ctx.Err() != nil {
		return e, nil, ctx.Err()
	}
	var fe *fileError
	if errors.As(err, &fe) {
		fs.add("", fe.Code, fe.Detail)
	} else if err != nil {
		fs.add("", CodeRefusedFile, errText(err))
	}
	e.Size = &n
	return e, fs.list, nil
}

// signatureUnchecked drops the missing-key findings of a build, which
// checks artifacts against no keyring: whether a signature is trusted is
// for Verify, on the machine that trusts.
func signatureUnchecked(fs []Finding) []Finding {
	out := fs[:0]
	for _, f := range fs {
		if f.Code != CodeMissingPublicKey {
			out = append(out, f)
		}
	}
	return out
}

func failed(fs []Finding) bool {
	for _, f := range fs {
		if f.Failed() {
			return true
		}
	}
	return false
}

// MarshalLock writes a lock as JSON, two-space indented as upstream's
// update_catalog.py writes it, with a final newline.
func MarshalLock(l *Lock) ([]byte, error) {
	if l == nil {
		return nil, fmt.Errorf("marshalling lock: %w", ErrInvalid)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(l); err != nil {
		return nil, fmt.Errorf("marshalling lock: %w", err)
	}
	return b.Bytes(), nil
}

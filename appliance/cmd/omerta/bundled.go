package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/api"
	"github.com/omertaos/omertaos/appliance/safeio"
	"github.com/omertaos/omertaos/appliance/store"
	"github.com/omertaos/omertaos/appliance/terminal"
)

// The bundled archives: the image ships the sample agents' OCI archives in
// agents.bundled_dir with an index.json that the build writes (scripts/
// agentimage): {"NAME": {"ref", "digest", "size", "archive"}}. Each archive
// is imported with the index's digest as the one it must have; an archive
// the index does not list is imported only when a NAME.digest file beside
// it says what it must be, since nothing else could vouch for it.
//
// Before an archive is imported it is verified against the signed
// registries, as an import through the API is (archiveVerifier): one the
// verification refuses (a registry that fails its checks, or unsigned on
// the enterprise profile) is not imported, and the refusal is logged and
// audited with its reason; omertad starts all the same. One allowed with
// warnings (unsigned on user or pro) is imported, and the warnings are
// logged and audited with it. A registry that vouches for the archive pins
// its OCI digest, which must be the one the index gives.

const (
	bundledIndex     = "index.json"
	bundledSuffix    = ".oci.tar"
	maxBundledIndex  = 1 << 20
	maxBundled       = 256
	maxDigestFile    = 256
	bundledMinRetry  = time.Second
	bundledMaxRetry  = 30 * time.Second
	bundledActor     = "omertad"
	bundledServiceID = "agents.bundled-images"
)

var bundledDigestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// bundledEntry is one archive to import.
type bundledEntry struct {
	Ref     string `json:"ref"`
	Digest  string `json:"digest"`
	Size    int64  `json:"size"`
	Archive string `json:"archive"`
}

// archiveImporter is what the bundled import needs of the runtime:
// digest is the one every image of the archive must have, name names an
// archive that names none.
type archiveImporter interface {
	Images(ctx context.Context) ([]runtime.Image, error)
	Import(ctx context.Context, path, digest, name string) ([]runtime.Image, error)
}

// runtimeImporter is the runtime as an archiveImporter.
type runtimeImporter struct{ *runtime.Runtime }

func (r runtimeImporter) Import(ctx context.Context, path, digest, name string) ([]runtime.Image, error) {
	opts := []runtime.ImportOption{runtime.ExpectDigest(digest)}
	if name != "" {
		opts = append(opts, runtime.WithName(name))
	}
	return r.ImportArchive(ctx, path, opts...)
}

// bundledImport is a daemon service: it imports the bundled archives once
// containerd answers, retrying with backoff while it does not, then ends.
// An archive already in containerd with its digest is not read again.
type bundledImport struct {
	dir   string
	rt    archiveImporter
	check api.ArchiveVerifier // nil: archives are not verified (tests)
	st    *store.Store
	log   *slog.Logger
	retry time.Duration // first retry delay; doubled up to bundledMaxRetry
	done  chan struct{} // closed when every archive was tried (tests)
}

func newBundledImport(dir string, rt archiveImporter, check api.ArchiveVerifier, st *store.Store, log *slog.Logger) *bundledImport {
	return &bundledImport{dir: dir, rt: rt, check: check, st: st, log: log, retry: bundledMinRetry, done: make(chan struct{})}
}

func (b *bundledImport) Name() string { return bundledServiceID }

func (b *bundledImport) Run(ctx context.Context) error {
	defer close(b.done)
	entries, refused, err := readBundled(b.dir)
	if errors.Is(err, os.ErrNotExist) {
		b.log.Info("no bundled agent images", "dir", b.dir)
		return nil
	}
	if err != nil {
		// A bad index must not stop omertad: the operator can still
		// import images by hand. It is logged and audited.
		b.log.Error("bundled agent images not imported", "err", terminal.Escape(err.Error()))
		return b.audit(ctx, "image.import.refused", filepath.Join(b.dir, bundledIndex), nil, "", nil, err)
	}
	for path, why := range refused {
		if err := b.audit(ctx, "image.import.refused", path, nil, "", nil, why); err != nil {
			return err
		}
		b.log.Warn("bundled archive not imported", "path", path, "err", terminal.Escape(why.Error()))
	}
	for _, e := range entries {
		if err := b.importOne(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// importOne imports e, waiting for containerd as long as it takes. Only
// a failing audit log is an error: omertad must not run unaudited.
//
// The archive is verified once, when containerd answers and does not
// hold the image yet: an image already there is not read again (a deploy
// of it is verified on its own).
func (b *bundledImport) importOne(ctx context.Context, e bundledEntry) error {
	path := filepath.Join(b.dir, e.Archive)
	if err := checkSize(path, e.Size); err != nil {
		b.log.Error("bundled agent image refused", "path", path, "err", terminal.Escape(err.Error()))
		return b.audit(ctx, "image.import.refused", path, nil, e.Digest, nil, err)
	}
	var check *api.ArchiveCheck
	delay := b.retry
	for {
		imgs, err := b.present(ctx, e)
		if err == nil && imgs == nil {
			if check == nil && b.check != nil {
				ac, err := b.verify(ctx, path, e)
				if ctx.Err() != nil {
					return nil // stopping: neither imported nor refused
				}
				check = &ac
				if err != nil {
					b.log.Error("bundled agent image refused", "path", path, "err", terminal.Escape(err.Error()))
					return b.audit(ctx, "image.import.refused", path, nil, e.Digest, check, err)
				}
			}
			imgs, err = b.rt.Import(ctx, path, e.Digest, e.Ref)
			if err == nil {
				b.log.Info("imported bundled agent image", "ref", e.Ref, "digest", e.Digest, "signer", signerOf(check))
				return b.audit(ctx, "image.import", path, imgs, e.Digest, check, nil)
			}
		} else if err == nil {
			return nil // already there with its digest
		}
		if !errors.Is(err, runtime.ErrUnavailable) {
			b.log.Error("bundled agent image refused", "path", path, "err", terminal.Escape(err.Error()))
			return b.audit(ctx, "image.import.refused", path, nil, e.Digest, check, err)
		}
		b.log.Info("containerd is not answering; will import bundled images when it does", "retry_in", delay)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, bundledMaxRetry)
	}
}

// verify asks the registries about the archive at path: refused, or
// vouched for by a registry that pins another digest than the index's,
// is an error. The warnings of an allowed archive are logged here.
func (b *bundledImport) verify(ctx context.Context, path string, e bundledEntry) (api.ArchiveCheck, error) {
	ac, err := b.check.CheckArchive(ctx, path)
	if err == nil && ac.Digest != "" && ac.Digest != e.Digest {
		err = fmt.Errorf("registry %s pins %s for %s; %s says %s", strconv.Quote(ac.Registry), ac.Digest, strconv.Quote(path), bundledIndex, e.Digest)
	}
	if err == nil {
		for _, w := range ac.Warnings {
			b.log.Warn("bundled agent image allowed with a warning", "path", path, "warning", terminal.Escape(w))
		}
	}
	return ac, err
}

func signerOf(c *api.ArchiveCheck) string {
	if c == nil {
		return ""
	}
	return c.Signer
}

// checkSize refuses an archive of another size than the index gives (0:
// not given): a cheap check before reading gigabytes.
func checkSize(path string, want int64) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: %w", strconv.Quote(path), safeio.ErrNotRegular)
	}
	if want > 0 && fi.Size() != want {
		return fmt.Errorf("%s is %d bytes; %s says %d", strconv.Quote(path), fi.Size(), bundledIndex, want)
	}
	return nil
}

// present returns the image named e.Ref (any name, for an archive whose
// name only the archive knows) when containerd already holds it at
// e.Digest, nil when it does not.
func (b *bundledImport) present(ctx context.Context, e bundledEntry) ([]runtime.Image, error) {
	imgs, err := b.rt.Images(ctx)
	if err != nil {
		return nil, err
	}
	for _, i := range imgs {
		if (i.Name == e.Ref || e.Ref == "") && (i.Digest == e.Digest || i.Manifest == e.Digest || i.Config == e.Digest) {
			return []runtime.Image{i}, nil
		}
	}
	return nil, nil
}

// audit records an import or its refusal; check is the verification's
// finding (nil when there was none): the signer ("" when unsigned), the
// registry, the digest it pins and the warnings.
func (b *bundledImport) audit(ctx context.Context, action, path string, imgs []runtime.Image, digest string, check *api.ArchiveCheck, err error) error {
	detail := map[string]any{"path": path, "bundled": true, "expected_digest": digest}
	if check != nil {
		warnings := make([]string, 0, len(check.Warnings))
		for _, w := range check.Warnings {
			warnings = append(warnings, terminal.Escape(w))
		}
		detail["signer"], detail["registry"] = terminal.Escape(check.Signer), terminal.Escape(check.Registry)
		detail["pinned_digest"], detail["warnings"] = terminal.Escape(check.Digest), warnings
	}
	names := make([]map[string]string, 0, len(imgs))
	for _, i := range imgs {
		names = append(names, map[string]string{"name": i.Name, "digest": i.Digest, "manifest": i.Manifest})
	}
	detail["images"] = names
	if err != nil {
		detail["error"] = terminal.Escape(err.Error())
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if aerr := b.st.Audit(actx, store.AuditEntry{Actor: bundledActor, Action: action, Target: path, Detail: detail}); aerr != nil {
		return fmt.Errorf("recording the import of %s: %w", strconv.Quote(path), aerr)
	}
	return nil
}

// readBundled lists what dir holds: the index's entries, then each
// unlisted archive that has a .digest file. Archives that cannot be
// vouched for are returned as refused, with why.
func readBundled(dir string) ([]bundledEntry, map[string]error, error) {
	fis, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	entries, err := readBundledIndex(dir)
	if err != nil {
		return nil, nil, err
	}
	listed := map[string]bool{}
	for _, e := range entries {
		listed[e.Archive] = true
	}
	refused := map[string]error{}
	for _, fi := range fis {
		name := fi.Name()
		if !strings.HasSuffix(name, bundledSuffix) || listed[name] || !fi.Type().IsRegular() {
			continue
		}
		if len(entries) >= maxBundled {
			return nil, nil, fmt.Errorf("bundled images in %s: more than %d archives", strconv.Quote(dir), maxBundled)
		}
		e, err := sidecarEntry(dir, name)
		if err != nil {
			refused[filepath.Join(dir, name)] = err
			continue
		}
		entries = append(entries, e)
	}
	return entries, refused, nil
}

// readBundledIndex reads index.json; no index is no entries.
func readBundledIndex(dir string) ([]bundledEntry, error) {
	path := filepath.Join(dir, bundledIndex)
	data, err := safeio.ReadFile(path, maxBundledIndex)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", strconv.Quote(path), err)
	}
	return parseBundledIndex(path, data)
}

// parseBundledIndex decodes an index.json strictly and checks each entry;
// path labels messages.
func parseBundledIndex(path string, data []byte) ([]bundledEntry, error) {
	var index map[string]bundledEntry
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&index); err != nil {
		return nil, fmt.Errorf("reading %s: %w", strconv.Quote(path), err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading %s: more than one JSON value", strconv.Quote(path))
	}
	if len(index) > maxBundled {
		return nil, fmt.Errorf("reading %s: %d entries; at most %d", strconv.Quote(path), len(index), maxBundled)
	}
	names := make([]string, 0, len(index))
	for n := range index {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]bundledEntry, 0, len(index))
	for _, n := range names {
		e := index[n]
		if err := checkBundled(e); err != nil {
			return nil, fmt.Errorf("reading %s: entry %s: %w", strconv.Quote(path), strconv.Quote(n), err)
		}
		out = append(out, e)
	}
	return out, nil
}

func checkBundled(e bundledEntry) error {
	switch {
	case e.Archive != filepath.Base(e.Archive) || !strings.HasSuffix(e.Archive, bundledSuffix) || strings.HasPrefix(e.Archive, "."):
		return fmt.Errorf("archive %s: must be a file name ending in %s, in the same directory", strconv.Quote(e.Archive), bundledSuffix)
	case !bundledDigestRE.MatchString(e.Digest):
		return fmt.Errorf("digest %s: must be sha256: and 64 lowercase hex digits", strconv.Quote(e.Digest))
	case e.Ref == "" || len(e.Ref) > 512 || terminal.Escape(e.Ref) != e.Ref:
		return fmt.Errorf("ref %s: must be an image reference of at most 512 printable bytes", strconv.Quote(e.Ref))
	}
	return nil
}

// sidecarEntry vouches for an archive the index does not list by the
// NAME.digest file beside it (one line: the manifest digest). Its name
// comes from the archive itself.
func sidecarEntry(dir, archive string) (bundledEntry, error) {
	p := filepath.Join(dir, strings.TrimSuffix(archive, bundledSuffix)+".digest")
	data, err := safeio.ReadFile(p, maxDigestFile)
	if errors.Is(err, os.ErrNotExist) {
		return bundledEntry{}, fmt.Errorf("%s is not listed in %s and has no .digest file: nothing to verify it against", strconv.Quote(archive), bundledIndex)
	}
	if err != nil {
		return bundledEntry{}, fmt.Errorf("reading %s: %w", strconv.Quote(p), err)
	}
	d := strings.TrimSpace(string(data))
	if !bundledDigestRE.MatchString(d) {
		return bundledEntry{}, fmt.Errorf("%s: %s is not sha256: and 64 lowercase hex digits", strconv.Quote(p), strconv.Quote(d))
	}
	return bundledEntry{Digest: d, Archive: archive}, nil
}

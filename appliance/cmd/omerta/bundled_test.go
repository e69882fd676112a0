package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/api"
	"github.com/omertaos/omertaos/appliance/store"
)

type fakeImporter struct {
	mu       sync.Mutex
	down     int // calls answered ErrUnavailable before containerd "comes up"
	have     []runtime.Image
	imported []string // "path digest name"
	fail     map[string]error
}

func (f *fakeImporter) Images(context.Context) ([]runtime.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down > 0 {
		f.down--
		return nil, fmt.Errorf("listing images: %w", runtime.ErrUnavailable)
	}
	return append([]runtime.Image(nil), f.have...), nil
}

func (f *fakeImporter) Import(_ context.Context, path, digest, name string) ([]runtime.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail[filepath.Base(path)]; err != nil {
		return nil, err
	}
	f.imported = append(f.imported, filepath.Base(path)+" "+digest+" "+name)
	img := runtime.Image{Name: name, Digest: digest, Manifest: digest}
	f.have = append(f.have, img)
	return []runtime.Image{img}, nil
}

func digestOf(c byte) string { return "sha256:" + strings.Repeat(string(c), 64) }

func writeBundle(t *testing.T, index map[string]bundledEntry, archives ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, a := range archives {
		os.WriteFile(filepath.Join(dir, a), []byte("archive "+a), 0o644)
	}
	if index != nil {
		b, _ := json.Marshal(index)
		os.WriteFile(filepath.Join(dir, bundledIndex), b, 0o644)
	}
	return dir
}

func testStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func runBundled(t *testing.T, dir string, rt archiveImporter, st *store.Store) []store.AuditRecord {
	t.Helper()
	return runBundledWith(t, dir, rt, nil, st, io.Discard)
}

// runBundledWith runs the bundled import of dir once, with verifier v
// (nil: none) and omertad's log written to log, and returns the audit log.
func runBundledWith(t *testing.T, dir string, rt archiveImporter, v api.ArchiveVerifier, st *store.Store, log io.Writer) []store.AuditRecord {
	t.Helper()
	b := newBundledImport(dir, rt, v, st, slog.New(slog.NewTextHandler(log, nil)))
	b.retry = time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Run(ctx); err != nil {
		t.Fatal(err)
	}
	recs, err := st.AuditLog(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func actions(recs []store.AuditRecord) string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Action+" "+filepath.Base(r.Target))
	}
	return strings.Join(out, ", ")
}

// TestBundledImport: the index's archives are imported with its digests
// once containerd answers, one already present is skipped, and an unlisted
// archive is imported only with a .digest file beside it.
func TestBundledImport(t *testing.T) {
	index := map[string]bundledEntry{
		"tool": {Ref: "omertaos.local/agents/tool:0.1.0", Digest: digestOf('a'), Archive: "tool.oci.tar", Size: int64(len("archive tool.oci.tar"))},
		"web":  {Ref: "omertaos.local/agents/web:0.1.0", Digest: digestOf('b'), Archive: "web.oci.tar"},
	}
	dir := writeBundle(t, index, "tool.oci.tar", "web.oci.tar", "extra.oci.tar", "stray.oci.tar")
	os.WriteFile(filepath.Join(dir, "extra.digest"), []byte(digestOf('c')+"\n"), 0o644)
	rt := &fakeImporter{down: 3, have: []runtime.Image{{Name: "omertaos.local/agents/web:0.1.0", Digest: digestOf('z'), Manifest: digestOf('b')}}}
	recs := runBundled(t, dir, rt, testStore(t))
	want := []string{"tool.oci.tar " + digestOf('a') + " omertaos.local/agents/tool:0.1.0", "extra.oci.tar " + digestOf('c') + " "}
	if strings.Join(rt.imported, "|") != strings.Join(want, "|") {
		t.Errorf("imported %q, want %q", rt.imported, want)
	}
	if got := actions(recs); got != "image.import.refused stray.oci.tar, image.import tool.oci.tar, image.import extra.oci.tar" {
		t.Errorf("audit = %s", got)
	}
	for _, r := range recs {
		if r.Actor != "omertad" {
			t.Errorf("record %s by %q", r.Action, r.Actor)
		}
	}
	// A second start finds everything in place and reads nothing again.
	rt.imported = nil
	if recs2 := runBundled(t, dir, rt, testStore(t)); len(rt.imported) != 0 || actions(recs2) != "image.import.refused stray.oci.tar" {
		t.Errorf("second run imported %q, audited %s", rt.imported, actions(recs2))
	}
}

func TestBundledRefusals(t *testing.T) {
	st := testStore(t)
	// An index that lies about an archive's size: refused before reading.
	dir := writeBundle(t, map[string]bundledEntry{"t": {Ref: "r:1", Digest: digestOf('a'), Archive: "t.oci.tar", Size: 1}}, "t.oci.tar")
	rt := &fakeImporter{}
	if recs := runBundled(t, dir, rt, st); len(rt.imported) != 0 || actions(recs) != "image.import.refused t.oci.tar" ||
		!strings.Contains(string(recs[0].Detail), "index.json says 1") {
		t.Errorf("wrong size: imported %q, audit %s %s", rt.imported, actions(recs), recs[0].Detail)
	}
	// The runtime refusing the digest is audited with its reason.
	dir = writeBundle(t, map[string]bundledEntry{"t": {Ref: "r:1", Digest: digestOf('a'), Archive: "t.oci.tar"}}, "t.oci.tar")
	rt = &fakeImporter{fail: map[string]error{"t.oci.tar": fmt.Errorf("importing: %w: expected ...", runtime.ErrDigestMismatch)}}
	st = testStore(t)
	if recs := runBundled(t, dir, rt, st); actions(recs) != "image.import.refused t.oci.tar" || !strings.Contains(string(recs[0].Detail), "digest mismatch") {
		t.Errorf("digest mismatch: audit %s %+v", actions(recs), recs)
	}
	// Bad indexes import nothing and say why.
	for name, body := range map[string]string{
		"escape":    `{"t": {"ref": "r:1", "digest": "` + digestOf('a') + `", "archive": "../t.oci.tar"}}`,
		"digest":    `{"t": {"ref": "r:1", "digest": "md5:00", "archive": "t.oci.tar"}}`,
		"unknown":   `{"t": {"ref": "r:1", "digest": "` + digestOf('a') + `", "archive": "t.oci.tar", "run": "sh"}}`,
		"ref":       `{"t": {"ref": "r:1\u001b[2J", "digest": "` + digestOf('a') + `", "archive": "t.oci.tar"}}`,
		"not json":  `{`,
		"wrong top": `[]`,
		"two":       `{}{}`,
	} {
		dir := writeBundle(t, nil, "t.oci.tar")
		os.WriteFile(filepath.Join(dir, bundledIndex), []byte(body), 0o644)
		rt := &fakeImporter{}
		st := testStore(t)
		if recs := runBundled(t, dir, rt, st); len(rt.imported) != 0 || actions(recs) != "image.import.refused index.json" {
			t.Errorf("%s: imported %q, audit %s", name, rt.imported, actions(recs))
		}
	}
	// No directory: nothing to do, nothing audited.
	if recs := runBundled(t, filepath.Join(t.TempDir(), "absent"), &fakeImporter{}, testStore(t)); len(recs) != 0 {
		t.Errorf("missing dir audited %s", actions(recs))
	}
}

// TestBundledStopsWhileWaiting: a daemon stopping while containerd is down
// is not held up by the retry loop.
func TestBundledStopsWhileWaiting(t *testing.T) {
	dir := writeBundle(t, map[string]bundledEntry{"t": {Ref: "r:1", Digest: digestOf('a'), Archive: "t.oci.tar"}}, "t.oci.tar")
	b := newBundledImport(dir, &fakeImporter{down: 1 << 30}, nil, testStore(t), slog.New(slog.NewTextHandler(io.Discard, nil)))
	b.retry = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- b.Run(ctx) }()
	time.Sleep(120 * time.Millisecond)
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func FuzzBundledIndex(f *testing.F) {
	good, _ := json.Marshal(map[string]bundledEntry{"t": {Ref: "omertaos.local/agents/tool:0.1.0", Digest: digestOf('a'), Archive: "t.oci.tar", Size: 10}})
	for _, s := range []string{string(good), `{}`, `[]`, `{"t": null}`, `{"t": {"archive": "../x.oci.tar"}}`,
		`{"t": {"ref": "a\u0000", "digest": "sha256:` + strings.Repeat("0", 64) + `", "archive": "a.oci.tar"}}`, `{"a":1}{"b":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := parseBundledIndex("index.json", data)
		if err != nil {
			return
		}
		if len(entries) > maxBundled {
			t.Fatalf("%d entries passed the bound", len(entries))
		}
		for _, e := range entries {
			if checkBundled(e) != nil || filepath.Base(e.Archive) != e.Archive || e.Archive == ".." {
				t.Fatalf("entry %+v passed", e)
			}
		}
	})
}

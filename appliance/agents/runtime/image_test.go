package runtime

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	digest "github.com/opencontainers/go-digest"

	"github.com/omertaos/omertaos/appliance/agents/ctrtest"
	"github.com/omertaos/omertaos/appliance/safeio"
)

func testImport(t *testing.T, s *suite) {
	e := s.newEnv(t)
	ctx := context.Background()
	a := s.archive
	if e.image.Name != a.Name || e.image.Digest != a.Manifest || e.image.Manifest != a.Manifest || e.image.Config != a.Config {
		t.Errorf("imported %+v from %+v", e.image, a)
	}
	other := func(name string, f ctrtest.Format, unnamed bool) ctrtest.Archive {
		return ctrtest.BusyboxArchive(t, ctrtest.ImageOptions{Name: name, Format: f, Unnamed: unnamed,
			Cmd: []string{"/bin/sh", "-c", "sleep 3600", name}})
	}
	t.Run("docker save format", func(t *testing.T) {
		d := other("omerta.test/docker:1", ctrtest.Docker, false)
		imgs, err := e.rt.ImportArchive(ctx, d.Path, ExpectDigest(d.Config))
		if err != nil || len(imgs) != 1 || imgs[0].Name != d.Name || imgs[0].Config != d.Config {
			t.Fatalf("import = %+v, %v; archive %+v", imgs, err, d)
		}
		e.run(t, Spec{ID: "from-docker", Image: d.Name, Digest: d.Config})
		e.waitState(t, "from-docker", Running, 5*time.Second)
	})
	t.Run("digest mismatch leaves nothing", func(t *testing.T) {
		o := other("omerta.test/other:1", ctrtest.OCI, false)
		before := blobs(t, e)
		_, err := e.rt.ImportArchive(ctx, o.Path, ExpectDigest(a.Manifest))
		if !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("import with the wrong digest: %v", err)
		}
		assertNotStored(t, e, o, before)
	})
	t.Run("tampered blob refused", func(t *testing.T) {
		o := other("omerta.test/tampered:1", ctrtest.OCI, false)
		tampered := filepath.Join(t.TempDir(), "tampered.tar")
		rewriteTar(t, o.Path, tampered, func(name string, b []byte) []byte {
			if name == "blobs/sha256/"+strings.TrimPrefix(o.Config, "sha256:") {
				return bytes.Replace(b, []byte(`"sleep 3600"`), []byte(`"rm -rf /*"`), 1)
			}
			return b
		})
		before := blobs(t, e)
		_, err := e.rt.ImportArchive(ctx, tampered)
		if !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("import of a tampered archive: %v", err)
		}
		assertNotStored(t, e, o, before)
	})
	t.Run("unnamed needs a name", func(t *testing.T) {
		o := other("omerta.test/unnamed:1", ctrtest.OCI, true)
		if _, err := e.rt.ImportArchive(ctx, o.Path); !errors.Is(err, ErrInvalid) {
			t.Fatalf("unnamed archive: %v", err)
		}
		imgs, err := e.rt.ImportArchive(ctx, o.Path, WithName("omerta.test/named:2"))
		if err != nil || len(imgs) != 1 || imgs[0].Name != "omerta.test/named:2" {
			t.Fatalf("import with a name: %+v, %v", imgs, err)
		}
		if err := e.rt.RemoveImage(ctx, "omerta.test/named:2"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("refusals", func(t *testing.T) { testImportRefusals(t, s, e) })
	imgs, err := e.rt.Images(ctx)
	if err != nil || len(imgs) != 2 {
		t.Errorf("images at the end: %+v, %v; want busybox and the docker one", imgs, err)
	}
}

// assertNotStored checks that a refused import left no image name, none
// of the archive's own blobs and no other new blob.
// assertNotStored: a's image and blobs are absent, and no blob appeared
// that was not there before. A blob may have gone meanwhile: containerd's
// garbage collector runs on its own, and an earlier subtest's deletion can
// let it remove an unreferenced blob while this one runs.
func assertNotStored(t *testing.T, e *env, a ctrtest.Archive, before map[digest.Digest]bool) {
	t.Helper()
	ctx := e.rt.ctx(context.Background())
	if _, err := e.rt.c.GetImage(ctx, a.Name); err == nil {
		t.Errorf("image %s exists after a refused import", a.Name)
	}
	for _, d := range []string{a.Manifest, a.Config} {
		if _, err := e.rt.c.ContentStore().Info(ctx, digest.Digest(d)); err == nil {
			t.Errorf("blob %s left in the content store", d)
		}
	}
	for d := range blobs(t, e) {
		if !before[d] {
			t.Errorf("blob %s left in the content store by the refused import", d)
		}
	}
}

func blobs(t *testing.T, e *env) map[digest.Digest]bool {
	t.Helper()
	set := map[digest.Digest]bool{}
	err := e.rt.c.ContentStore().Walk(e.rt.ctx(context.Background()), func(i content.Info) error { set[i.Digest] = true; return nil })
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func testImportRefusals(t *testing.T, s *suite, e *env) {
	ctx := context.Background()
	small, err := New(e.rt.c, WithNamespace(e.rt.ns), WithLogDir(e.rt.logDir), WithRunDir(e.rt.runDir), WithMaxArchive(1024))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := small.ImportArchive(ctx, s.archive.Path); !errors.Is(err, safeio.ErrTooLarge) {
		t.Errorf("archive over the cap: %v", err)
	}
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := e.rt.ImportArchive(ctx, fifo); !errors.Is(err, safeio.ErrNotRegular) || time.Since(start) > time.Second {
		t.Errorf("FIFO: %v after %v", err, time.Since(start))
	}
	junk := filepath.Join(t.TempDir(), "junk.tar")
	os.WriteFile(junk, bytes.Repeat([]byte("not a tar "), 100), 0o600)
	if _, err := e.rt.ImportArchive(ctx, junk); err == nil {
		t.Error("junk archive accepted")
	}
	if _, err := e.rt.ImportArchive(ctx, filepath.Join(t.TempDir(), "missing.tar")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing archive: %v", err)
	}
}

// rewriteTar copies a tar file, passing each regular file through edit.
func rewriteTar(t *testing.T, src, dst string, edit func(name string, b []byte) []byte) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	tr, tw := tar.NewReader(in), tar.NewWriter(out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b = edit(h.Name, b)
			h.Size = int64(len(b))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

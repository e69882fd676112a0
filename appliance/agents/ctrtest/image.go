package ctrtest

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BusyboxPath is Debian's static busybox (package busybox-static).
const BusyboxPath = "/bin/busybox"

// Format is an image archive's format.
type Format int

const (
	// OCI is an OCI image layout in a tar file.
	OCI Format = iota
	// Docker is the format of `docker save`: manifest.json and RepoTags.
	Docker
)

// ImageOptions describes the test image BusyboxArchive builds.
type ImageOptions struct {
	// Name is the image's reference (default omerta.test/busybox:latest).
	Name string
	// User is the image config's User ("" means the image names none).
	User string
	// Cmd is the image's default command (default: sleep for an hour).
	Cmd    []string
	Format Format
	// Unnamed leaves the name out of an OCI layout's index.
	Unnamed bool
}

// Archive is an image archive written by BusyboxArchive.
type Archive struct {
	Path string
	Name string
	// Manifest is the image manifest's digest. In Docker format the
	// manifest is not part of the archive and an importer writes its own,
	// so only Config identifies the image.
	Manifest string
	// Config is the digest of the image config (Docker's image ID).
	Config string
}

// applets are the busybox commands the tests call by name.
var applets = []string{"sh", "cat", "sleep", "true", "false", "id", "uname", "dd", "head",
	"ls", "echo", "mkdir", "touch", "yes", "grep", "dmesg", "wc", "rm", "chmod", "cp", "seq", "env",
	"tr", "sed", "hostname", "tail", "kill", "ps", "md5sum", "sha256sum"}

// BusyboxArchive builds a tiny image holding Debian's static busybox and
// writes it as an archive under t.TempDir(). The test is skipped without
// busybox-static (failed under CI=true).
func BusyboxArchive(t testing.TB, o ImageOptions) Archive {
	t.Helper()
	layer := busyboxLayer(t)
	if o.Name == "" {
		o.Name = "omerta.test/busybox:latest"
	}
	if o.Cmd == nil {
		o.Cmd = []string{"/bin/sleep", "3600"}
	}
	img, err := busyboxImage(layer, o)
	if err != nil {
		t.Fatalf("building the busybox image: %v", err)
	}
	a, err := writeArchive(t.TempDir(), img, o)
	if err != nil {
		t.Fatalf("writing the busybox archive: %v", err)
	}
	return a
}

func busyboxImage(layer v1.Layer, o ImageOptions) (v1.Image, error) {
	base := empty.Image
	if o.Format == OCI {
		base = mutate.MediaType(base, types.OCIManifestSchema1)
		base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	}
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", goruntime.GOARCH
	cfg.Config = v1.Config{
		Cmd:  o.Cmd,
		Env:  []string{"PATH=/bin"},
		User: o.User,
	}
	return mutate.ConfigFile(img, cfg)
}

func writeArchive(dir string, img v1.Image, o ImageOptions) (Archive, error) {
	mf, err := img.Digest()
	if err != nil {
		return Archive{}, err
	}
	cf, err := img.ConfigName()
	if err != nil {
		return Archive{}, err
	}
	a := Archive{Path: filepath.Join(dir, "image.tar"), Name: o.Name, Manifest: mf.String(), Config: cf.String()}
	if o.Format == Docker {
		tag, err := name.NewTag(o.Name)
		if err != nil {
			return Archive{}, err
		}
		return a, tarball.WriteToFile(a.Path, tag, img)
	}
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		return Archive{}, err
	}
	var opts []layout.Option
	if !o.Unnamed {
		opts = append(opts, layout.WithAnnotations(map[string]string{
			// containerd's importer names the image after this annotation.
			"io.containerd.image.name":          o.Name,
			"org.opencontainers.image.ref.name": o.Name,
		}))
	}
	err = lp.AppendImage(img, opts...)
	if err != nil {
		return Archive{}, err
	}
	return a, TarDir(filepath.Join(dir, "layout"), a.Path)
}

// TarDir writes the regular files and directories under dir into a tar
// file at dst, with names relative to dir.
func TarDir(dir, dst string) error {
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(out)
	err = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := e.Info()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(hdr); err != nil || !fi.Mode().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

var (
	layerOnce sync.Once
	layerVal  v1.Layer
	layerErr  error
)

// busyboxLayer builds the image's one layer once per test binary.
func busyboxLayer(t testing.TB) v1.Layer {
	t.Helper()
	if err := checkStatic(BusyboxPath); err != nil {
		skipOrFail(t, err.Error()+" (apt-get install busybox-static)")
	}
	layerOnce.Do(func() {
		var b []byte
		if b, layerErr = busyboxTar(BusyboxPath); layerErr != nil {
			return
		}
		layerVal, layerErr = tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(b)), nil
		}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	})
	if layerErr != nil {
		t.Fatalf("building the busybox layer: %v", layerErr)
	}
	return layerVal
}

// checkStatic refuses a busybox that needs a dynamic loader: the image has
// no libc.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; the test image needs the static one", path)
		}
	}
	return nil
}

// busyboxTar is the layer: the directories a container needs as mount
// points, busybox with its applets as symbolic links, and an /etc/passwd.
func busyboxTar(src string) ([]byte, error) {
	bin, err := os.ReadFile(src)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body []byte) {
		if err == nil {
			h.Size = int64(len(body))
			if err = tw.WriteHeader(h); err == nil {
				_, err = tw.Write(body)
			}
		}
	}
	for _, d := range []string{"bin", "dev", "etc", "proc", "sys", "tmp", "run", "data"} {
		add(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755}, nil)
	}
	add(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755}, bin)
	for _, a := range applets {
		add(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777}, nil)
	}
	add(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/passwd", Mode: 0o644},
		[]byte("root:x:0:0:root:/:/bin/sh\nagent:x:1000:1000:agent:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"))
	add(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/group", Mode: 0o644},
		[]byte("root:x:0:\nagent:x:1000:\nnogroup:x:65534:\n"))
	if err == nil {
		err = tw.Close()
	}
	return buf.Bytes(), err
}

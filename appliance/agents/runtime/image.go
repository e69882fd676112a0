package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/images/archive"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/omertaos/omertaos/appliance/safeio"
)

// Bounds on what an archive's metadata may hold.
const (
	maxMetaBlob   = 4 << 20 // an index, manifest or image config
	maxImageNames = 64      // entries of an archive's index
)

// Image is an image in containerd.
type Image struct {
	Name string
	// Digest is what the name points at: an index or a manifest.
	Digest string
	// Manifest is the manifest for this machine's platform.
	Manifest string
	// Config is the image config's digest (Docker's image ID).
	Config string
}

// ImportOption changes ImportArchive.
type ImportOption func(*importOpts)

type importOpts struct {
	digest string
	name   string
}

// ExpectDigest refuses the archive unless every image in it has digest d
// as its index, manifest or config digest.
func ExpectDigest(d string) ImportOption { return func(o *importOpts) { o.digest = d } }

// WithName names the image of an archive that names none (an OCI layout
// without a full reference in its index).
func WithName(name string) ImportOption { return func(o *importOpts) { o.name = name } }

// ExpectedDigest is the digest opts require of an import ("" for none),
// for fakes of the Runtime that must honour it as ImportArchive does.
func ExpectedDigest(opts ...ImportOption) string {
	var o importOpts
	for _, opt := range opts {
		opt(&o)
	}
	return o.digest
}

// entry is one image of an archive, resolved for this platform.
type entry struct {
	img      images.Image
	manifest ocispec.Descriptor
	config   ocispec.Descriptor
}

// ImportArchive imports an OCI image layout or `docker save` tar file and
// unpacks it for the snapshotter. Content is stored under its own digest,
// so a tampered blob leaves its manifest's reference dangling, which is
// refused. Everything is imported under a lease: on any refusal the lease
// is dropped, garbage collection runs, and nothing new is left behind.
func (r *Runtime) ImportArchive(ctx context.Context, path string, opts ...ImportOption) (_ []Image, err error) {
	var o importOpts
	for _, opt := range opts {
		opt(&o)
	}
	f, err := r.openArchive(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r.mu.Lock()
	r.imports++
	r.mu.Unlock()
	defer func() { r.mu.Lock(); r.imports--; r.mu.Unlock() }()
	ctx, done, err := r.lease(r.ctx(ctx))
	if err != nil {
		return nil, err
	}
	defer func() { done(err != nil) }()

	idx, err := archive.ImportIndex(ctx, r.c.ContentStore(), &capped{r: f, limit: r.maxArchive, name: path})
	if err != nil {
		return nil, wrap("reading the archive "+quote(path), err)
	}
	entries, err := r.resolveIndex(ctx, idx, o)
	if err != nil {
		return nil, err
	}
	return r.storeImages(ctx, entries)
}

// openArchive opens path for reading, refusing what is not a regular file
// (without blocking on a FIFO) or is larger than the cap.
func (r *Runtime) openArchive(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("opening the archive: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%w: %s", safeio.ErrNotRegular, quote(path))
	} else if err == nil && fi.Size() > r.maxArchive {
		err = &safeio.LimitError{Name: path, Limit: r.maxArchive}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("opening the archive: %w", err)
	}
	return f, nil
}

// capped fails a read past the archive cap: the file may grow after Stat.
type capped struct {
	r     io.Reader
	n     int64
	limit int64
	name  string
}

func (c *capped) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n += int64(n); c.n > c.limit {
		return 0, &safeio.LimitError{Name: c.name, Limit: c.limit}
	}
	return n, err
}

// lease creates a lease that protects what is written under the returned
// context from garbage collection. done(true) drops it and collects
// synchronously (undoing a failed step); done(false) just drops it. It
// expires by itself should the process die first.
//
// The lease is counted as this Runtime's before containerd makes it: the
// other way round, an orphan sweep (orphanLeases) listing leases between
// the two would find it unknown and delete it under the import that holds
// it ("lease does not exist" when the import commits a blob).
func (r *Runtime) lease(ctx context.Context) (context.Context, func(failed bool), error) {
	ls := r.c.LeasesService()
	var id [12]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, nil, fmt.Errorf("creating a lease ID: %w", err)
	}
	lid := "omerta-" + hex.EncodeToString(id[:])
	r.mu.Lock()
	r.leases[lid] = true
	r.mu.Unlock()
	l, err := ls.Create(ctx, leases.WithID(lid), leases.WithExpiration(time.Hour),
		leases.WithLabel(labelPrefix+"lease", "true"))
	if err != nil {
		r.mu.Lock()
		delete(r.leases, lid)
		r.mu.Unlock()
		return nil, nil, wrap("creating a lease", err)
	}
	if r.leaseMade != nil {
		r.leaseMade(l.ID)
	}
	return leases.WithLease(ctx, l.ID), func(failed bool) {
		cctx, cancel := cleanupCtx(ctx)
		defer cancel()
		var opts []leases.DeleteOpt
		if failed {
			opts = append(opts, leases.SynchronousDelete)
		}
		ls.Delete(cctx, l, opts...)
		r.mu.Lock()
		delete(r.leases, l.ID)
		r.mu.Unlock()
	}, nil
}

// resolveIndex reads the archive's index and resolves each named image to
// this platform's manifest and config, checking that every blob they
// reference is present.
func (r *Runtime) resolveIndex(ctx context.Context, idxDesc ocispec.Descriptor, o importOpts) ([]entry, error) {
	cs := r.c.ContentStore()
	var idx ocispec.Index
	if err := readJSON(ctx, cs, idxDesc, &idx); err != nil {
		return nil, fmt.Errorf("reading the archive's index: %w", err)
	}
	if len(idx.Manifests) > maxImageNames {
		return nil, invalid("archive", "index lists %d images, more than %d", len(idx.Manifests), maxImageNames)
	}
	var out []entry
	for i, m := range idx.Manifests {
		if _, ok := m.Annotations[images.AnnotationManifestSubject]; ok {
			continue // a signature or attestation, not an image
		}
		e, err := r.resolveEntry(ctx, m, o)
		if err != nil {
			return nil, fmt.Errorf("archive image %d (%s): %w", i, m.Digest, err)
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, invalid("archive", "holds no image")
	}
	return out, nil
}

func (r *Runtime) resolveEntry(ctx context.Context, m ocispec.Descriptor, o importOpts) (entry, error) {
	name := imageName(m.Annotations, o.name)
	if name == "" {
		return entry{}, invalid("name", "the archive names no image; give a name")
	}
	mdesc, mf, err := platformManifest(ctx, r.c.ContentStore(), m, 0)
	if err != nil {
		return entry{}, err
	}
	if err := checkBlobs(ctx, r.c.ContentStore(), append([]ocispec.Descriptor{mf.Config}, mf.Layers...)); err != nil {
		return entry{}, err
	}
	e := entry{img: images.Image{Name: name, Target: m}, manifest: mdesc, config: mf.Config}
	if o.digest != "" && !e.has(o.digest) {
		return entry{}, fmt.Errorf("%w: expected %s, the archive holds index/manifest %s, manifest %s, config %s",
			ErrDigestMismatch, o.digest, m.Digest, mdesc.Digest, mf.Config.Digest)
	}
	return e, nil
}

func (e entry) has(d string) bool {
	return e.img.Target.Digest.String() == d || e.manifest.Digest.String() == d || e.config.Digest.String() == d
}

// imageName is the full reference the archive gives (containerd's own
// annotation, set for `docker save` archives, or an OCI ref.name that is a
// full reference rather than a bare tag), else fallback.
func imageName(ann map[string]string, fallback string) string {
	if n := ann[images.AnnotationImageName]; n != "" {
		return n
	}
	if n := ann[ocispec.AnnotationRefName]; strings.ContainsAny(n, "/:") {
		return n
	}
	return fallback
}

// platformManifest descends from an index to the manifest for this
// machine's platform (at most two levels of index).
func platformManifest(ctx context.Context, cs content.Store, d ocispec.Descriptor, depth int) (ocispec.Descriptor, ocispec.Manifest, error) {
	if images.IsManifestType(d.MediaType) {
		var mf ocispec.Manifest
		err := readJSON(ctx, cs, d, &mf)
		return d, mf, err
	}
	if !images.IsIndexType(d.MediaType) || depth > 1 {
		return d, ocispec.Manifest{}, invalid("mediaType", "%q at depth %d is not an image", d.MediaType, depth)
	}
	var idx ocispec.Index
	if err := readJSON(ctx, cs, d, &idx); err != nil {
		return d, ocispec.Manifest{}, err
	}
	want := platforms.Default()
	for i, c := range idx.Manifests {
		if i >= maxImageNames {
			break
		}
		if c.Platform == nil || want.Match(*c.Platform) {
			return platformManifest(ctx, cs, c, depth+1)
		}
	}
	return d, ocispec.Manifest{}, fmt.Errorf("%w: no manifest for %s", ErrNotFound, platforms.DefaultString())
}

// readJSON reads a small blob (bounded) and decodes it.
func readJSON(ctx context.Context, cs content.Store, d ocispec.Descriptor, v any) error {
	info, err := cs.Info(ctx, d.Digest)
	if err != nil {
		return wrap("blob "+d.Digest.String()+" is missing or does not match its digest", err)
	}
	if info.Size > maxMetaBlob {
		return invalid("blob", "%s is %d bytes, more than %d", d.Digest, info.Size, maxMetaBlob)
	}
	b, err := content.ReadBlob(ctx, cs, ocispec.Descriptor{Digest: d.Digest, Size: info.Size})
	if err != nil {
		return wrap("reading blob "+d.Digest.String(), err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return invalid("blob", "%s: %v", d.Digest, err)
	}
	return nil
}

// checkBlobs refuses a manifest whose config or layers are absent (the
// archive held no blob with that digest) or of another size.
func checkBlobs(ctx context.Context, cs content.Store, descs []ocispec.Descriptor) error {
	for _, d := range descs {
		info, err := cs.Info(ctx, d.Digest)
		if errdefs.IsNotFound(err) {
			return fmt.Errorf("%w: blob %s is not in the archive, or its content does not match its digest", ErrDigestMismatch, d.Digest)
		}
		if err != nil {
			return wrap("checking blob "+d.Digest.String(), err)
		}
		if info.Size != d.Size {
			return fmt.Errorf("%w: blob %s is %d bytes, the manifest says %d", ErrDigestMismatch, d.Digest, info.Size, d.Size)
		}
	}
	return nil
}

// storeImages labels content for the garbage collector, unpacks each image
// and only then creates (or moves) the names, so that a failure before the
// end leaves no name pointing at half an image.
func (r *Runtime) storeImages(ctx context.Context, entries []entry) ([]Image, error) {
	cs := r.c.ContentStore()
	handler := images.SetChildrenLabels(cs, images.FilterPlatforms(images.ChildrenHandler(cs), platforms.Default()))
	out := make([]Image, 0, len(entries))
	for _, e := range entries {
		if err := images.Walk(ctx, handler, e.img.Target); err != nil {
			return nil, wrap("labelling the content of "+quote(e.img.Name), err)
		}
		if err := client.NewImage(r.c, e.img).Unpack(ctx, r.snapshotter); err != nil {
			return nil, wrap("unpacking "+quote(e.img.Name), err)
		}
	}
	is := r.c.ImageService()
	for _, e := range entries {
		if _, err := is.Create(ctx, e.img); errdefs.IsAlreadyExists(err) {
			_, err = is.Update(ctx, e.img, "target")
			if err != nil {
				return nil, wrap("updating image "+quote(e.img.Name), err)
			}
		} else if err != nil {
			return nil, wrap("creating image "+quote(e.img.Name), err)
		}
		out = append(out, Image{Name: e.img.Name, Digest: e.img.Target.Digest.String(),
			Manifest: e.manifest.Digest.String(), Config: e.config.Digest.String()})
	}
	return out, nil
}

// RemoveImage deletes an image name; content no other name uses is
// collected before it returns.
func (r *Runtime) RemoveImage(ctx context.Context, name string) error {
	err := r.c.ImageService().Delete(r.ctx(ctx), name, images.SynchronousDelete())
	return wrap("removing image "+quote(name), err)
}

// Images lists the namespace's images.
func (r *Runtime) Images(ctx context.Context) ([]Image, error) {
	ctx = r.ctx(ctx)
	imgs, err := r.c.ImageService().List(ctx)
	if err != nil {
		return nil, wrap("listing images", err)
	}
	out := make([]Image, 0, len(imgs))
	for _, img := range imgs {
		i := Image{Name: img.Name, Digest: img.Target.Digest.String()}
		if md, mf, err := platformManifest(ctx, r.c.ContentStore(), img.Target, 0); err == nil {
			i.Manifest, i.Config = md.Digest.String(), mf.Config.Digest.String()
		} else if !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		out = append(out, i)
	}
	return out, nil
}

// quote makes a foreign string safe in a message.
func quote(s string) string {
	if len(s) > 256 {
		s = s[:256] + "..."
	}
	return fmt.Sprintf("%q", s)
}

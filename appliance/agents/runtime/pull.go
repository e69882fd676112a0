package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/containerd/v2/core/transfer"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/omertaos/omertaos/appliance/safeio"
)

// Bounds on a pull.
const (
	// DefaultPullTimeout bounds a whole pull, unpacking included.
	DefaultPullTimeout = 10 * time.Minute
	maxPullRef         = 512
	maxLayers          = 128 // layers of one manifest
)

// PullOption changes Pull.
type PullOption func(*pullOpts)

type pullOpts struct {
	digest  string
	timeout time.Duration
	maxSize int64
	hosts   docker.RegistryHosts
}

// PullDigest pins the pull: the tag must resolve to digest d (the index,
// this platform's manifest or its config), otherwise nothing is kept and
// Pull returns ErrDigestMismatch.
func PullDigest(d string) PullOption { return func(o *pullOpts) { o.digest = d } }

// PullTimeout bounds the pull (default DefaultPullTimeout).
func PullTimeout(d time.Duration) PullOption { return func(o *pullOpts) { o.timeout = d } }

// PullMaxSize bounds the total size of what the image is made of, as its
// manifests declare it before any layer is fetched (default: the
// Runtime's archive cap).
func PullMaxSize(n int64) PullOption { return func(o *pullOpts) { o.maxSize = n } }

// PulledDigest is the digest opts pin a pull to ("" for none), for fakes
// of the Runtime that must honour the pin as Pull does.
func PulledDigest(opts ...PullOption) string {
	var o pullOpts
	for _, opt := range opts {
		opt(&o)
	}
	return o.digest
}

// defaultHosts: HTTPS with the system's roots, except a registry on a
// loopback address, which may speak plain HTTP (a test's, or a local
// mirror's).
func defaultHosts() docker.RegistryHosts {
	return docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchLocalhost))
}

// Pull fetches ref from its registry through containerd's resolver,
// unpacks it for the snapshotter and names it ref in the namespace. Sizes
// and the pinned digest are checked as each manifest arrives, before its
// layers are fetched; everything is written under a lease, so a refused
// or failed pull leaves nothing behind and an existing image of that name
// untouched.
func (r *Runtime) Pull(ctx context.Context, ref string, opts ...PullOption) (_ Image, err error) {
	o := pullOpts{timeout: DefaultPullTimeout, maxSize: r.maxArchive, hosts: defaultHosts()}
	for _, opt := range opts {
		opt(&o)
	}
	fetchRef, want, err := pullRef(ref, o.digest)
	if err != nil {
		return Image{}, err
	}
	if o.timeout <= 0 || o.maxSize <= 0 {
		return Image{}, invalid("pull", "the timeout and the size cap must be positive")
	}
	r.mu.Lock()
	r.imports++
	r.mu.Unlock()
	defer func() { r.mu.Lock(); r.imports--; r.mu.Unlock() }()
	ctx, cancel := context.WithTimeout(r.ctx(ctx), o.timeout)
	defer cancel()
	ctx, done, err := r.lease(ctx)
	if err != nil {
		return Image{}, err
	}
	defer func() { done(err != nil) }()

	g := &pullGuard{want: want, max: o.maxSize, seen: map[digest.Digest]bool{}}
	res := &namedResolver{inner: docker.NewResolver(docker.ResolverOptions{Hosts: o.hosts}), name: ref}
	img, err := r.c.Pull(ctx, fetchRef, client.WithResolver(res), client.WithPullUnpack,
		client.WithPullSnapshotter(r.snapshotter), client.WithPlatformMatcher(platforms.Default()),
		client.WithImageHandlerWrapper(g.wrap))
	if err != nil {
		return Image{}, pullError(ref, err)
	}
	out, err := r.pulled(ctx, img, want)
	if err != nil {
		// The guard checks all this before the name is created, so this
		// is a second line; the name now points at what was refused.
		cctx, cancel := cleanupCtx(ctx)
		defer cancel()
		r.c.ImageService().Delete(cctx, ref)
		return Image{}, err
	}
	return out, nil
}

// pullRef checks ref and the pinned digest and returns what to fetch and
// the digest the result must have. A ref must be written in full, as
// containerd will name the image, so that it matches a manifest's
// normalised spec.image.ref.
func pullRef(ref, want string) (fetch, pin string, err error) {
	if ref == "" || len(ref) > maxPullRef || strings.ContainsFunc(ref, func(c rune) bool { return c <= 0x20 || c == 0x7f }) {
		return "", "", invalid("ref", "%s is not 1 to %d printable characters without spaces", quote(ref), maxPullRef)
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", "", invalid("ref", "%s is not an image reference: %v", quote(ref), err)
	}
	if named.String() != ref {
		return "", "", invalid("ref", "%s is not written in full: %s", quote(ref), quote(named.String()))
	}
	if want != "" {
		d, err := digest.Parse(want)
		if err != nil || d.Algorithm() != digest.SHA256 {
			return "", "", invalid("digest", "%s is not sha256: followed by 64 hex digits", quote(want))
		}
	}
	_, tagged := named.(reference.Tagged)
	if c, ok := named.(reference.Canonical); ok {
		if want != "" && want != c.Digest().String() {
			return "", "", invalid("digest", "%s differs from the digest in the ref %s", want, quote(ref))
		}
		return ref, c.Digest().String(), nil
	}
	switch {
	case tagged:
		// The tag is resolved once, here; the guard compares the result.
		return ref, want, nil
	case want != "":
		return ref + "@" + want, want, nil
	}
	return "", "", invalid("ref", "%s names neither a tag nor a digest", quote(ref))
}

// pulled reads back what Pull stored and checks it against the pin.
func (r *Runtime) pulled(ctx context.Context, img client.Image, want string) (Image, error) {
	md, mf, err := platformManifest(ctx, r.c.ContentStore(), img.Target(), 0)
	if err != nil {
		return Image{}, fmt.Errorf("reading the pulled image %s: %w", quote(img.Name()), err)
	}
	e := entry{img: img.Metadata(), manifest: md, config: mf.Config}
	if want != "" && !e.has(want) {
		return Image{}, fmt.Errorf("%w: expected %s, pulled index/manifest %s, manifest %s, config %s",
			ErrDigestMismatch, want, img.Target().Digest, md.Digest, mf.Config.Digest)
	}
	ok, err := img.IsUnpacked(ctx, r.snapshotter)
	if err != nil {
		return Image{}, wrap("checking the pulled image "+quote(img.Name())+" is unpacked", err)
	}
	if !ok {
		return Image{}, fmt.Errorf("%w: the pulled image %s is not unpacked", ErrState, quote(img.Name()))
	}
	return Image{Name: img.Name(), Digest: img.Target().Digest.String(), Manifest: md.Digest.String(), Config: mf.Config.Digest.String()}, nil
}

// namedResolver names the image after the ref the caller asked for (a
// digest-only fetch would otherwise be named repo@digest) and shows the
// guard the descriptor the ref resolved to.
type namedResolver struct {
	inner remotes.Resolver
	name  string
}

func (n *namedResolver) Resolve(ctx context.Context, ref string) (string, ocispec.Descriptor, error) {
	_, desc, err := n.inner.Resolve(ctx, ref)
	return n.name, desc, err
}

func (n *namedResolver) Fetcher(ctx context.Context, _ string) (remotes.Fetcher, error) {
	return n.inner.Fetcher(ctx, n.name)
}

func (n *namedResolver) Pusher(context.Context, string) (remotes.Pusher, error) {
	return nil, fmt.Errorf("pushing: %w", errdefs.ErrNotImplemented)
}

func (n *namedResolver) SetOptions(opts ...transfer.ImageResolverOption) {
	if w, ok := n.inner.(remotes.ResolverWithOptions); ok {
		w.SetOptions(opts...)
	}
}

// pullGuard sees each descriptor before it is fetched and each manifest's
// children before they are: it refuses a metadata blob past maxMetaBlob, a
// total past max and a manifest the pin does not match, so that only
// small metadata is ever fetched for a refused image.
type pullGuard struct {
	want string
	max  int64

	mu      sync.Mutex
	root    digest.Digest
	matched bool
	total   int64
	seen    map[digest.Digest]bool
}

func (g *pullGuard) wrap(h images.Handler) images.Handler {
	return images.HandlerFunc(func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		if err := g.admit(desc); err != nil {
			return nil, err
		}
		children, err := h.Handle(ctx, desc)
		if err != nil {
			return children, err
		}
		return children, g.check(desc, children)
	})
}

// admit counts a blob once and refuses what is over the caps.
func (g *pullGuard) admit(d ocispec.Descriptor) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.root == "" {
		g.root = d.Digest // Dispatch starts at the resolved descriptor
		g.matched = g.want == "" || g.want == d.Digest.String()
	}
	meta := images.IsIndexType(d.MediaType) || images.IsManifestType(d.MediaType) || images.IsConfigType(d.MediaType)
	switch {
	case d.Size < 0:
		return invalid("size", "blob %s declares %d bytes", d.Digest, d.Size)
	case meta && d.Size > maxMetaBlob:
		return &safeio.LimitError{Name: "blob " + d.Digest.String() + " (" + quote(d.MediaType) + ")", Limit: maxMetaBlob}
	case g.seen[d.Digest]:
		return nil
	}
	g.seen[d.Digest] = true
	if g.total += d.Size; g.total > g.max {
		return &safeio.LimitError{Name: "the image's content", Limit: g.max}
	}
	return nil
}

// check runs on a fetched index or manifest, before its children are.
func (g *pullGuard) check(d ocispec.Descriptor, children []ocispec.Descriptor) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case images.IsIndexType(d.MediaType):
		if len(children) == 0 {
			return fmt.Errorf("%w: no manifest for %s in index %s", ErrNotFound, platforms.DefaultString(), d.Digest)
		}
	case images.IsManifestType(d.MediaType):
		if len(children) > maxLayers+1 {
			return invalid("layers", "manifest %s has %d layers, more than %d", d.Digest, len(children)-1, maxLayers)
		}
		total := g.total
		for _, c := range children {
			if !g.seen[c.Digest] && c.Size > 0 {
				total += c.Size
			}
			if images.IsConfigType(c.MediaType) {
				g.matched = g.matched || g.want == c.Digest.String()
			}
		}
		g.matched = g.matched || g.want == d.Digest.String()
		if total > g.max {
			return &safeio.LimitError{Name: fmt.Sprintf("image of %d bytes (manifest %s)", total, d.Digest), Limit: g.max}
		}
		if !g.matched {
			return fmt.Errorf("%w: expected %s, the registry's tag resolves to %s (manifest %s)", ErrDigestMismatch, g.want, g.root, d.Digest)
		}
	}
	return nil
}

// pullError keeps the refusals Pull makes itself and maps the resolver's
// and the registry's errors to the sentinels.
func pullError(ref string, err error) error {
	what := "pulling " + quote(ref)
	var lim *safeio.LimitError
	var status remoteerrors.ErrUnexpectedStatus
	var opErr *net.OpError
	var dnsErr *net.DNSError
	var urlErr *url.Error
	switch {
	case errors.Is(err, ErrDigestMismatch), errors.Is(err, ErrInvalid), errors.As(err, &lim):
		return fmt.Errorf("%s: %w", what, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w: %w", what, ErrTimeout, err)
	case errors.As(err, &opErr), errors.As(err, &dnsErr):
		return fmt.Errorf("%s: %w", what, &registryError{why: "is unreachable", err: err})
	case errors.As(err, &status) && status.StatusCode >= 500:
		return fmt.Errorf("%s: %w", what, &registryError{why: "is failing", err: err})
	case errors.As(err, &status) && (status.StatusCode == 401 || status.StatusCode == 403):
		return fmt.Errorf("%s: %w", what, &registryError{why: "refuses access (registry credentials are not supported)", err: err})
	case errdefs.IsNotFound(err):
		return fmt.Errorf("%s: %w: the registry has no such image: %w", what, ErrNotFound, err)
	case errors.As(err, &urlErr):
		return fmt.Errorf("%s: %w", what, &registryError{why: "could not be reached", err: err})
	}
	return wrap(what, err)
}

// registryError is a registry that cannot be used now: ErrUnavailable to
// errors.Is, without ErrUnavailable's words, which name containerd.
type registryError struct {
	why string
	err error
}

func (e *registryError) Error() string   { return "the registry " + e.why + ": " + e.err.Error() }
func (e *registryError) Unwrap() []error { return []error{ErrUnavailable, e.err} }

package api

import (
	"context"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/store"
	"github.com/omertaos/omertaos/appliance/terminal"
)

// ImageService is what the image routes use; *runtime.Runtime is one.
type ImageService interface {
	Images(ctx context.Context) ([]runtime.Image, error)
	ImportArchive(ctx context.Context, path string, opts ...runtime.ImportOption) ([]runtime.Image, error)
	Pull(ctx context.Context, ref string, opts ...runtime.PullOption) (runtime.Image, error)
}

// ArchiveVerifier decides, before an import, whether the signed
// registries vouch for an image archive (cmd/omerta's is the registry
// package's Verifier). A refusal is an error: a *policy.DeniedError (the
// API answers 403 with the reason), or another error the API maps by its
// sentinel (a file that does not exist: 400). The ArchiveCheck may be
// filled in on a refusal too, for the audit log.
type ArchiveVerifier interface {
	CheckArchive(ctx context.Context, path string) (ArchiveCheck, error)
}

// ArchiveCheck is what an ArchiveVerifier found about an archive it
// allowed.
type ArchiveCheck struct {
	// Digest is the OCI digest the vouching registry pins for the archive
	// ("" when none vouches): the import must have exactly it.
	Digest string
	// Signer is the key ID of the trusted key that signed the vouching
	// registry; "" when none does (allowed unsigned by the profile).
	Signer string
	// Registry is the vouching registry's directory ("" when none).
	Registry string
	// Warnings are to be shown to the caller and audited.
	Warnings []string
}

// maxImageImports bounds the imports under way at once: each holds a
// connection and reads gigabytes.
const maxImageImports = 2

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// imageRoutes serves GET /images, POST /images/import (root only: see
// authz.go) and POST /images/pull.
func (s *Server) imageRoutes(r fiber.Router) {
	r.Get("/images", s.listImages)
	r.Post("/images/import", s.importImage)
	r.Post("/images/pull", s.pullImage)
}

func (s *Server) listImages(c *fiber.Ctx) error {
	imgs, err := s.deps.Agents.Images.Images(c.UserContext())
	if err != nil {
		return s.fail(c, err)
	}
	return c.JSON(apitype.ImageList{Images: imageViews(imgs)})
}

func (s *Server) importImage(c *fiber.Ctx) error {
	var req apitype.ImageImport
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if !filepath.IsAbs(req.Path) || filepath.Clean(req.Path) != req.Path || len(req.Path) > 4096 {
		return fiber.NewError(fiber.StatusBadRequest, "path: "+quoteValue(req.Path)+" must be a clean absolute path of a file on omertad's machine")
	}
	var opts []runtime.ImportOption
	if req.Digest != "" {
		if !digestRE.MatchString(req.Digest) {
			return fiber.NewError(fiber.StatusBadRequest, "digest: "+quoteValue(req.Digest)+" is not sha256: and 64 lowercase hex digits")
		}
		opts = append(opts, runtime.ExpectDigest(req.Digest))
	}
	if req.Name != "" {
		opts = append(opts, runtime.WithName(req.Name))
	}
	select {
	case s.agents.imports <- struct{}{}:
		defer func() { <-s.agents.imports }()
	default:
		return fiber.NewError(fiber.StatusServiceUnavailable, "too many image imports under way; try again when one is done")
	}
	// Verified first (inside the bound: it reads the whole archive), so
	// that nothing a registry refuses reaches containerd.
	var check *ArchiveCheck
	if v := s.deps.Agents.Archives; v != nil {
		ac, err := v.CheckArchive(c.UserContext(), req.Path)
		check = &ac
		if err == nil && ac.Digest != "" && req.Digest != "" && ac.Digest != req.Digest {
			err = fiber.NewError(fiber.StatusConflict, "digest: the request asks for "+quoteValue(req.Digest)+
				", but registry "+quoteValue(ac.Registry)+" pins "+quoteValue(ac.Digest)+" for this archive")
		}
		if err != nil {
			if aerr := s.auditImport(c, req, nil, check, err); aerr != nil {
				return aerr
			}
			return s.fail(c, err)
		}
		if ac.Digest != "" {
			opts = append(opts, runtime.ExpectDigest(ac.Digest))
		}
	}
	imgs, err := s.deps.Agents.Images.ImportArchive(c.UserContext(), req.Path, opts...)
	if aerr := s.auditImport(c, req, imgs, check, err); aerr != nil {
		return aerr
	}
	if err != nil {
		return s.fail(c, err)
	}
	out := apitype.ImageImported{Images: imageViews(imgs)}
	if check != nil {
		out.Signer, out.Warnings = terminal.Escape(check.Signer), terminal.EscapeAll(check.Warnings)
	}
	return c.Status(fiber.StatusCreated).JSON(out)
}

// auditImport records an import and its outcome, refusals included: a
// digest that does not match, or an archive no trusted registry vouches
// for, is the audit log's business. check is the verification's finding
// (nil when imports are not verified): the signer ("" when unsigned),
// the registry, the digest it pins and the warnings.
func (s *Server) auditImport(c *fiber.Ctx, req apitype.ImageImport, imgs []runtime.Image, check *ArchiveCheck, err error) error {
	detail := map[string]any{"path": req.Path, "expected_digest": req.Digest, "images": imageViews(imgs)}
	if check != nil {
		detail["signer"], detail["registry"] = terminal.Escape(check.Signer), terminal.Escape(check.Registry)
		detail["pinned_digest"], detail["warnings"] = terminal.Escape(check.Digest), append([]string{}, terminal.EscapeAll(check.Warnings)...)
	}
	action := "image.import"
	if err != nil {
		if codeOf(err) == fiber.StatusServiceUnavailable {
			return nil // nothing was tried
		}
		action, detail["error"] = "image.import.refused", terminal.Escape(err.Error())
	}
	return s.deps.Store.Audit(c.UserContext(), store.AuditEntry{Actor: actor(c), Action: action, Target: req.Path, Detail: detail})
}

// maxPullRef bounds a pull's reference (as the manifest's spec.image.ref).
const maxPullRef = 512

// pullImage pulls an image from its registry, pinned to a digest when one
// is given; it shares the imports' bound on work under way.
func (s *Server) pullImage(c *fiber.Ctx) error {
	var req apitype.ImagePull
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if req.Ref == "" || len(req.Ref) > maxPullRef {
		return fiber.NewError(fiber.StatusBadRequest, "ref: "+quoteValue(req.Ref)+" must be an image reference of 1 to 512 characters")
	}
	var opts []runtime.PullOption
	if req.Digest != "" {
		if !digestRE.MatchString(req.Digest) {
			return fiber.NewError(fiber.StatusBadRequest, "digest: "+quoteValue(req.Digest)+" is not sha256: and 64 lowercase hex digits")
		}
		opts = append(opts, runtime.PullDigest(req.Digest))
	}
	select {
	case s.agents.imports <- struct{}{}:
		defer func() { <-s.agents.imports }()
	default:
		return fiber.NewError(fiber.StatusServiceUnavailable, "too many image imports and pulls under way; try again when one is done")
	}
	img, err := s.deps.Agents.Images.Pull(c.UserContext(), req.Ref, opts...)
	if aerr := s.auditPull(c, req, img, err); aerr != nil {
		return aerr
	}
	if err != nil {
		return s.fail(c, err)
	}
	return c.Status(fiber.StatusCreated).JSON(apitype.ImagePulled{Image: imageViews([]runtime.Image{img})[0]})
}

// auditPull records a pull and its outcome; a refused pin is recorded.
func (s *Server) auditPull(c *fiber.Ctx, req apitype.ImagePull, img runtime.Image, err error) error {
	detail := map[string]any{"ref": req.Ref, "expected_digest": req.Digest}
	action := "image.pull"
	if err != nil {
		action, detail["error"] = "image.pull.refused", terminal.Escape(err.Error())
	} else {
		detail["image"] = imageViews([]runtime.Image{img})[0]
	}
	return s.deps.Store.Audit(c.UserContext(), store.AuditEntry{Actor: actor(c), Action: action, Target: req.Ref, Detail: detail})
}

func imageViews(imgs []runtime.Image) []apitype.Image {
	out := make([]apitype.Image, 0, len(imgs))
	for _, i := range imgs {
		out = append(out, apitype.Image{Name: i.Name, Digest: i.Digest, Manifest: i.Manifest, Config: i.Config})
	}
	return out
}

// quoteValue shows a value from a request in a message: quoted, escaped,
// cut short.
func quoteValue(s string) string {
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return strconv.Quote(s)
}

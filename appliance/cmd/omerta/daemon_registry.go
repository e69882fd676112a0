package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"

	"github.com/omertaos/omertaos/appliance/agents"
	"github.com/omertaos/omertaos/appliance/api"
	"github.com/omertaos/omertaos/appliance/daemon"
	"github.com/omertaos/omertaos/appliance/policy"
	"github.com/omertaos/omertaos/appliance/registry"
	"github.com/omertaos/omertaos/appliance/terminal"
)

// registryRule names, in a refusal, the registry verification that
// refused (admission's rules name the policy or the quota).
const registryRule = "registry"

// newRegistryVerifier is the one Verifier omertad asks about agent
// images: the registries of agents.registries, searched in order, their
// locks checked against the minisign keys of agents.trust_dir, for the
// configured profile. It tells the agents service, at each deploy and
// patch, which trusted key signed an agent's image (imageVerifier), and
// the image imports, through the API and of the bundled archives, whether
// an archive may be imported and with which digest (archiveVerifier).
// Each check reads the registries again; the keys are read once, here, so
// a key added to the trust directory is trusted from omertad's next start.
//
// Nothing here stops omertad from starting: a trust directory that does
// not exist, cannot be read or holds bad key files trusts what it can
// (possibly nothing) and says so in the log. Every image is then
// unsigned, which the enterprise profile refuses, at admission and at
// import, with the reason.
func newRegistryVerifier(d daemon.Deps) *registry.Verifier {
	a := d.Config.Agents
	log := d.Logger.With("service", "registry")
	trust := loadTrust(log, a.TrustDir)
	for _, dir := range a.Registries {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			log.Warn("registry "+strconv.Quote(dir)+" is not a directory here; it vouches for no image", "err", statProblem(err, fi))
		}
	}
	// The paths are printable: the configuration refuses any other.
	log.Info("agent images are verified against the signed registries at deploy and import", "registries", a.Registries,
		"trust_dir", a.TrustDir, "keys", trust.IDs(), "profile", string(d.Config.Profile))
	if trust.Len() == 0 && !registry.AllowsUnsigned(d.Config.Profile) {
		log.Warn("no registry key is trusted, so the " + string(d.Config.Profile) + " profile refuses every agent image and image import " +
			"(put the registries' minisign public keys in " + strconv.Quote(a.TrustDir) + " and restart omertad)")
	}
	return registry.NewVerifier(registry.VerifierConfig{Profile: d.Config.Profile, Trust: trust, Registries: slices.Clone(a.Registries)})
}

// loadTrust reads the trust directory. Its problems (it does not exist,
// a file is not a key) are warnings, one line each; a directory that
// cannot be read at all is an empty keyring, with a warning.
func loadTrust(log *slog.Logger, dir string) *registry.Keyring {
	trust, err := registry.LoadTrust(dir)
	if err != nil {
		log.Warn("trust directory "+strconv.Quote(dir)+" cannot be read; no registry key is trusted", "err", terminal.Escape(err.Error()))
		return registry.NewKeyring()
	}
	for _, p := range trust.Problems {
		log.Warn("registry trust", "problem", terminal.Escape(p.String()))
	}
	return trust
}

func statProblem(err error, fi os.FileInfo) string {
	if err != nil {
		return terminal.Escape(err.Error())
	}
	return "it is a " + fi.Mode().Type().String()
}

// imageVerifier is the registry's Verifier as the agents service asks
// it. A registry that lists the image but fails its checks (a lock
// changed after it was signed, a bad signature) refuses the deploy the
// way admission does: the error is a *policy.DeniedError (rule
// "registry", the registry's reason), so that the API answers 403 with
// the reason, and still wraps registry.ErrDenied.
type imageVerifier struct{ v *registry.Verifier }

var _ agents.ImageVerifier = imageVerifier{}

func (iv imageVerifier) ImageSigner(ctx context.Context, ref, digest string) (string, error) {
	signer, err := iv.v.ImageSigner(ctx, ref, digest)
	var rd *registry.DeniedError
	if errors.As(err, &rd) {
		return "", registryRefusal(rd.Decision.Reason, err)
	}
	return signer, err
}

// registryRefusal is a registry's refusal (cause, for reason) as a policy
// refusal by rule "registry".
func registryRefusal(reason string, cause error) error {
	return &registryDeniedError{cause: cause, denied: &policy.DeniedError{Decision: policy.Decision{
		Rule: registryRule, Reason: reason, Denials: []policy.Denial{{Rule: registryRule, Reason: reason}},
	}}}
}

// archiveVerifier is the registry's Verifier as the image imports ask
// it (the API's ArchiveVerifier): CheckImage hashes the archive and looks
// for a signed registry that lists that hash. Allowed, the check names
// the digest the registry pins, the signer and the warnings (an unsigned
// archive on user or pro). Refused, the error is a registryDeniedError
// (403 with the reason), except for an archive that does not exist,
// which is the caller's mistake (errors.Is os.ErrNotExist: 400), and a
// verification cut short by ctx, which is ctx's error.
type archiveVerifier struct{ v *registry.Verifier }

var _ api.ArchiveVerifier = archiveVerifier{}

func (av archiveVerifier) CheckArchive(ctx context.Context, path string) (api.ArchiveCheck, error) {
	d := av.v.CheckImage(ctx, path)
	check := api.ArchiveCheck{Digest: d.ImageDigest, Signer: d.KeyID, Registry: d.Registry, Warnings: d.Warnings}
	if d.Allowed {
		return check, nil
	}
	if err := ctx.Err(); err != nil {
		return check, fmt.Errorf("verifying %s: %w", strconv.Quote(path), err)
	}
	cause := d.Err()
	if d.Code == registry.CodeMissingFile {
		return check, fmt.Errorf("%w (%w)", cause, os.ErrNotExist)
	}
	return check, registryRefusal(d.Reason, cause)
}

// registryDeniedError is a registry's refusal of an image, as a policy
// refusal (errors.As *policy.DeniedError, errors.Is policy.ErrDenied) that
// also wraps the registry's (errors.Is registry.ErrDenied).
type registryDeniedError struct {
	cause  error
	denied *policy.DeniedError
}

func (e *registryDeniedError) Error() string   { return e.denied.Error() }
func (e *registryDeniedError) Unwrap() []error { return []error{e.denied, e.cause} }

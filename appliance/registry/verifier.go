package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/safeio"
)

// VerifierConfig is what omertad gives the Verifier.
type VerifierConfig struct {
	// Profile decides what happens to unsigned subjects (see Decide).
	Profile config.Profile
	// Trust is the keyring (LoadTrust(DefaultTrustDir)).
	Trust *Keyring
	// Registries are the registry directories searched, in order: the
	// one the image ships and those an operator imported.
	Registries []string
	Limits     Limits
}

// Verifier answers, at deploy, import and enable time, whether a registry
// signed with a trusted key vouches for an agent, an image or a model. It
// holds no state between calls: each check reads the locks again, so a
// registry replaced on disk is seen at once, and hashes only the files
// the subject needs.
type Verifier struct {
	cfg VerifierConfig
}

// NewVerifier returns a Verifier for cfg.
func NewVerifier(cfg VerifierConfig) *Verifier {
	cfg.Limits = cfg.Limits.withDefaults()
	return &Verifier{cfg: cfg}
}

// Profile is the profile the Verifier decides for.
func (v *Verifier) Profile() config.Profile { return v.cfg.Profile }

// opened is one registry, its lock read and its signature checked.
type opened struct {
	dir  string
	d    *dirFS
	lock *Lock
	sig  SigCheck
}

func (o *opened) signed() bool { return o.sig.Code == CodeOK }

// sigFinding is the lock signature's finding, naming the registry.
func (o *opened) sigFinding() Finding {
	return Finding{Subject: SignatureFile, Code: o.sig.Code, Severity: severityOf(o.sig.Code), Detail: "registry " + quote(o.dir) + ": " + o.sig.Detail}
}

// each opens every configured registry in turn; one that cannot be read
// is a warning on the decision, not a refusal (another may vouch).
func (v *Verifier) each(ctx context.Context, warn func(string), f func(*opened) error) error {
	for _, dir := range v.cfg.Registries {
		if err := ctx.Err(); err != nil {
			return err
		}
		d, err := openDir(dir)
		if err != nil {
			warn("registry " + quote(dir) + " cannot be read: " + errText(err))
			continue
		}
		o := &opened{dir: dir, d: d}
		data, err := d.readFile(LockFile, v.cfg.Limits.LockBytes)
		if err == nil {
			o.lock, _ = ParseLock(data, v.cfg.Limits)
			o.sig = checkLockSignature(d, data, v.cfg.Trust, v.cfg.Limits)
		}
		if o.lock == nil {
			d.Close()
			warn("registry " + quote(dir) + " has no readable " + LockFile)
			continue
		}
		err = f(o)
		d.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// check is the state of one Check* call.
type check struct {
	fs       []Finding
	warnings []string
	vouch    *opened // the signed registry that vouches, cleanly
	any      bool    // some registry lists the subject
	digest   string  // the image digest the vouching registry pins
}

func (c *check) warn(s string) { c.warnings = append(c.warnings, s) }

// listed records that registry o lists the subject, with findings fs
// about it there.
func (c *check) listed(o *opened, fs []Finding, digest string) {
	c.any = true
	c.fs = append(c.fs, fs...)
	failed := false
	for _, f := range fs {
		failed = failed || f.Failed()
	}
	if o.signed() && !failed {
		if c.vouch == nil {
			c.vouch, c.digest = o, digest
		}
		return
	}
	if !o.signed() {
		c.fs = append(c.fs, o.sigFinding())
	}
}

func (v *Verifier) decide(subject string, c *check, ctxErr error) Decision {
	if ctxErr != nil {
		f := Finding{Subject: subject, Code: CodeRefusedFile, Severity: SeverityFailure, Detail: "verification stopped: " + ctxErr.Error()}
		return Decide(v.cfg.Profile, subject, append(c.fs, f), false)
	}
	d := Decide(v.cfg.Profile, subject, c.fs, c.vouch != nil)
	d.Warnings = append(c.warnings, d.Warnings...)
	if c.vouch != nil {
		d.Registry, d.KeyID, d.ImageDigest = c.vouch.dir, c.vouch.sig.KeyID, c.digest
	}
	return d
}

// CheckAgent decides whether agent m may be deployed: a registry signed
// with a trusted key must list the agent (kind agent, name = its id) with
// a file that matches the lock and an image digest equal to m's, or list
// m's image digest as an image entry. A registry that lists the agent
// with another image digest is a failure.
func (v *Verifier) CheckAgent(ctx context.Context, m *manifest.Manifest) Decision {
	if m == nil {
		return Decide(v.cfg.Profile, "agent", []Finding{{Code: CodeInvalidManifest, Severity: SeverityFailure, Detail: "no manifest"}}, false)
	}
	subject := "agent " + strconv.Quote(m.Metadata.ID)
	want := ""
	if m.Spec.Image != nil {
		want = m.Spec.Image.Digest
	}
	c := &check{}
	err := v.each(ctx, c.warn, func(o *opened) error {
		// The registry's own entry for this agent decides, when it has
		// one: an image entry with the same digest does not excuse a
		// tampered agent manifest beside it.
		var image *LockEntry
		for i, e := range o.lock.Entries {
			switch {
			case e.valid && e.Kind == KindAgent && e.Name == m.Metadata.ID:
				fs, pinned, err := v.agentEntry(ctx, o, e, want)
				if err != nil {
					return err
				}
				c.listed(o, fs, pinned)
				return nil
			case e.valid && e.Kind == KindImage && want != "" && e.Digest == want && image == nil:
				image = &o.lock.Entries[i]
			}
		}
		if image != nil {
			c.listed(o, nil, image.Digest)
		}
		return nil
	})
	if !c.any {
		c.fs = append(c.fs, Finding{Subject: subject, Code: CodeUnsigned, Severity: SeverityFailure,
			Detail: "no registry lists it or its image " + orNone(want)})
	}
	return v.decide(subject, c, err)
}

// agentEntry checks the registry's manifest of the agent and compares the
// image digest it pins with the one asked for.
func (v *Verifier) agentEntry(ctx context.Context, o *opened, e LockEntry, want string) ([]Finding, string, error) {
	fs, rm, err := checkEntryManifest(ctx, o.d, e, nil, v.cfg.Trust, v.cfg.Limits)
	if err != nil {
		return nil, "", err
	}
	pinned := ""
	if rm != nil && rm.Agent != nil && rm.Agent.Spec.Image != nil {
		pinned = rm.Agent.Spec.Image.Digest
	}
	if pinned != "" && want != "" && pinned != want {
		fs = append(fs, Finding{Subject: e.Path, Kind: KindAgent, Name: e.Name, Field: "spec.image.digest", Code: CodeDigestMismatch, Severity: SeverityFailure,
			Detail: fmt.Sprintf("registry %s pins image %s; the agent asks for %s", quote(o.dir), pinned, want), Want: pinned, Got: want})
	}
	return fs, pinned, nil
}

func orNone(s string) string {
	if s == "" {
		return "(no digest given)"
	}
	return s
}

// CheckImage decides whether the image archive at path (a file on this
// machine, outside any registry perhaps) may be imported: its SHA-256 must
// be an image entry of a registry signed with a trusted key. The decision's
// ImageDigest is the OCI digest that entry pins, for the import to require.
func (v *Verifier) CheckImage(ctx context.Context, path string) Decision {
	subject := "image archive " + strconv.Quote(path)
	c := &check{}
	sum, err := hashPath(ctx, path, v.cfg.Limits.BlobBytes)
	if err != nil {
		if ctx.Err() != nil {
			return v.decide(subject, c, ctx.Err())
		}
		code := CodeRefusedFile
		if errors.Is(err, os.ErrNotExist) {
			code = CodeMissingFile
		}
		c.fs = append(c.fs, Finding{Subject: path, Kind: KindImage, Code: code, Severity: SeverityFailure, Detail: errText(err)})
		return v.decide(subject, c, nil)
	}
	err = v.each(ctx, c.warn, func(o *opened) error {
		for _, e := range o.lock.Entries {
			if e.valid && e.Kind == KindImage && e.SHA256 == sum {
				f := Finding{Subject: e.Path, Kind: KindImage, Name: e.Name, Code: CodeOK, Severity: SeverityOK,
					Detail: "the archive's sha256 " + sum + " is entry " + quote(e.Name) + " of registry " + quote(o.dir), Want: e.SHA256, Got: sum}
				c.listed(o, []Finding{f}, e.Digest)
			}
		}
		return nil
	})
	if !c.any {
		c.fs = append(c.fs, Finding{Subject: path, Kind: KindImage, Code: CodeUnsigned, Severity: SeverityFailure,
			Detail: "no registry lists an image archive with sha256 " + sum})
	}
	return v.decide(subject, c, err)
}

// CheckModel decides whether the model name may be enabled: a registry
// must list it, its manifest must match the lock and be valid, with no
// placeholder integrity, and, for a model run here, resources.vram_gb must
// fit in one of gpus (see CheckVRAM). Unsigned is decided by the profile;
// a model no registry lists is refused (errors.Is(d.Err(), ErrNotFound)).
func (v *Verifier) CheckModel(ctx context.Context, name string, gpus []GPU) Decision {
	subject := "model " + strconv.Quote(name)
	c := &check{}
	var model *Manifest
	err := v.each(ctx, c.warn, func(o *opened) error {
		for _, e := range o.lock.Entries {
			if !e.valid || e.Kind != KindModel || e.Name != name {
				continue
			}
			fs, m, err := checkEntryManifest(ctx, o.d, e, nil, v.cfg.Trust, v.cfg.Limits)
			if err != nil {
				return err
			}
			if m != nil && m.Model != nil {
				fs = append(fs, vramFinding(e.Path, m, gpus)...)
				if model == nil {
					model = m
				}
			}
			c.listed(o, fs, "")
		}
		return nil
	})
	if !c.any {
		c.fs = append(c.fs, Finding{Subject: subject, Kind: KindModel, Name: name, Code: CodeNotFound, Severity: SeverityFailure,
			Detail: "no configured registry lists it"})
	}
	d := v.decide(subject, c, err)
	d.Model = model
	return d
}

// CheckModelManifest validates a model manifest given directly (uploaded,
// not from a registry) and checks its VRAM: it is unsigned by definition,
// so only user and pro accept it, with a warning.
func (v *Verifier) CheckModelManifest(data []byte, gpus []GPU) Decision {
	m, fs := ParseModel("model manifest", data)
	subject := "model manifest"
	if m != nil && m.Name != "" {
		subject = "model " + strconv.Quote(m.Name)
	}
	if m != nil && m.Model != nil {
		fs = append(fs, vramFinding("model manifest", m, gpus)...)
	}
	fs = append(fs, Finding{Subject: "model manifest", Code: CodeUnsigned, Severity: SeverityFailure, Detail: "given directly, not from a signed registry"})
	d := Decide(v.cfg.Profile, subject, fs, false)
	d.Model = m
	return d
}

func vramFinding(subject string, m *Manifest, gpus []GPU) []Finding {
	f := Finding{Subject: subject, Kind: KindModel, Name: m.Name, Field: "resources.vram_gb"}
	switch {
	case m.Model.Remote():
		return nil // runs at the provider: this machine's GPUs do not matter
	case !m.Model.Resources.HasVRAM:
		f.Code, f.Severity, f.Detail = CodeNotChecked, SeverityWarning, "the manifest does not say how much GPU memory the model needs"
		return []Finding{f}
	}
	fit, err := CheckVRAM(m.Model.Resources.VRAMGB, gpus)
	f.Detail = fit.Reason
	if err != nil {
		f.Code, f.Severity = CodeInsufficientVRAM, SeverityFailure
	} else {
		f.Code, f.Severity = CodeOK, SeverityOK
	}
	return []Finding{f}
}

// hashPath hashes a file on this machine that omertad was asked to import;
// it must be a regular file (a FIFO would block, /dev/zero never end).
func hashPath(ctx context.Context, path string, limit int64) (string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", &safeio.NotRegularError{Name: path, Kind: safeio.Kind(fi.Mode())}
	}
	h := sha256.New()
	if _, err := copyBounded(ctx, h, f, path, limit); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ImageSigner says which trusted key vouches for the image with OCI
// digest digest: the key ID (as minisign prints it) of a registry whose
// lock verifies and that lists the digest, as an image entry or as the
// image an agent manifest pins; "" when none does (unsigned, which the
// policy decides). A registry that lists the digest but fails its checks
// (a tampered file or signature) is an error wrapping ErrDenied: the
// deploy stops. ref is only named in messages. This is the agents
// service's ImageVerifier.
func (v *Verifier) ImageSigner(ctx context.Context, ref, digest string) (string, error) {
	if digest == "" {
		return "", nil
	}
	subject := "image " + strconv.Quote(ref) + " (" + digest + ")"
	c := &check{}
	err := v.each(ctx, c.warn, func(o *opened) error {
		for _, e := range o.lock.Entries {
			switch {
			case !e.valid:
			case e.Kind == KindImage && e.Digest == digest:
				c.listed(o, nil, e.Digest)
			case e.Kind == KindAgent:
				fs, rm, err := checkEntryManifest(ctx, o.d, e, nil, v.cfg.Trust, v.cfg.Limits)
				if err != nil {
					return err
				}
				if rm != nil && rm.Agent != nil && rm.Agent.Spec.Image != nil && rm.Agent.Spec.Image.Digest == digest {
					c.listed(o, fs, digest)
				}
			}
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("verifying %s: %w", subject, err)
	}
	if c.vouch != nil {
		return c.vouch.sig.KeyID, nil
	}
	for _, f := range c.fs {
		if f.Failed() && !unsignedClass(f.Code) {
			d := Decide(config.ProfileEnterprise, subject, c.fs, false)
			return "", &DeniedError{Decision: d}
		}
	}
	return "", nil
}

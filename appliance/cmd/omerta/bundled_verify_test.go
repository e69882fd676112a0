package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/ctrtest"
	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/api"
	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/daemon"
	"github.com/omertaos/omertaos/appliance/policy"
	"github.com/omertaos/omertaos/appliance/registry"
	"github.com/omertaos/omertaos/appliance/store"
)

// countingVerifier counts the archives it is asked about.
type countingVerifier struct {
	api.ArchiveVerifier
	mu    sync.Mutex
	paths []string
}

func (c *countingVerifier) CheckArchive(ctx context.Context, path string) (api.ArchiveCheck, error) {
	c.mu.Lock()
	c.paths = append(c.paths, filepath.Base(path))
	c.mu.Unlock()
	return c.ArchiveVerifier.CheckArchive(ctx, path)
}

// bundledDetail is what an image import's audit record says of its
// verification.
type bundledDetail struct {
	Signer       *string  `json:"signer"`
	Registry     string   `json:"registry"`
	PinnedDigest string   `json:"pinned_digest"`
	Warnings     []string `json:"warnings"`
	Error        string   `json:"error"`
}

func detailOf(t *testing.T, recs []store.AuditRecord, action, archive string) bundledDetail {
	t.Helper()
	for _, r := range recs {
		if r.Action == action && filepath.Base(r.Target) == archive {
			var d bundledDetail
			if err := json.Unmarshal(r.Detail, &d); err != nil {
				t.Fatalf("%s %s: %v", action, archive, err)
			}
			return d
		}
	}
	t.Fatalf("no %s record of %s in %s", action, archive, actions(recs))
	return bundledDetail{}
}

// runVerifiedBundled runs the bundled import of dir with the registry
// Verifier omertad builds for profile p, trusting the test key, over the
// registries regs; it returns the audit log, the verifier's calls and
// omertad's log.
func runVerifiedBundled(t *testing.T, p config.Profile, dir string, rt archiveImporter, regs ...string) ([]store.AuditRecord, *countingVerifier, string) {
	t.Helper()
	d, _ := verifierDeps(t, p, registryTrust(t), regs...)
	v := &countingVerifier{ArchiveVerifier: archiveVerifier{newRegistryVerifier(d)}}
	var log bytes.Buffer
	recs := runBundledWith(t, dir, rt, v, testStore(t), &log)
	return recs, v, log.String()
}

// TestBundledImportVerified: the bundled import asks the signed
// registries (the real Verifier, on a temporary registry signed with the
// test key) before each import. On enterprise an archive the registry
// lists is imported, once containerd answers, with its signer audited;
// one no registry lists is refused, audited with the reason and logged;
// an index whose digest is not the one the registry pins is refused
// naming both; a registry whose lock was changed after signing refuses,
// on user as on enterprise. On user an unsigned archive is imported with
// the warning logged and audited. An archive containerd already holds is
// not read again.
func TestBundledImportVerified(t *testing.T) {
	signedDigest, otherDigest := digestOf('a'), digestOf('b')
	index := map[string]bundledEntry{
		"signed":   {Ref: "omertaos.local/agents/signed:1", Digest: signedDigest, Archive: "signed.oci.tar"},
		"unsigned": {Ref: "omertaos.local/agents/unsigned:1", Digest: otherDigest, Archive: "unsigned.oci.tar"},
	}
	dir := writeBundle(t, index, "signed.oci.tar", "unsigned.oci.tar")
	// The registry lists the bytes writeBundle wrote for signed.oci.tar.
	reg := signedRegistry(t, []byte("archive signed.oci.tar"), signedDigest)

	t.Run("enterprise", func(t *testing.T) {
		rt := &fakeImporter{down: 2}
		recs, v, log := runVerifiedBundled(t, config.ProfileEnterprise, dir, rt, reg)
		if want := "signed.oci.tar " + signedDigest + " omertaos.local/agents/signed:1"; strings.Join(rt.imported, "|") != want {
			t.Errorf("imported %q; want only %q", rt.imported, want)
		}
		if got := actions(recs); got != "image.import signed.oci.tar, image.import.refused unsigned.oci.tar" {
			t.Errorf("audit = %s", got)
		}
		if d := detailOf(t, recs, "image.import", "signed.oci.tar"); d.Signer == nil || *d.Signer != registryTestKeyID ||
			d.Registry != reg || d.PinnedDigest != signedDigest || len(d.Warnings) != 0 {
			t.Errorf("the signed import's audit: %+v; want signed by %s in %s", d, registryTestKeyID, reg)
		}
		d := detailOf(t, recs, "image.import.refused", "unsigned.oci.tar")
		if !strings.Contains(d.Error, "not signed by a trusted key") || !strings.Contains(d.Error, "enterprise") {
			t.Errorf("the refusal's audit: %+v; want the reason", d)
		}
		if !strings.Contains(log, "bundled agent image refused") || !strings.Contains(log, "unsigned.oci.tar") {
			t.Errorf("the refusal is not logged:\n%s", log)
		}
		// Verified once each, though containerd was down twice.
		if slices.Sort(v.paths); strings.Join(v.paths, " ") != "signed.oci.tar unsigned.oci.tar" {
			t.Errorf("verified %q", v.paths)
		}
		// A second start: the signed image is there and is not read again.
		rt.imported = nil
		recs, v, _ = runVerifiedBundled(t, config.ProfileEnterprise, dir, rt, reg)
		if len(rt.imported) != 0 || strings.Join(v.paths, " ") != "unsigned.oci.tar" || actions(recs) != "image.import.refused unsigned.oci.tar" {
			t.Errorf("second start: imported %q, verified %q, audit %s", rt.imported, v.paths, actions(recs))
		}
	})
	t.Run("pinned digest differs", func(t *testing.T) {
		lying := writeBundle(t, map[string]bundledEntry{"signed": {Ref: "r/signed:1", Digest: otherDigest, Archive: "signed.oci.tar"}}, "signed.oci.tar")
		rt := &fakeImporter{}
		recs, _, _ := runVerifiedBundled(t, config.ProfileUser, lying, rt, reg)
		d := detailOf(t, recs, "image.import.refused", "signed.oci.tar")
		if len(rt.imported) != 0 || !strings.Contains(d.Error, signedDigest) || !strings.Contains(d.Error, otherDigest) {
			t.Errorf("imported %q, refusal %+v; want refused naming %s and %s", rt.imported, d, signedDigest, otherDigest)
		}
	})
	t.Run("tampered registry", func(t *testing.T) {
		for _, p := range []config.Profile{config.ProfileUser, config.ProfileEnterprise} {
			tampered := signedRegistry(t, []byte("archive signed.oci.tar"), signedDigest)
			tamperLockDigest(t, tampered)
			rt := &fakeImporter{}
			recs, _, _ := runVerifiedBundled(t, p, dir, rt, tampered)
			d := detailOf(t, recs, "image.import.refused", "signed.oci.tar")
			if slices.ContainsFunc(rt.imported, func(s string) bool { return strings.HasPrefix(s, "signed.oci.tar") }) ||
				!strings.Contains(d.Error, "bad-signature") || !strings.Contains(d.Error, tampered) {
				t.Errorf("%s: imported %q, refusal %+v; want refused as a bad signature", p, rt.imported, d)
			}
		}
		// A lock changed so that it no longer names the archive's hash
		// vouches for nothing: enterprise refuses it as unsigned.
		tampered := signedRegistry(t, []byte("archive signed.oci.tar"), signedDigest)
		tamperLock(t, tampered)
		rt := &fakeImporter{}
		recs, _, _ := runVerifiedBundled(t, config.ProfileEnterprise, dir, rt, tampered)
		if d := detailOf(t, recs, "image.import.refused", "signed.oci.tar"); len(rt.imported) != 0 || !strings.Contains(d.Error, "not signed by a trusted key") {
			t.Errorf("imported %q, refusal %+v", rt.imported, d)
		}
	})
	t.Run("user allows unsigned with a warning", func(t *testing.T) {
		rt := &fakeImporter{}
		recs, _, log := runVerifiedBundled(t, config.ProfileUser, dir, rt, reg)
		if len(rt.imported) != 2 || actions(recs) != "image.import signed.oci.tar, image.import unsigned.oci.tar" {
			t.Fatalf("imported %q, audit %s; want both", rt.imported, actions(recs))
		}
		d := detailOf(t, recs, "image.import", "unsigned.oci.tar")
		if d.Signer == nil || *d.Signer != "" || len(d.Warnings) == 0 || !strings.Contains(d.Warnings[len(d.Warnings)-1], "allowed by the user profile") {
			t.Errorf("the unsigned import's audit: %+v; want the warning, no signer", d)
		}
		if !strings.Contains(log, "allowed with a warning") || !strings.Contains(log, "allowed by the user profile") {
			t.Errorf("the warning is not logged:\n%s", log)
		}
	})
}

// TestWireAgentsVerifiesImports is the daemon-level test of verified
// imports, on the enterprise profile, against a private containerd, with
// the Verifier wireAgents builds from agents.registries and
// agents.trust_dir (a temporary registry signed with the test key): the
// bundled import imports the archive the registry lists and refuses, with
// an audit record and its reason, the one it does not; through the API
// the unsigned archive is refused 403 with the reason and the signed one
// imported 201 naming its signer; once the registry's lock is changed
// after signing, the API and a bundled import into a fresh namespace
// both refuse the signed archive as a bad signature.
func TestWireAgentsVerifiesImports(t *testing.T) {
	d := ctrtest.Start(t) // skips without root or containerd: it mounts snapshots
	ns := d.Namespace(t)
	signed := ctrtest.BusyboxArchive(t, ctrtest.ImageOptions{Name: "omerta.test/signed:1"})
	unsigned := ctrtest.BusyboxArchive(t, ctrtest.ImageOptions{Name: "omerta.test/unsigned:1", Cmd: []string{"/bin/true"}})
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "state.db"), store.WithSchemas(daemonSchemas...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	signedData, err := os.ReadFile(signed.Path)
	if err != nil {
		t.Fatal(err)
	}
	unsignedData, err := os.ReadFile(unsigned.Path)
	if err != nil {
		t.Fatal(err)
	}
	bundled := filepath.Join(dir, "bundled")
	os.Mkdir(bundled, 0o755)
	os.WriteFile(filepath.Join(bundled, "signed.oci.tar"), signedData, 0o644)
	os.WriteFile(filepath.Join(bundled, "unsigned.oci.tar"), unsignedData, 0o644)
	index, _ := json.Marshal(map[string]bundledEntry{
		"signed":   {Ref: signed.Name, Digest: signed.Manifest, Size: int64(len(signedData)), Archive: "signed.oci.tar"},
		"unsigned": {Ref: unsigned.Name, Digest: unsigned.Manifest, Size: int64(len(unsignedData)), Archive: "unsigned.oci.tar"},
	})
	os.WriteFile(filepath.Join(bundled, bundledIndex), index, 0o644)
	reg := signedRegistry(t, signedData, signed.Manifest)

	cfg := config.Default()
	cfg.Profile = config.ProfileEnterprise
	cfg.Daemon.StateDir = filepath.Join(dir, "state")
	cfg.Agents.Containerd, cfg.Agents.Namespace, cfg.Agents.RuntimeRoot = d.Address, ns, d.RuntimeRoot
	cfg.Agents.CatalogDir, cfg.Agents.BundledDir = filepath.Join(dir, "catalog"), bundled
	cfg.Agents.LogDir, cfg.Agents.RunDir = filepath.Join(dir, "logs"), filepath.Join(dir, "run")
	cfg.Agents.Registries, cfg.Agents.TrustDir = []string{reg}, registryTrust(t)
	os.Mkdir(cfg.Agents.CatalogDir, 0o755)
	ag, err := wireAgents(daemon.Deps{Store: st, Config: cfg, Logger: slog.New(slog.DiscardHandler), Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	var bi *bundledImport
	for _, s := range ag.services {
		if b, ok := s.(*bundledImport); ok {
			bi = b
		}
	}
	if bi == nil || bi.check == nil {
		t.Fatalf("wireAgents built no verified bundled import: %+v", bi)
	}
	if ag.api.Archives == nil {
		t.Fatal("wireAgents gave the API no archive verifier")
	}
	runCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := bi.Run(runCtx); err != nil {
		t.Fatal(err)
	}
	names := func(imgs []runtime.Image) []string {
		var out []string
		for _, i := range imgs {
			out = append(out, i.Name)
		}
		return out
	}
	imgs, err := ag.api.Images.Images(ctx)
	if err != nil || !slices.Contains(names(imgs), signed.Name) || slices.Contains(names(imgs), unsigned.Name) {
		t.Fatalf("images after the bundled import: %q, %v; want %s and not %s", names(imgs), err, signed.Name, unsigned.Name)
	}
	recs, err := st.AuditLog(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if dt := detailOf(t, recs, "image.import", "signed.oci.tar"); dt.Signer == nil || *dt.Signer != registryTestKeyID || dt.PinnedDigest != signed.Manifest {
		t.Errorf("the bundled import's audit: %+v; want signed by %s, pinned to %s", dt, registryTestKeyID, signed.Manifest)
	}
	if dt := detailOf(t, recs, "image.import.refused", "unsigned.oci.tar"); !strings.Contains(dt.Error, "not signed by a trusted key") {
		t.Errorf("the bundled refusal's audit: %+v; want the reason", dt)
	}

	// Through the API.
	c := serveAgentsAPI(t, st, ag.api)
	apiImport := func(path string) (apitype.ImageImported, int, string) {
		t.Helper()
		out, err := c.ImportImage(ctx, apitype.ImageImport{Path: path})
		var ae *apiclient.Error
		if errors.As(err, &ae) {
			return out, ae.Status, ae.Message
		}
		if err != nil {
			t.Fatalf("import %s: %v", path, err)
		}
		return out, 201, ""
	}
	if _, code, msg := apiImport(unsigned.Path); code != 403 || !strings.Contains(msg, "not signed by a trusted key") {
		t.Errorf("an unsigned archive through the API: %d %q; want 403 with the reason", code, msg)
	}
	out, code, msg := apiImport(signed.Path)
	if code != 201 || out.Signer != registryTestKeyID || len(out.Images) != 1 || out.Images[0].Name != signed.Name {
		t.Errorf("a signed archive through the API: %d %q %+v; want 201 signed by %s", code, msg, out, registryTestKeyID)
	}

	// The lock is changed after it was signed.
	tamperLockDigest(t, reg)
	_, code, msg = apiImport(signed.Path)
	if code != 403 || !strings.Contains(msg, "bad-signature") {
		t.Errorf("a signed archive of a tampered registry through the API: %d %q; want 403, bad signature", code, msg)
	}
	ns2 := d.Namespace(t)
	rt2, err := runtime.New(d.Client(t), runtime.WithNamespace(ns2), runtime.WithLogDir(filepath.Join(dir, "logs2")),
		runtime.WithRunDir(filepath.Join(dir, "run2")), runtime.WithRuntimeRoot(d.RuntimeRoot))
	if err != nil {
		t.Fatal(err)
	}
	st2 := testStore(t)
	if err := newBundledImport(bundled, runtimeImporter{rt2}, ag.api.Archives, st2, slog.New(slog.DiscardHandler)).Run(runCtx); err != nil {
		t.Fatal(err)
	}
	if imgs, err := rt2.Images(ctx); err != nil || len(imgs) != 0 {
		t.Errorf("the bundled import of a tampered registry imported %q, %v", names(imgs), err)
	}
	recs, err = st2.AuditLog(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if dt := detailOf(t, recs, "image.import.refused", "signed.oci.tar"); !strings.Contains(dt.Error, "bad-signature") {
		t.Errorf("the bundled refusal of a tampered registry: %+v", dt)
	}
	var de *policy.DeniedError
	if _, err := ag.api.Archives.CheckArchive(ctx, signed.Path); !errors.As(err, &de) || de.Decision.Rule != registryRule {
		t.Errorf("CheckArchive of a tampered registry: %v; want a refusal by %s", err, registryRule)
	}
}

// TestArchiveVerifier: the registry's Verifier as the imports ask it. An
// archive a signed registry lists is allowed with the digest it pins,
// the registry and the signer; an unlisted one is allowed on user with
// the warning, refused on enterprise as a *policy.DeniedError by rule
// "registry" that still wraps registry.ErrDenied (403); a missing file is
// the caller's mistake (os.ErrNotExist: 400), not a registry's refusal.
func TestArchiveVerifier(t *testing.T) {
	ctx := context.Background()
	files := t.TempDir()
	listed, other := filepath.Join(files, "listed.oci.tar"), filepath.Join(files, "other.oci.tar")
	os.WriteFile(listed, []byte("a listed archive"), 0o644)
	os.WriteFile(other, []byte("another archive"), 0o644)
	reg := signedRegistry(t, []byte("a listed archive"), digestOf('a'))
	verifier := func(p config.Profile) archiveVerifier {
		d, _ := verifierDeps(t, p, registryTrust(t), reg)
		return archiveVerifier{newRegistryVerifier(d)}
	}
	ent, user := verifier(config.ProfileEnterprise), verifier(config.ProfileUser)
	if c, err := ent.CheckArchive(ctx, listed); err != nil || c.Digest != digestOf('a') || c.Signer != registryTestKeyID || c.Registry != reg || len(c.Warnings) != 0 {
		t.Errorf("a listed archive: %+v, %v", c, err)
	}
	if c, err := user.CheckArchive(ctx, other); err != nil || c.Digest != "" || c.Signer != "" || len(c.Warnings) != 1 ||
		!strings.Contains(c.Warnings[0], "allowed by the user profile") {
		t.Errorf("an unlisted archive on user: %+v, %v", c, err)
	}
	_, err := ent.CheckArchive(ctx, other)
	var de *policy.DeniedError
	if !errors.As(err, &de) || de.Decision.Rule != registryRule || !errors.Is(err, registry.ErrDenied) ||
		!strings.Contains(de.Decision.Reason, "not signed by a trusted key") {
		t.Errorf("an unlisted archive on enterprise: %v", err)
	}
	_, err = ent.CheckArchive(ctx, filepath.Join(files, "absent.oci.tar"))
	if !errors.Is(err, os.ErrNotExist) || errors.As(err, &de) {
		t.Errorf("a missing archive: %v; want os.ErrNotExist, no policy refusal", err)
	}
}

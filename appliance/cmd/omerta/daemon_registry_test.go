package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/agents"
	"github.com/omertaos/omertaos/appliance/agents/ctrtest"
	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/api"
	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/daemon"
	"github.com/omertaos/omertaos/appliance/policy"
	"github.com/omertaos/omertaos/appliance/registry"
	"github.com/omertaos/omertaos/appliance/store"
)

// registryTestKeyID is the key ID of registry/testdata/keys/test.pub,
// which registryTrust puts in a trust directory.
const registryTestKeyID = "0242DB770DE91C78"

// signedRegistry makes, in a new directory, a registry that lists the
// image archive data as images/echo.oci.tar (kind image) with the OCI
// digest digest, locked and signed with registry/testdata/keys/test.key.
// The digest is written into the lock's entry before signing: a lock
// keeps an image's OCI digest only from the archive's own OCI index or
// from an earlier lock.
func signedRegistry(t *testing.T, data []byte, digest string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "images"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "images", "echo.oci.tar"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	index := "registry_version: \"1.0\"\ncatalog:\n  images:\n    - path: images/echo.oci.tar\nsigning:\n  method: minisign\n"
	if err := os.WriteFile(filepath.Join(dir, registry.IndexFile), []byte(index), 0o644); err != nil {
		t.Fatal(err)
	}
	lock, fs, err := registry.BuildLock(context.Background(), dir, time.Now())
	if err != nil || lock == nil || len(lock.Entries) != 1 || lock.Entries[0].Kind != registry.KindImage {
		t.Fatalf("BuildLock = %+v, %v, %v", lock, fs, err)
	}
	lock.Entries[0].Digest = digest
	signLock(t, dir, lock)
	return dir
}

// modelRegistry makes, in a new directory, a registry of the model
// manifests given (name: YAML, written as models/NAME.yaml), locked and
// signed with registry/testdata/keys/test.key.
func modelRegistry(t *testing.T, models map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "models"), 0o755); err != nil {
		t.Fatal(err)
	}
	index := "registry_version: \"1.0\"\ncatalog:\n  models:\n"
	for name, doc := range models {
		if err := os.WriteFile(filepath.Join(dir, "models", name+".yaml"), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		index += "    - path: models/" + name + ".yaml\n"
	}
	index += "signing:\n  method: minisign\n"
	if err := os.WriteFile(filepath.Join(dir, registry.IndexFile), []byte(index), 0o644); err != nil {
		t.Fatal(err)
	}
	lock, fs, err := registry.BuildLock(context.Background(), dir, time.Now())
	if err != nil || lock == nil || len(lock.Entries) != len(models) {
		t.Fatalf("BuildLock = %+v, %v, %v", lock, fs, err)
	}
	signLock(t, dir, lock)
	return dir
}

// signLock writes lock into the registry dir with its signature by
// registry/testdata/keys/test.key.
func signLock(t *testing.T, dir string, lock *registry.Lock) {
	t.Helper()
	text, err := registry.MarshalLock(lock)
	if err != nil {
		t.Fatal(err)
	}
	keyData, err := os.ReadFile(filepath.Join(registryKeys, "test.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := registry.ParsePrivateKey(keyData, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, registry.LockFile), text, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, registry.SignatureFile), registry.Sign(text, key), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tamperLock changes one hex digit of the first entry's sha256 in the
// registry's lock, leaving its signature as it was.
func tamperLock(t *testing.T, dir string) {
	t.Helper()
	tamperLockField(t, dir, `"sha256": "`)
}

// tamperLockDigest changes one hex digit of the first entry's OCI digest
// in the registry's lock, leaving its signature as it was: the entry
// still names the archive's sha256, so the archive is still listed, by a
// lock whose signature no longer verifies.
func tamperLockDigest(t *testing.T, dir string) {
	t.Helper()
	tamperLockField(t, dir, `"digest": "sha256:`)
}

// tamperLockField changes the hex digit after the first prefix in the
// registry's lock.
func tamperLockField(t *testing.T, dir, prefix string) {
	t.Helper()
	p := filepath.Join(dir, registry.LockFile)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, []byte(prefix))
	if i < 0 {
		t.Fatalf("no %s in the lock:\n%s", prefix, data)
	}
	i += len(prefix)
	if data[i] == '0' {
		data[i] = '1'
	} else {
		data[i] = '0'
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func verifierDeps(t *testing.T, p config.Profile, trustDir string, registries ...string) (daemon.Deps, *bytes.Buffer) {
	t.Helper()
	cfg := config.Default()
	cfg.Profile = p
	cfg.Agents.TrustDir, cfg.Agents.Registries = trustDir, registries
	var log bytes.Buffer
	return daemon.Deps{Config: cfg, Logger: slog.New(slog.NewTextHandler(&log, nil)), Now: time.Now}, &log
}

// TestImageVerifierFromConfig: the verifier omertad builds from
// agents.registries and agents.trust_dir names the trusted key of a
// signed registry that lists the image, "" for an image none lists or
// whose key is not trusted, and refuses, as admission refuses (403), an
// image listed by a registry whose lock was changed after it was signed.
// A trust directory that does not exist, cannot be read or holds a bad
// key file never stops omertad: it says so in the log, and trusts what
// it can.
func TestImageVerifierFromConfig(t *testing.T) {
	ctx := context.Background()
	digest := "sha256:" + strings.Repeat("ab", 32)
	reg := signedRegistry(t, []byte("an image archive"), digest)
	missing := filepath.Join(t.TempDir(), "none")

	t.Run("signed", func(t *testing.T) {
		trust := registryTrust(t)
		os.WriteFile(filepath.Join(trust, "bad.pub"), []byte("not a key\n"), 0o644)
		d, log := verifierDeps(t, config.ProfileEnterprise, trust, missing, reg)
		v := imageVerifier{newRegistryVerifier(d)}
		if id, err := v.ImageSigner(ctx, "omerta.test/echo:1", digest); err != nil || id != registryTestKeyID {
			t.Fatalf("ImageSigner = %q, %v; want the test key", id, err)
		}
		if id, err := v.ImageSigner(ctx, "omerta.test/other:1", "sha256:"+strings.Repeat("cd", 32)); err != nil || id != "" {
			t.Fatalf("an image no registry lists: %q, %v", id, err)
		}
		out := log.String()
		for _, want := range []string{"bad.pub: invalid-key", `registry \"` + missing + `\" is not a directory here`, registryTestKeyID} {
			if !strings.Contains(out, want) {
				t.Errorf("log lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "refuses every agent image") {
			t.Errorf("a key is trusted, yet the log says none is:\n%s", out)
		}
	})
	t.Run("trust directory missing", func(t *testing.T) {
		d, log := verifierDeps(t, config.ProfileEnterprise, missing, reg)
		v := imageVerifier{newRegistryVerifier(d)}
		if id, err := v.ImageSigner(ctx, "omerta.test/echo:1", digest); err != nil || id != "" {
			t.Fatalf("no trusted key: %q, %v; want unsigned, for admission to decide", id, err)
		}
		out := log.String()
		if !strings.Contains(out, `level=WARN`) || !strings.Contains(out, `the trust directory \"`+missing+`\" does not exist`) ||
			!strings.Contains(out, "the enterprise profile refuses every agent image") {
			t.Errorf("log:\n%s", out)
		}
	})
	t.Run("trust directory unreadable", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "trust")
		os.WriteFile(file, []byte("a file, not a directory"), 0o644)
		d, log := verifierDeps(t, config.ProfileUser, file, reg)
		v := imageVerifier{newRegistryVerifier(d)}
		if id, err := v.ImageSigner(ctx, "omerta.test/echo:1", digest); err != nil || id != "" {
			t.Fatalf("unreadable trust: %q, %v; want unsigned", id, err)
		}
		if out := log.String(); !strings.Contains(out, `trust directory \"`+file+`\" cannot be read; no registry key is trusted`) {
			t.Errorf("log:\n%s", out)
		}
	})
	t.Run("tampered", func(t *testing.T) {
		tampered := signedRegistry(t, []byte("an image archive"), digest)
		tamperLock(t, tampered)
		d, _ := verifierDeps(t, config.ProfileUser, registryTrust(t), tampered)
		id, err := imageVerifier{newRegistryVerifier(d)}.ImageSigner(ctx, "omerta.test/echo:1", digest)
		var de *policy.DeniedError
		if id != "" || !errors.Is(err, registry.ErrDenied) || !errors.Is(err, policy.ErrDenied) || !errors.As(err, &de) ||
			de.Decision.Rule != registryRule || !strings.Contains(de.Decision.Reason, "bad-signature") ||
			!strings.Contains(err.Error(), "changed after it was signed") {
			t.Fatalf("a tampered registry: %q, %v", id, err)
		}
	})
}

// TestWireAgentsVerifiesImageSignatures: on the enterprise profile the
// agents service wireAgents builds asks the configured registries who
// signed an image. With no registry vouching for it a deploy is refused
// by images.requireSigned; once a registry signed with a trusted key
// lists the image's digest it is allowed, and the key reaches admission
// and the audit log; when that registry's lock is changed after signing
// the deploy is refused with the registry's reason (bad signature). The
// API answers both refusals 403 with the reason.
func TestWireAgentsVerifiesImageSignatures(t *testing.T) {
	d := ctrtest.Start(t)
	dir := t.TempDir()
	ns := d.Namespace(t)
	arch := ctrtest.BusyboxArchive(t, ctrtest.ImageOptions{Name: "omerta.test/echo:1"})
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(dir, "state.db"), store.WithSchemas(daemonSchemas...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	regDir := filepath.Join(dir, "registry") // made below
	cfg := config.Default()
	cfg.Profile = config.ProfileEnterprise
	cfg.Daemon.StateDir = filepath.Join(dir, "state")
	cfg.Agents.Containerd, cfg.Agents.Namespace, cfg.Agents.RuntimeRoot = d.Address, ns, d.RuntimeRoot
	cfg.Agents.CatalogDir, cfg.Agents.BundledDir = filepath.Join(dir, "catalog"), filepath.Join(dir, "bundled")
	cfg.Agents.LogDir, cfg.Agents.RunDir = filepath.Join(dir, "logs"), filepath.Join(dir, "run")
	cfg.Agents.Registries, cfg.Agents.TrustDir = []string{regDir}, registryTrust(t)
	os.Mkdir(cfg.Agents.CatalogDir, 0o755)
	os.WriteFile(filepath.Join(cfg.Agents.CatalogDir, "echo.yaml"), fmt.Appendf(nil, e2eEntry, arch.Name), 0o644)
	ag, err := wireAgents(daemon.Deps{Store: st, Config: cfg, Logger: slog.New(slog.DiscardHandler), Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	c := serveAgentsAPI(t, st, ag.api)
	// apiDeploy deploys the catalog entry through the API and returns
	// the refusal's status and message.
	apiDeploy := func(id string) (int, string) {
		t.Helper()
		_, err := c.DeployAgent(ctx, apitype.AgentDeploy{Entry: "echo", ID: id})
		var ae *apiclient.Error
		if !errors.As(err, &ae) {
			t.Fatalf("deploy %s through the API: %v; want a refusal", id, err)
		}
		return ae.Status, ae.Message
	}
	imgs, err := ag.api.Images.ImportArchive(ctx, arch.Path)
	if err != nil || len(imgs) != 1 {
		t.Fatalf("import: %+v, %v", imgs, err)
	}
	digest := imgs[0].Digest
	// The enterprise profile runs agents in gVisor; this machine runs
	// them in runc. The tenant's policy says so, and leaves the
	// profile's images.requireSigned as it is.
	putPolicy(t, ag.policy, "tenant/"+policy.DefaultTenant, "{isolation: container}")
	m, err := manifest.Parse(fmt.Appendf(nil, e2eEntry, arch.Name))
	if err != nil {
		t.Fatal(err)
	}
	svc := ag.api.Service
	deploy := func(id string) error {
		_, err := svc.Deploy(ctx, agents.DeployRequest{Manifest: m, ID: id, Actor: "test"})
		if err == nil {
			t.Cleanup(func() { svc.Delete(context.Background(), id, true, "test") })
		}
		return err
	}
	lastDecision := func(id string) policy.DecisionRecord {
		t.Helper()
		recs, err := ag.policy.Decisions(ctx, policy.DecisionQuery{Agent: id})
		if err != nil || len(recs) == 0 {
			t.Fatalf("decisions on %s: %+v, %v", id, recs, err)
		}
		return recs[0]
	}

	// (a) No registry vouches for the image: refused by the profile.
	err = deploy("unsigned")
	var de *policy.DeniedError
	if !errors.Is(err, agents.ErrDenied) || !errors.As(err, &de) || !strings.Contains(de.Decision.Rule, "images.requireSigned") ||
		!strings.Contains(err.Error(), "has no verified signature") {
		t.Fatalf("an unsigned image on enterprise: %v", err)
	}
	if rec := lastDecision("unsigned"); rec.Decision.Allow || rec.Request.Image.Signer != "" || rec.Request.Image.Digest != digest {
		t.Errorf("recorded decision %+v", rec)
	}
	if _, err := svc.Get(ctx, "unsigned"); !errors.Is(err, agents.ErrNotFound) {
		t.Errorf("the refused agent was recorded: %v", err)
	}
	if code, msg := apiDeploy("unsigned-api"); code != 403 || !strings.Contains(msg, "images.requireSigned") {
		t.Errorf("through the API: %d %q; want 403 naming images.requireSigned", code, msg)
	}

	// (b) A registry signed with a trusted key lists the image's digest.
	data, err := os.ReadFile(arch.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(signedRegistry(t, data, digest), regDir); err != nil {
		t.Fatal(err)
	}
	if err := deploy("signed"); err != nil {
		t.Fatalf("a signed image on enterprise: %v", err)
	}
	rec := lastDecision("signed")
	if !rec.Decision.Allow || rec.Request.Image.Signer != registryTestKeyID {
		t.Errorf("recorded decision %+v; want allowed, signed by %s", rec, registryTestKeyID)
	}
	for _, w := range rec.Decision.Warnings {
		if strings.Contains(w, "no verified signature") {
			t.Errorf("a signed image warned as unsigned: %q", w)
		}
	}
	recs, err := st.AuditLog(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range recs {
		var detail struct{ Signer string }
		if r.Action == "agents.deploy" && r.Target == "signed" && json.Unmarshal(r.Detail, &detail) == nil {
			found = detail.Signer == registryTestKeyID
		}
	}
	if !found {
		t.Errorf("no agents.deploy audit record of \"signed\" names the signer %s", registryTestKeyID)
	}

	// (c) The lock changed after it was signed: the registry fails, and
	// its failure refuses the deploy.
	tamperLock(t, regDir)
	err = deploy("tampered")
	if !errors.Is(err, agents.ErrDenied) || !errors.Is(err, registry.ErrDenied) || !errors.As(err, &de) || de.Decision.Rule != registryRule ||
		!strings.Contains(err.Error(), "bad-signature") || !strings.Contains(err.Error(), regDir) {
		t.Fatalf("an image listed by a tampered registry: %v", err)
	}
	t.Logf("refused: %v", err)
	// Refused before admission, and recorded as admission records its own
	// refusals: a denied decision and its audit record.
	if rec := lastDecision("tampered"); rec.Decision.Allow || rec.Decision.Rule != registryRule || !strings.Contains(rec.Decision.Reason, "bad-signature") {
		t.Errorf("recorded decision %+v; want denied by %s", rec.Decision, registryRule)
	}
	if recs, err = st.AuditLog(ctx, 0, 1000); err != nil {
		t.Fatal(err)
	}
	if r := recs[len(recs)-1]; r.Action != "policy.admission.denied" || r.Target != "agent/tampered" || !strings.Contains(string(r.Detail), registryRule) {
		t.Errorf("newest audit record %s %s %s; want the registry's refusal of \"tampered\"", r.Action, r.Target, r.Detail)
	}
	if _, err := svc.Get(ctx, "tampered"); !errors.Is(err, agents.ErrNotFound) {
		t.Errorf("the refused agent was recorded: %v", err)
	}
	if code, msg := apiDeploy("tampered-api"); code != 403 || !strings.Contains(msg, "bad-signature") {
		t.Errorf("through the API: %d %q; want 403 with the registry's reason", code, msg)
	}
}

// serveAgentsAPI serves the API over the agents domain deps on a unix
// socket and returns a client of it.
func serveAgentsAPI(t *testing.T, st *store.Store, deps api.AgentsDeps) *apiclient.Client {
	t.Helper()
	dir, err := os.MkdirTemp("", "omerta-api")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := serveAPI(t, dir, api.Deps{Store: st, Agents: deps})
	c := apiclient.New(sock, apiclient.WithTimeout(30*time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

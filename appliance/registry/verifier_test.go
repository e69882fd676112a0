package registry

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/config"
)

func agentManifest(t *testing.T, dir string) *manifest.Manifest {
	t.Helper()
	m, err := manifest.Parse(readFile(t, filepath.Join(dir, "agents/web.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var profiles = []config.Profile{config.ProfileUser, config.ProfilePro, config.ProfileEnterprise}

// TestDecide: the profile table. A failure refuses everywhere; unsigned
// only in enterprise (and in a profile nobody knows); signed is allowed.
func TestDecide(t *testing.T) {
	ok := Finding{Subject: "a", Code: CodeOK, Severity: SeverityOK}
	unsigned := Finding{Subject: SignatureFile, Code: CodeUnsigned, Severity: SeverityFailure, Detail: "no signature"}
	noKey := Finding{Subject: SignatureFile, Code: CodeMissingPublicKey, Severity: SeverityFailure, Detail: "key ID X"}
	mismatch := Finding{Subject: "a", Code: CodeDigestMismatch, Severity: SeverityFailure, Detail: "sha256 differs"}
	vram := Finding{Subject: "a", Code: CodeInsufficientVRAM, Severity: SeverityFailure, Detail: "needs 24 GB"}
	cases := []struct {
		name   string
		fs     []Finding
		signed bool
		allow  map[config.Profile]bool
		code   Code
	}{
		{"signed", []Finding{ok}, true, map[config.Profile]bool{"user": true, "pro": true, "enterprise": true}, CodeOK},
		{"unsigned", []Finding{ok, unsigned}, false, map[config.Profile]bool{"user": true, "pro": true, "enterprise": false}, CodeUnsigned},
		{"unknown key", []Finding{ok, noKey}, false, map[config.Profile]bool{"user": true, "pro": true, "enterprise": false}, CodeUnsigned},
		{"digest mismatch", []Finding{mismatch, unsigned}, false, map[config.Profile]bool{"user": false, "pro": false, "enterprise": false}, CodeDigestMismatch},
		{"mismatch elsewhere, signed here", []Finding{mismatch, ok}, true, map[config.Profile]bool{"user": true, "pro": true, "enterprise": true}, CodeOK},
		{"does not fit, even signed", []Finding{ok, vram}, true, map[config.Profile]bool{"user": false, "pro": false, "enterprise": false}, CodeInsufficientVRAM},
	}
	for _, tc := range cases {
		for _, p := range append(profiles, "bogus") {
			d := Decide(p, "agent \"a\"", tc.fs, tc.signed)
			want, known := tc.allow[p]
			if !known { // an unknown profile is enterprise: fail closed
				want = tc.allow[config.ProfileEnterprise]
			}
			if d.Allowed != want || d.Code != tc.code {
				t.Errorf("%s/%s: allowed %v code %s (%s), want %v %s", tc.name, p, d.Allowed, d.Code, d.Reason, want, tc.code)
			}
			if d.Allowed && d.Code == CodeUnsigned && (len(d.Warnings) != 1 || !strings.Contains(d.Warnings[0], "allowed by the "+string(p)+" profile")) {
				t.Errorf("%s/%s: warnings %v", tc.name, p, d.Warnings)
			}
			if err := d.Err(); d.Allowed != (err == nil) || err != nil && !errors.Is(err, ErrDenied) {
				t.Errorf("%s/%s: Err() = %v", tc.name, p, err)
			}
		}
	}
}

func newVerifier(t *testing.T, p config.Profile, trust *Keyring, dirs ...string) *Verifier {
	t.Helper()
	return NewVerifier(VerifierConfig{Profile: p, Trust: trust, Registries: dirs})
}

func TestCheckAgent(t *testing.T) {
	dir, trust := ours(t)
	m := agentManifest(t, dir)
	for _, p := range profiles {
		d := newVerifier(t, p, trust, dir).CheckAgent(context.Background(), m)
		if !d.Allowed || !d.Signed || d.Code != CodeOK || d.KeyID != "0242DB770DE91C78" || d.Registry != dir {
			t.Fatalf("%s: signed agent: %+v", p, d)
		}
	}
	// The same agent asking for another image: refused everywhere.
	other := agentManifest(t, dir)
	other.Spec.Image.Digest = "sha256:" + strings.Repeat("1", 64)
	for _, p := range profiles {
		d := newVerifier(t, p, trust, dir).CheckAgent(context.Background(), other)
		if d.Allowed || d.Code != CodeDigestMismatch || !strings.Contains(d.Reason, "pins image sha256:4f5e8a1c") {
			t.Fatalf("%s: other image: %+v", p, d)
		}
	}
	// An agent no registry knows: unsigned.
	stranger := agentManifest(t, dir)
	stranger.Metadata.ID = "stranger"
	stranger.Spec.Image.Digest = "sha256:" + strings.Repeat("2", 64)
	for _, p := range profiles {
		d := newVerifier(t, p, trust, dir).CheckAgent(context.Background(), stranger)
		if d.Allowed != (p != config.ProfileEnterprise) || d.Code != CodeUnsigned {
			t.Fatalf("%s: unknown agent: %+v", p, d)
		}
		if d.Allowed && len(d.Warnings) == 0 {
			t.Fatalf("%s: allowed unsigned without a warning", p)
		}
	}
	// Another agent whose image the registry ships as an image entry.
	sibling := agentManifest(t, dir)
	sibling.Metadata.ID = "web-copy"
	d := newVerifier(t, config.ProfileEnterprise, trust, dir).CheckAgent(context.Background(), sibling)
	if !d.Allowed || d.ImageDigest != sibling.Spec.Image.Digest {
		t.Fatalf("image entry vouches: %+v", d)
	}
}

func TestCheckAgentTampered(t *testing.T) {
	dir, trust := ours(t)
	m := agentManifest(t, dir)
	edit(t, dir, "agents/web.yaml", "Web sample agent", "Web sample agent (edited)")
	for _, p := range profiles {
		d := newVerifier(t, p, trust, dir).CheckAgent(context.Background(), m)
		if d.Allowed || d.Code != CodeDigestMismatch {
			t.Fatalf("%s: edited manifest: %+v", p, d)
		}
	}
	// A lock whose trusted comment was changed: refused everywhere.
	dir2, _ := ours(t)
	edit(t, dir2, SignatureFile, "trusted comment: timestamp", "trusted comment: xtimestamp")
	for _, p := range profiles {
		d := newVerifier(t, p, trust, dir2).CheckAgent(context.Background(), m)
		if d.Allowed || d.Code != CodeBadSignature {
			t.Fatalf("%s: bad signature: %+v", p, d)
		}
	}
	dir3, _ := ours(t)
	for _, p := range profiles {
		d := newVerifier(t, p, NewKeyring(), dir3).CheckAgent(context.Background(), m)
		if d.Allowed != (p != config.ProfileEnterprise) || d.Code != CodeUnsigned || !strings.Contains(d.Reason, "missing-public-key") {
			t.Fatalf("%s: untrusted key: %+v", p, d)
		}
	}
}

func TestCheckImage(t *testing.T) {
	dir, trust := ours(t)
	archive := filepath.Join(dir, "images/web.oci.tar")
	d := newVerifier(t, config.ProfileEnterprise, trust, dir).CheckImage(context.Background(), archive)
	if !d.Allowed || d.ImageDigest != fixtureImageHash {
		t.Fatalf("shipped image: %+v", d)
	}
	// The same bytes elsewhere are the same image.
	copyPath := filepath.Join(t.TempDir(), "web.tar")
	writeFile(t, copyPath, readFile(t, archive))
	if d := newVerifier(t, config.ProfileEnterprise, trust, dir).CheckImage(context.Background(), copyPath); !d.Allowed {
		t.Fatalf("copied image: %+v", d)
	}
	writeFile(t, copyPath, append(readFile(t, archive), 0))
	for _, p := range profiles {
		d := newVerifier(t, p, trust, dir).CheckImage(context.Background(), copyPath)
		if d.Allowed != (p != config.ProfileEnterprise) || d.Code != CodeUnsigned {
			t.Fatalf("%s: unknown archive: %+v", p, d)
		}
	}
	if d := newVerifier(t, config.ProfileUser, trust, dir).CheckImage(context.Background(), "/dev/zero"); d.Allowed || d.Code != CodeRefusedFile {
		t.Fatalf("/dev/zero: %+v", d)
	}
}

func TestCheckModel(t *testing.T) {
	dir, trust := ours(t)
	big := []GPU{{Index: 0, Name: "NVIDIA A10", TotalBytes: 24e9, FreeBytes: 20e9}}
	none := []GPU{{Index: 0, Name: "NVIDIA T400", TotalBytes: 2e9, FreeBytes: 0.5e9}}
	ctx := context.Background()
	d := newVerifier(t, config.ProfileEnterprise, trust, dir).CheckModel(ctx, "local-echo", big)
	if !d.Allowed || d.Model == nil || d.Model.Model.Resources.VRAMGB != 1 {
		t.Fatalf("local-echo on an A10: %+v", d)
	}
	d = newVerifier(t, config.ProfileUser, trust, dir).CheckModel(ctx, "local-echo", none)
	if d.Allowed || d.Code != CodeInsufficientVRAM || !strings.Contains(d.Reason, `needs 1 GB (1000000000 bytes) of GPU memory on one GPU; none has that much free (GPU 0 "NVIDIA T400": 0.5 GB (500000000 bytes) free of 2 GB (2000000000 bytes))`) {
		t.Fatalf("local-echo on a T400: %+v", d)
	}
	// A model served by an API needs none of this machine's memory.
	if d := newVerifier(t, config.ProfileEnterprise, trust, dir).CheckModel(ctx, "gpt-4o-mini", nil); !d.Allowed {
		t.Fatalf("gpt-4o-mini: %+v", d)
	}
	d = newVerifier(t, config.ProfileUser, trust, dir).CheckModel(ctx, "nope", big)
	if d.Allowed || !errors.Is(d.Err(), ErrNotFound) || !errors.Is(d.Err(), ErrDenied) {
		t.Fatalf("unknown model: %+v", d)
	}
	// Upstream's models: every one is refused, in every profile, for its
	// placeholders.
	for _, p := range profiles {
		for _, name := range []string{"gpt-4.5", "llama3.2-3b", "gemini-2.5-pro"} {
			d := newVerifier(t, p, NewKeyring(), upstreamDir).CheckModel(ctx, name, big)
			if d.Allowed || d.Code != CodeInvalidManifest && d.Code != CodePlaceholderDigest && d.Code != CodePlaceholderSignature {
				t.Errorf("%s: upstream %s: %+v", p, name, d)
			}
		}
	}
}

func TestCheckModelManifest(t *testing.T) {
	gpus := []GPU{{Name: "NVIDIA L4", TotalBytes: 24e9, FreeBytes: 22e9}}
	for _, p := range profiles {
		d := newVerifier(t, p, nil).CheckModelManifest([]byte(goodModel), gpus)
		if d.Allowed != (p != config.ProfileEnterprise) || d.Code != CodeUnsigned || d.Subject != `model "tiny"` {
			t.Fatalf("%s: %+v", p, d)
		}
	}
	d := newVerifier(t, config.ProfileUser, nil).CheckModelManifest([]byte(strings.Replace(goodModel, "vram_gb: 2.5", "vram_gb: 40", 1)), gpus)
	if d.Allowed || d.Code != CodeInsufficientVRAM {
		t.Fatalf("40 GB on an L4: %+v", d)
	}
	d = newVerifier(t, config.ProfileUser, nil).CheckModelManifest([]byte("kind: model\nname: x\n"), gpus)
	if d.Allowed || d.Code != CodeInvalidManifest {
		t.Fatalf("invalid: %+v", d)
	}
}

func TestImageSigner(t *testing.T) {
	dir, trust := ours(t)
	ctx := context.Background()
	v := newVerifier(t, config.ProfileUser, trust, dir)
	if id, err := v.ImageSigner(ctx, "localhost/omerta/web:1.0.0", fixtureImageHash); err != nil || id != "0242DB770DE91C78" {
		t.Fatalf("signed image: %q %v", id, err)
	}
	if id, err := v.ImageSigner(ctx, "x", "sha256:"+strings.Repeat("3", 64)); err != nil || id != "" {
		t.Fatalf("unknown image: %q %v", id, err)
	}
	if id, err := newVerifier(t, config.ProfileUser, NewKeyring(), dir).ImageSigner(ctx, "x", fixtureImageHash); err != nil || id != "" {
		t.Fatalf("untrusted key: %q %v", id, err)
	}
	// A tampered signature on the registry that lists the image stops it.
	edit(t, dir, SignatureFile, "trusted comment: timestamp", "trusted comment: xtimestamp")
	if id, err := v.ImageSigner(ctx, "x", fixtureImageHash); id != "" || !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "bad-signature") {
		t.Fatalf("tampered registry: %q %v", id, err)
	}
}

package agents

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/omertaos/omertaos/appliance/agents/runtime"
)

const (
	remoteRef = "registry.test/agents/tool:1"
	remoteD1  = "sha256:aaaa111111111111111111111111111111111111111111111111111111111111"
	remoteD2  = "sha256:bbbb222222222222222222222222222222222222222222222222222222222222"
)

func deployRemote(t testing.TB, e *env, id, ref, digest string) (Agent, error) {
	m := parseManifest(t, toolYAML)
	m.Spec.Image.Ref, m.Spec.Image.Digest = ref, digest
	return e.s.Deploy(context.Background(), DeployRequest{Manifest: m, ID: id,
		Config: map[string]any{"mode": "fast"}, Secrets: map[string]any{"api_key": testSecret}, Actor: testActor})
}

func pulls(calls []string) []string {
	var out []string
	for _, c := range calls {
		if len(c) > 5 && c[:5] == "pull " {
			out = append(out, c)
		}
	}
	return out
}

// An image absent from containerd is pulled once, at deploy; its digest
// is pinned in the stored manifest, and a patch or a restart after the
// registry's tag has moved neither pulls nor resolves it again.
func TestDeployPullsOnceAndPins(t *testing.T) {
	e := newEnv(t)
	e.rt.AddRemoteImage(runtime.Image{Name: remoteRef, Digest: remoteD1})
	a, err := deployRemote(t, e, "tool", remoteRef, "")
	if err != nil {
		t.Fatal(err)
	}
	if a.Manifest.Spec.Image.Ref != remoteRef || a.Manifest.Spec.Image.Digest != remoteD1 || a.Status.State != StateRunning {
		t.Fatalf("deployed %+v (%s@%s)", a.Status, a.Manifest.Spec.Image.Ref, a.Manifest.Spec.Image.Digest)
	}
	e.rt.AddRemoteImage(runtime.Image{Name: remoteRef, Digest: remoteD2}) // the tag moves
	if _, err := e.s.Patch(context.Background(), "tool", PatchRequest{Config: map[string]any{"mode": "slow"}, Actor: testActor}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Restart(context.Background(), "tool", testActor); err != nil {
		t.Fatal(err)
	}
	e.reconcile(t)
	if got := pulls(e.rt.Calls()); !slices.Equal(got, []string{"pull " + remoteRef}) {
		t.Errorf("pulls %v, want one at deploy", got)
	}
	sp, ok := e.rt.Spec("tool-g2")
	if !ok || sp.Image != remoteRef || sp.Digest != remoteD1 {
		t.Errorf("patched container's image %s@%s (found %v), want the pinned %s", sp.Image, sp.Digest, ok, remoteD1)
	}
	if got := e.get(t, "tool").Manifest.Spec.Image.Digest; got != remoteD1 {
		t.Errorf("stored digest %s after patch and restart, want %s", got, remoteD1)
	}
	// A second agent of the same tag finds the image in containerd: no
	// new pull, and the digest it pins is the local one.
	b, err := deployRemote(t, e, "tool2", remoteRef, "")
	if got := pulls(e.rt.Calls()); err != nil || b.Manifest.Spec.Image.Digest != remoteD1 || len(got) != 0 {
		t.Errorf("second deploy: %s, %v, pulls %v", b.Manifest.Spec.Image.Digest, err, got)
	}
}

func TestDeployPullRefusals(t *testing.T) {
	for _, c := range []struct {
		name, ref, digest, path string
	}{
		{"digest the registry does not have", remoteRef, remoteD2, "spec.image.digest"},
		{"no such image in the registry", "registry.test/agents/nope:1", "", "spec.image.ref"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			e.rt.AddRemoteImage(runtime.Image{Name: remoteRef, Digest: remoteD1})
			_, err := deployRemote(t, e, "tool", c.ref, c.digest)
			var ie *InvalidError
			if !errors.Is(err, ErrInvalid) || !errors.As(err, &ie) || !hasPath(ie.Problems, c.path) {
				t.Fatalf("deploy: %v, want a problem at %s", err, c.path)
			}
			if as, _ := e.s.List(context.Background()); len(as) != 0 {
				t.Errorf("a refused deploy recorded %v", as)
			}
			if imgs, _ := e.rt.Images(context.Background()); len(imgs) != 1 {
				t.Errorf("a refused pull left images %v", imgs)
			}
		})
	}
	t.Run("pinned digest pulled", func(t *testing.T) {
		e := newEnv(t)
		e.rt.AddRemoteImage(runtime.Image{Name: remoteRef, Digest: remoteD1})
		a, err := deployRemote(t, e, "tool", remoteRef, remoteD1)
		if err != nil || a.Manifest.Spec.Image.Digest != remoteD1 {
			t.Fatalf("deploy pinned to the registry's digest: %+v, %v", a.Manifest.Spec.Image, err)
		}
	})
}

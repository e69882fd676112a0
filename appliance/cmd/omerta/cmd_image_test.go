package main

import (
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/agents/runtime"
)

func TestImagePullCLI(t *testing.T) {
	const ref = "registry.test/agents/web:2"
	e := newCLIEnv(t)
	e.rt.AddRemoteImage(runtime.Image{Name: ref, Digest: cliDigest, Manifest: cliDigest})
	if out := e.ok(t, "image", "pull", ref, "--digest", cliDigest); !strings.Contains(out, ref) || !strings.Contains(out, cliDigest) {
		t.Errorf("image pull:\n%s", out)
	}
	if out := e.ok(t, "image", "list"); !strings.Contains(out, ref) {
		t.Errorf("image list after the pull:\n%s", out)
	}
	other := "sha256:" + strings.Repeat("9", 64)
	if _, _, err := e.run(t, "", "image", "pull", ref, "--digest", other); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("pull pinned to another digest: %v, want a 400", err)
	}
	if _, _, err := e.run(t, "", "image", "pull", "registry.test/agents/none:1"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("pull of an unknown image: %v, want a 404", err)
	}
}

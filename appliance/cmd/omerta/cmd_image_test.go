package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/apitype"
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

// TestPrintImported: `omerta image import` shows who signed the registry
// that vouches for the archive and every warning of the verification on
// stderr, escaped, and keeps stdout the table of images.
func TestPrintImported(t *testing.T) {
	cmd := &cobra.Command{}
	var out, errs bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errs)
	err := printImported(cmd, apitype.ImageImported{Images: []apitype.Image{{Name: "omerta.test/web:1", Digest: cliDigest}},
		Signer: "0242DB770DE91C78", Warnings: []string{"not signed by a trusted key; allowed by the user profile\x1b[2J"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "omerta.test/web:1") || strings.Contains(out.String(), "warning") {
		t.Errorf("stdout:\n%s", out.String())
	}
	e := errs.String()
	if !strings.Contains(e, "trusted key 0242DB770DE91C78") || !strings.Contains(e, "omerta: warning: not signed by a trusted key; allowed by the user profile") ||
		strings.Contains(e, "\x1b") {
		t.Errorf("stderr:\n%q", e)
	}
}

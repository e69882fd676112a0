package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/terminal"
)

func runProbe(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := runCmd(t, append([]string{"probe"}, args...)...)
	var ec exitCode
	switch {
	case err == nil:
		return out, 0
	case errors.As(err, &ec):
		return out, int(ec)
	}
	t.Fatalf("probe %v: %v", args, err)
	return "", 0
}

func TestProbeCommand(t *testing.T) {
	fixture := []string{"--root", "../../probe/testdata/firecracker-epyc", "--containerd", "-", "--config", "/nonexistent/omerta.yaml"}

	out, code := runProbe(t, append(fixture[:4:4], "--profile", "pro")...)
	if code != 2 || !strings.HasPrefix(out, "FAIL for profile pro:") {
		t.Errorf("exit %d, output:\n%s", code, out)
	}
	if !strings.Contains(out, "gpu.count") || !strings.Contains(out, "pro requires at least one NVIDIA GPU") {
		t.Errorf("the GPU failure is not shown:\n%s", out)
	}

	out, code = runProbe(t, append(fixture[:4:4], "--profile", "user", "--json")...)
	var doc struct {
		SchemaVersion string `json:"schema_version"`
		Verdict       struct {
			Profile, Status string
		} `json:"verdict"`
		Result struct {
			SchemaVersion string `json:"schema_version"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if code != 1 || doc.SchemaVersion != "omertaos.dev/probe/v1" || doc.Verdict.Profile != "user" || doc.Verdict.Status != "warn" {
		t.Errorf("exit %d, %+v", code, doc)
	}

	// The configured profile is used when --profile is absent; a --config
	// that does not exist is an error, not a silent default.
	if _, err := runProbeErr(fixture...); err == nil || !strings.Contains(err.Error(), "/nonexistent/omerta.yaml") {
		t.Errorf("missing --config: err = %v", err)
	}
	if _, err := runProbeErr(append(fixture[:4:4], "--profile", "gold")...); err == nil || !strings.Contains(err.Error(), `--profile: profile "gold" is not one of`) {
		t.Errorf("bad --profile: err = %v", err)
	}
}

func runProbeErr(args ...string) (string, error) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"probe"}, args...))
	err := root.ExecuteContext(context.Background())
	var ec exitCode
	if errors.As(err, &ec) {
		return out.String(), nil
	}
	return out.String(), err
}

// What the probe reads under --root is foreign: a CPU model or kernel
// release holding ESC, CR or a bidi override prints escaped, in the summary
// and in --json.
func TestProbeOutputEscapesForeignText(t *testing.T) {
	root := t.TempDir()
	if err := os.CopyFS(root, os.DirFS("../../probe/testdata/firecracker-epyc")); err != nil {
		t.Fatal(err)
	}
	cpuinfo := filepath.Join(root, "proc/cpuinfo")
	data, err := os.ReadFile(cpuinfo)
	if err != nil {
		t.Fatal(err)
	}
	evil := "AMD EPYC\x1b[2K\rPASS for profile pro\u202e\u009b2J"
	os.WriteFile(cpuinfo, bytes.ReplaceAll(data, []byte("AMD EPYC"), []byte(evil)), 0o644)
	fixture := []string{"--root", root, "--containerd", "-", "--profile", "user"}
	for _, args := range [][]string{fixture, append(fixture, "--json")} {
		out, _ := runProbe(t, args...)
		if !strings.Contains(out, "AMD EPYC") {
			t.Fatalf("%v: the CPU model is not shown:\n%s", args, out)
		}
		for i, r := range out {
			if r != '\n' && r != '\t' && terminal.Unsafe(r) {
				t.Fatalf("%v: output holds %U at byte %d:\n%q", args, r, i, out)
			}
		}
	}
}

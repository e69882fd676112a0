package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/omertaos/omertaos/appliance/registry"
)

const (
	registryOurs     = "../../registry/testdata/ours"
	registryUpstream = "../../registry/testdata/upstream"
	registryKeys     = "../../registry/testdata/keys"
)

// runRegistry runs `omerta registry args...` in process (the command is
// added to a root of its own until main's list names it) and returns the
// output and the exit status main would use.
func runRegistry(t *testing.T, args ...string) (string, int) {
	t.Helper()
	root := &cobra.Command{Use: "omerta", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newRegistryCmd())
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"registry"}, args...))
	err := root.ExecuteContext(context.Background())
	var ec exitCode
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ec):
		return out.String(), int(ec)
	default:
		return out.String() + "error: " + err.Error(), -1
	}
}

func registryCopy(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// registryTrust is a trust directory holding the fixture's test key.
func registryTrust(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join(registryKeys, "test.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "test.pub"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestRegistryVerifyCommand(t *testing.T) {
	trust := registryTrust(t)
	cases := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"signed fixture", []string{"verify", registryOurs, "--trust", trust}, 0, []string{
			"ok    registry.lock.json.minisig: signed by trusted key ID 0242DB770DE91C78",
			"ok    models/custom/local-echo.yaml: integrity.signature: signed by trusted key ID",
			"8 ok, 0 warnings, 0 failures: VERIFIED"}},
		{"untrusted key", []string{"verify", registryOurs, "--trust", t.TempDir()}, 1, []string{
			"FAIL  registry.lock.json.minisig: missing-public-key: signed by key ID 0242DB770DE91C78, which is not in the trust directory (it trusts no key)",
			"DOES NOT VERIFY"}},
		{"missing trust directory", []string{"verify", registryOurs, "--trust", filepath.Join(t.TempDir(), "nope")}, 1, []string{
			"warn  trust: missing-public-key: the trust directory", "does not exist"}},
		{"upstream", []string{"verify", registryUpstream, "--trust", trust}, 1, []string{
			"FAIL  registry.lock.json.minisig: unsigned",
			"FAIL  models/custom/local-echo.yaml: missing-from-lock",
			`FAIL  models/openai/gpt-4.5.yaml: integrity.signature: placeholder-signature: "minisign:ABC123" is a placeholder`,
			"FAIL  models/custom/local-echo.yaml: integrity.sha256: placeholder-digest",
			"FAIL  services/workflow/n8n.yaml: missing-file",
			"ok    models/openai/gpt-4.5.yaml: sha256 77817e60",
			"6 ok, 1 warnings, 22 failures: DOES NOT VERIFY"}},
		{"not a directory", []string{"verify", filepath.Join(registryOurs, "REGISTRY.yaml"), "--trust", trust}, -1, []string{"error: opening registry"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, code := runRegistry(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", code, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestRegistryVerifyJSON(t *testing.T) {
	out, code := runRegistry(t, "verify", "--json", registryUpstream, "--trust", registryTrust(t))
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	var r registry.Result
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if r.Counts.Failures != 22 || r.Signature.Code != registry.CodeUnsigned || len(r.Findings) != 29 {
		t.Fatalf("%+v", r.Counts)
	}
}

// TestRegistryVerifyEscapes: a name holding terminal controls reaches the
// terminal escaped.
func TestRegistryVerifyEscapes(t *testing.T) {
	dir := registryCopy(t, registryOurs)
	idx := filepath.Join(dir, "REGISTRY.yaml")
	data, _ := os.ReadFile(idx)
	data = bytes.Replace(data, []byte("  agents:\n"), []byte("  agents:\n    - path: \"agents/\\e[2J\\u202eevil.yaml\"\n"), 1)
	os.WriteFile(idx, data, 0o644)
	out, code := runRegistry(t, "verify", dir, "--trust", registryTrust(t))
	if code != 1 || strings.ContainsRune(out, 0x1b) || strings.ContainsRune(out, 0x202e) {
		t.Fatalf("exit %d, raw controls in:\n%q", code, out)
	}
	if !strings.Contains(out, `catalog.agents[0].path: invalid-manifest: holds a control character: "agents/\x1b[2J\u202eevil.yaml"`) {
		t.Fatalf("the refusal does not name the path:\n%s", out)
	}
}

// TestRegistryLockAndSign: edit a manifest, lock, sign, verify; minisign
// -V accepts the signature when it is installed.
func TestRegistryLockAndSign(t *testing.T) {
	dir := registryCopy(t, registryOurs)
	trust := registryTrust(t)
	key := filepath.Join(registryKeys, "test.key")
	p := filepath.Join(dir, "agents/web.yaml")
	data, _ := os.ReadFile(p)
	os.WriteFile(p, bytes.Replace(data, []byte("Web sample agent"), []byte("Web sample agent v2"), 1), 0o644)

	if out, code := runRegistry(t, "sign", "--key", key, dir); code != 1 || !strings.Contains(out, "agents/web.yaml: digest-mismatch") {
		t.Fatalf("sign of a registry that does not match its lock: exit %d\n%s", code, out)
	}
	if out, code := runRegistry(t, "lock", dir); code != 0 || !strings.Contains(out, "5 entries") {
		t.Fatalf("lock: exit %d\n%s", code, out)
	}
	if out, code := runRegistry(t, "verify", dir, "--trust", trust); code != 1 || !strings.Contains(out, "bad-signature") {
		t.Fatalf("verify before signing: exit %d\n%s", code, out)
	}
	out, code := runRegistry(t, "sign", "--key", key, "--trust", trust, dir)
	if code != 0 || !strings.Contains(out, "with key ID 0242DB770DE91C78") {
		t.Fatalf("sign: exit %d\n%s", code, out)
	}
	if out, code := runRegistry(t, "verify", dir, "--trust", trust); code != 0 {
		t.Fatalf("verify after signing: exit %d\n%s", code, out)
	}
	if out, code := runRegistry(t, "sign", "--key", key, "--trusted-comment", "release 7", dir); code != 0 {
		t.Fatalf("sign with a comment: exit %d\n%s", code, out)
	}
	if out, _ := runRegistry(t, "verify", dir, "--trust", trust); !strings.Contains(out, `trusted comment "release 7"`) {
		t.Fatalf("comment not shown:\n%s", out)
	}
	if bin, err := exec.LookPath("minisign"); err == nil {
		cmd := exec.Command(bin, "-V", "-p", filepath.Join(registryKeys, "test.pub"), "-m", filepath.Join(dir, registry.LockFile))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("minisign -V: %v\n%s", err, out)
		}
	} else {
		t.Log("minisign is not installed: the signature was not checked with it")
	}
}

func TestRegistrySignRefusals(t *testing.T) {
	dir := registryCopy(t, registryOurs)
	if out, code := runRegistry(t, "sign", dir); code != -1 || !strings.Contains(out, `"key" not set`) {
		t.Fatalf("no --key: exit %d\n%s", code, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.key")
	os.WriteFile(bad, []byte("untrusted comment: x\nnot base64\n"), 0o600)
	if out, code := runRegistry(t, "sign", "--key", bad, dir); code != -1 || !strings.Contains(out, "not a minisign secret key") {
		t.Fatalf("bad key: exit %d\n%s", code, out)
	}
	if out, code := runRegistry(t, "sign", "--key", "/dev/zero", dir); code != -1 || !strings.Contains(out, "not a regular file") {
		t.Fatalf("/dev/zero as key: exit %d\n%s", code, out)
	}
	if out, code := runRegistry(t, "sign", "--key", filepath.Join(registryKeys, "test.key"), "--trusted-comment", "two\nlines", dir); code != -1 || !strings.Contains(out, "--trusted-comment") {
		t.Fatalf("two-line comment: exit %d\n%s", code, out)
	}
	if out, code := runRegistry(t, "lock", registryUpstream); code != 1 || !strings.Contains(out, "not locked") {
		t.Fatalf("lock of upstream: exit %d\n%s", code, out)
	}
}

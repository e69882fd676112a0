package registry

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"aead.dev/minisign"
)

// edit replaces old with new in dir/rel, failing when old is not there (a
// tampering test that changes nothing proves nothing).
func edit(t *testing.T, dir, rel, old, new string) {
	t.Helper()
	p := filepath.Join(dir, rel)
	data := readFile(t, p)
	if !bytes.Contains(data, []byte(old)) {
		t.Fatalf("%s does not contain %q", rel, old)
	}
	writeFile(t, p, bytes.Replace(data, []byte(old), []byte(new), 1))
}

// resign signs dir's lock again with the test key, so that a test sees
// only the finding it is about, not the lock's broken signature too.
func resign(t *testing.T, dir string) {
	t.Helper()
	_, priv := testKey(t, "test")
	lock := readFile(t, filepath.Join(dir, LockFile))
	sig, err := SignWithComment(lock, priv, lockComment)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, SignatureFile), sig)
}

// relock rebuilds the lock (keeping the image digest) and re-signs it.
func relock(t *testing.T, dir string) {
	t.Helper()
	lockData := readFile(t, filepath.Join(dir, LockFile))
	old, _ := ParseLock(lockData, Limits{})
	lock, fs, err := buildLockUnchecked(t, dir)
	if err != nil {
		t.Fatalf("relock: %v %v", err, fs)
	}
	for i := range lock.Entries {
		for _, o := range old.Entries {
			if o.Path == lock.Entries[i].Path {
				lock.Entries[i].Digest = o.Digest
			}
		}
	}
	data, _ := MarshalLock(lock)
	writeFile(t, filepath.Join(dir, LockFile), data)
	resign(t, dir)
}

// buildLockUnchecked hashes every file the lock names, whatever its
// content, so that a test can plant a bad manifest behind a good lock.
func buildLockUnchecked(t *testing.T, dir string) (*Lock, []Finding, error) {
	t.Helper()
	old, _ := ParseLock(readFile(t, filepath.Join(dir, LockFile)), Limits{})
	for i, e := range old.Entries {
		data := readFile(t, filepath.Join(dir, e.Path))
		old.Entries[i].SHA256 = sha256Hex(data)
		n := int64(len(data))
		old.Entries[i].Size = &n
	}
	return old, nil, nil
}

// setKeyID rewrites the key ID inside a .minisig file's signature line
// (the trusted comment and the signatures stay as they are).
func setKeyID(t *testing.T, dir string, id uint64) {
	t.Helper()
	p := filepath.Join(dir, SignatureFile)
	lines := strings.Split(string(readFile(t, p)), "\n")
	raw, err := base64.StdEncoding.DecodeString(lines[1])
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint64(raw[2:10], id)
	lines[1] = base64.StdEncoding.EncodeToString(raw)
	writeFile(t, p, []byte(strings.Join(lines, "\n")))
}

func flipSignatureByte(t *testing.T, dir string, line int) {
	t.Helper()
	p := filepath.Join(dir, SignatureFile)
	lines := strings.Split(string(readFile(t, p)), "\n")
	raw, err := base64.StdEncoding.DecodeString(lines[line])
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-1] ^= 0x01
	lines[line] = base64.StdEncoding.EncodeToString(raw)
	writeFile(t, p, []byte(strings.Join(lines, "\n")))
}

// want is one finding a tampered registry must produce.
type want struct {
	subject, field string
	code           Code
	detail         string // a substring of the detail, when it matters
}

// TestTampering changes one thing at a time in the signed fixture and
// requires the finding that names it; every case must also fail Verify.
func TestTampering(t *testing.T) {
	otherPub, _ := testKey(t, "other")
	testPub, _ := testKey(t, "test")
	cases := []struct {
		name   string
		tamper func(t *testing.T, dir string)
		trust  *Keyring // nil: the test key
		want   []want
		// signatureOK: the lock's own signature still verifies.
		signatureOK bool
	}{
		{"file content", func(t *testing.T, dir string) {
			edit(t, dir, "agents/web.yaml", "Web sample agent", "Web sample agent!")
		}, nil, []want{{"agents/web.yaml", "", CodeDigestMismatch, "the lock says 813d7329"}}, true},
		{"lock entry digest", func(t *testing.T, dir string) {
			edit(t, dir, LockFile, "813d732966f19d804e7e06dfa2528c444d415e67cadddd789c9cae153766df39", "813d732966f19d804e7e06dfa2528c444d415e67cadddd789c9cae153766df3a")
		}, nil, []want{
			{SignatureFile, "", CodeBadSignature, "does not match the content"},
			{"agents/web.yaml", "", CodeDigestMismatch, ""},
		}, false},
		{"lock entry digest re-signed", func(t *testing.T, dir string) {
			edit(t, dir, LockFile, "813d732966f19d804e7e06dfa2528c444d415e67cadddd789c9cae153766df39", "813d732966f19d804e7e06dfa2528c444d415e67cadddd789c9cae153766df3a")
			resign(t, dir)
		}, nil, []want{{"agents/web.yaml", "", CodeDigestMismatch, ""}}, true},
		{"lock entry removed", func(t *testing.T, dir string) {
			edit(t, dir, LockFile, `{
      "kind": "agent",
      "name": "web",
      "path": "agents/web.yaml",
      "sha256": "813d732966f19d804e7e06dfa2528c444d415e67cadddd789c9cae153766df39",
      "size": 464
    },
    `, "")
			resign(t, dir)
		}, nil, []want{{"agents/web.yaml", "", CodeMissingFromLock, "catalog.agents[0]"}}, true},
		{"lock entry path", func(t *testing.T, dir string) {
			edit(t, dir, LockFile, `"path": "agents/web.yaml"`, `"path": "agents/other.yaml"`)
			resign(t, dir)
		}, nil, []want{
			{"agents/other.yaml", "", CodeMissingFile, ""},
			{"agents/web.yaml", "", CodeMissingFromLock, ""},
		}, true},
		{"lock entry name", func(t *testing.T, dir string) {
			edit(t, dir, LockFile, `"name": "web",
      "path": "agents/web.yaml"`, `"name": "webx",
      "path": "agents/web.yaml"`)
			resign(t, dir)
		}, nil, []want{{"agents/web.yaml", "name", CodeInvalidManifest, `the manifest names "web", the lock "webx"`}}, true},
		{"lock entry kind", func(t *testing.T, dir string) {
			edit(t, dir, LockFile, `"kind": "agent"`, `"kind": "service"`)
			resign(t, dir)
		}, nil, []want{{IndexFile, "catalog.agents[0]", CodeInvalidManifest, "the lock says service"}}, true},
		{"lock entry size", func(t *testing.T, dir string) {
			edit(t, dir, LockFile, `"size": 464`, `"size": 465`)
			resign(t, dir)
		}, nil, []want{{"agents/web.yaml", "size", CodeInvalidManifest, "465"}}, true},
		{"lock entry placeholder digest", func(t *testing.T, dir string) {
			edit(t, dir, LockFile, "813d732966f19d804e7e06dfa2528c444d415e67cadddd789c9cae153766df39", strings.Repeat("0", 64))
			resign(t, dir)
		}, nil, []want{{"agents/web.yaml", "", CodePlaceholderDigest, "813d732966f19d804e7e06dfa2528c444d415e67cadddd789c9cae153766df39"}}, true},
		{"image digest in lock", func(t *testing.T, dir string) {
			edit(t, dir, LockFile, `"digest": "sha256:4f5e`, `"digest": "sha256:4f5`)
			resign(t, dir)
		}, nil, []want{{LockFile, "entries[2].digest", CodeInvalidManifest, "63 hex digits"}}, true},
		{"signature content byte", func(t *testing.T, dir string) {
			flipSignatureByte(t, dir, 1)
		}, nil, []want{{SignatureFile, "", CodeBadSignature, "does not match the content"}}, false},
		{"global signature byte", func(t *testing.T, dir string) {
			flipSignatureByte(t, dir, 3)
		}, nil, []want{{SignatureFile, "", CodeBadSignature, "trusted comment was changed"}}, false},
		{"trusted comment", func(t *testing.T, dir string) {
			edit(t, dir, SignatureFile, "timestamp:1764547200", "timestamp:1764547201")
		}, nil, []want{{SignatureFile, "", CodeBadSignature, "trusted comment was changed"}}, false},
		{"key ID unknown", func(t *testing.T, dir string) {
			setKeyID(t, dir, 0x0123456789abcdef)
		}, nil, []want{{SignatureFile, "", CodeMissingPublicKey, "0123456789ABCDEF"}}, false},
		{"key ID of another trusted key", func(t *testing.T, dir string) {
			setKeyID(t, dir, otherPub.ID())
		}, NewKeyring(testPub, otherPub), []want{{SignatureFile, "", CodeBadSignature, "does not match"}}, false},
		{"signed by an untrusted key", func(t *testing.T, dir string) {}, NewKeyring(otherPub),
			[]want{{SignatureFile, "", CodeMissingPublicKey, "it trusts " + KeyID(otherPub.ID())}}, false},
		{"no trusted key at all", func(t *testing.T, dir string) {}, NewKeyring(),
			[]want{{SignatureFile, "", CodeMissingPublicKey, "it trusts no key"}}, false},
		{"signature removed", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, SignatureFile))
		}, nil, []want{{SignatureFile, "", CodeUnsigned, ""}}, false},
		{"placeholder signature", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, SignatureFile), []byte("minisign:ABC123\n"))
		}, nil, []want{{SignatureFile, "", CodePlaceholderSignature, `"minisign:ABC123"`}}, false},
		{"truncated signature", func(t *testing.T, dir string) {
			data := readFile(t, filepath.Join(dir, SignatureFile))
			writeFile(t, filepath.Join(dir, SignatureFile), data[:len(data)/2])
		}, nil, []want{{SignatureFile, "", CodeBadSignature, "not a minisign signature"}}, false},
		{"artifact content", func(t *testing.T, dir string) {
			edit(t, dir, "files/local-echo.bin", "block 7", "block 8")
		}, nil, []want{
			{"files/local-echo.bin", "", CodeDigestMismatch, ""},
			{"models/custom/local-echo.yaml", "integrity.sha256", CodeDigestMismatch, ""},
			{"models/custom/local-echo.yaml", "integrity.signature", CodeBadSignature, "does not match the content"},
		}, true},
		{"manifest integrity digest", func(t *testing.T, dir string) {
			edit(t, dir, "models/custom/local-echo.yaml", `sha256: "ac5b`, `sha256: "ac5c`)
			relock(t, dir)
		}, nil, []want{{"models/custom/local-echo.yaml", "integrity.sha256", CodeDigestMismatch, ""}}, true},
		{"manifest integrity placeholder digest", func(t *testing.T, dir string) {
			edit(t, dir, "models/custom/local-echo.yaml", `sha256: "ac5bac6d1dc784987ac76a69eed58d2e9ad0a0510f069281658e3a28cf9168bf"`, `sha256: "`+strings.Repeat("0", 64)+`"`)
			relock(t, dir)
		}, nil, []want{{"models/custom/local-echo.yaml", "integrity.sha256", CodePlaceholderDigest, "all zeros"}}, true},
		{"manifest signature trusted comment", func(t *testing.T, dir string) {
			edit(t, dir, "models/custom/local-echo.yaml", "file:local-echo.bin", "file:other.bin")
			relock(t, dir)
		}, nil, []want{{"models/custom/local-echo.yaml", "integrity.signature", CodeBadSignature, "trusted comment"}}, true},
		{"manifest placeholder signature", func(t *testing.T, dir string) {
			data := string(readFile(t, filepath.Join(dir, "models/custom/local-echo.yaml")))
			i, j := strings.Index(data, "  signature: |"), strings.Index(data, "resources:")
			writeFile(t, filepath.Join(dir, "models/custom/local-echo.yaml"), []byte(data[:i]+"  signature: \"minisign:ABC123\"\n"+data[j:]))
			relock(t, dir)
		}, nil, []want{{"models/custom/local-echo.yaml", "integrity.signature", CodePlaceholderSignature, `"minisign:ABC123"`}}, true},
		{"agent image digest placeholder", func(t *testing.T, dir string) {
			edit(t, dir, "agents/web.yaml", "sha256:4f5e8a1c0f1b1a3c7d2e9b6a5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d", "sha256:"+strings.Repeat("0", 64))
			relock(t, dir)
		}, nil, []want{{"agents/web.yaml", "spec.image.digest", CodePlaceholderDigest, ""}}, true},
		{"manifest invalid field", func(t *testing.T, dir string) {
			edit(t, dir, "models/openai/gpt-4o-mini.yaml", "context_tokens: 128000", "context_tokens: lots")
			relock(t, dir)
		}, nil, []want{{"models/openai/gpt-4o-mini.yaml", "resources.context_tokens", CodeInvalidManifest, "must be a number"}}, true},
		{"catalog entry outside the lock", func(t *testing.T, dir string) {
			edit(t, dir, IndexFile, "  agents:\n", "  agents:\n    - path: agents/extra.yaml\n")
			writeFile(t, filepath.Join(dir, "agents/extra.yaml"), []byte("apiVersion: omertaos.dev/v1\nkind: Agent\nmetadata: {id: extra, name: Extra}\n"))
		}, nil, []want{{"agents/extra.yaml", "", CodeMissingFromLock, "catalog.agents[0]"}}, true},
		{"symlink out of the registry", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "files/local-echo.bin")
			os.Remove(p)
			if err := os.Symlink("/etc/passwd", p); err != nil {
				t.Fatal(err)
			}
		}, nil, []want{
			{"files/local-echo.bin", "", CodeRefusedFile, `leads outside the registry (to "/etc/passwd")`},
			{"models/custom/local-echo.yaml", "download.url", CodeRefusedFile, "leads outside"},
		}, true},
		{"relative symlink out of the registry", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "agents/web.yaml")
			os.Remove(p)
			if err := os.Symlink("../../../../../../etc/hostname", p); err != nil {
				t.Fatal(err)
			}
		}, nil, []want{{"agents/web.yaml", "", CodeRefusedFile, "leads outside the registry"}}, true},
		{"fifo", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "images/web.oci.tar")
			os.Remove(p)
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
		}, nil, []want{{"images/web.oci.tar", "", CodeRefusedFile, "FIFO"}}, true},
		{"directory", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "images/web.oci.tar")
			os.Remove(p)
			os.Mkdir(p, 0o755)
		}, nil, []want{{"images/web.oci.tar", "", CodeRefusedFile, "directory"}}, true},
		{"catalog path leaves the registry", func(t *testing.T, dir string) {
			edit(t, dir, IndexFile, "path: agents/web.yaml", "path: ../web.yaml")
		}, nil, []want{{IndexFile, "catalog.agents[0].path", CodeInvalidManifest, `leaves the registry`}}, true},
		{"lock path absolute", func(t *testing.T, dir string) {
			edit(t, dir, LockFile, `"path": "agents/web.yaml"`, `"path": "/etc/passwd"`)
			resign(t, dir)
		}, nil, []want{{LockFile, "entries[0].path", CodeInvalidManifest, "absolute"}}, true},
		{"lock path twice", func(t *testing.T, dir string) {
			edit(t, dir, LockFile, `"path": "files/local-echo.bin"`, `"path": "agents/web.yaml"`)
			resign(t, dir)
		}, nil, []want{{LockFile, "entries[1].path", CodeInvalidManifest, "also the path of entries[0]"}}, true},
		{"lock key repeated", func(t *testing.T, dir string) {
			edit(t, dir, LockFile, `"size": 464`, `"size": 464, "size": 1`)
			resign(t, dir)
		}, nil, []want{{LockFile, "", CodeInvalidManifest, "given twice"}}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, trust := ours(t)
			if tc.trust != nil {
				trust = tc.trust
			}
			tc.tamper(t, dir)
			done := make(chan *Result, 1)
			go func() { done <- verify(t, dir, trust) }()
			var r *Result
			select {
			case r = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Verify blocked")
			}
			if r.OK() {
				t.Fatalf("tampered registry verifies:\n%s", dump(r))
			}
			for _, w := range tc.want {
				f := mustFind(t, r, w.subject, w.field, w.code)
				if !strings.Contains(f.Detail, w.detail) {
					t.Errorf("%s: detail %q does not say %q", w.code, f.Detail, w.detail)
				}
				if !f.Failed() {
					t.Errorf("%s is not a failure", f)
				}
			}
			if got := r.Signature.Code == CodeOK; got != tc.signatureOK {
				t.Errorf("signature ok = %v, want %v (%s)", got, tc.signatureOK, r.Signature.Detail)
			}
		})
	}
}

// TestUntrustedCommentIsNotSigned: minisign's untrusted comment is not
// covered by the signature, so changing it changes nothing, and nothing
// from it is reported as trusted.
func TestUntrustedCommentIsNotSigned(t *testing.T) {
	dir, trust := ours(t)
	edit(t, dir, SignatureFile, "untrusted comment: signature from omerta registry sign", "untrusted comment: TRUSTED BY EVERYONE")
	r := verify(t, dir, trust)
	if !r.OK() || strings.Contains(r.Signature.Detail, "EVERYONE") {
		t.Fatalf("r.OK=%v, signature %+v", r.OK(), r.Signature)
	}
}

// TestLegacySignature: a non-prehashed ("Ed") signature, which old
// minisign versions made, still verifies.
func TestLegacySignature(t *testing.T) {
	dir, trust := ours(t)
	_, priv := testKey(t, "test")
	lock := readFile(t, filepath.Join(dir, LockFile))
	writeFile(t, filepath.Join(dir, SignatureFile), minisign.SignWithComments(priv, lock, "legacy", "legacy"))
	r := verify(t, dir, trust)
	if !r.OK() || r.Signature.Code != CodeOK {
		t.Fatalf("legacy signature: %+v\n%s", r.Signature, dump(r))
	}
}

package registry

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"aead.dev/minisign"
	"golang.org/x/crypto/blake2b"
	"golang.org/x/crypto/scrypt"
)

// minisignBin returns Debian's minisign, or skips: the interop tests need
// the real tool (package minisign; scripts/install-deps.sh test installs it
// so that CI runs them).
func minisignBin(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("minisign")
	if err != nil {
		t.Skip("minisign is not installed (apt-get install minisign): the interop tests with the real tool are skipped")
	}
	return p
}

func runMinisign(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, minisignBin(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// minisignKeys makes a key pair with minisign -G -W (no password) in a
// new trust directory; it returns that directory and the secret key path.
func minisignKeys(t *testing.T) (trustDir, secret string) {
	t.Helper()
	trustDir = t.TempDir()
	secret = filepath.Join(t.TempDir(), "minisign.key")
	if out, err := runMinisign(t, "", "-G", "-W", "-p", filepath.Join(trustDir, "minisign.pub"), "-s", secret); err != nil {
		t.Fatalf("minisign -G: %v\n%s", err, out)
	}
	return trustDir, secret
}

// TestInteropMinisignSignsWeVerify: a lock signed by minisign -S (prehashed,
// and legacy with -l) verifies here against the key minisign -G wrote; the
// same signature over a changed lock does not.
func TestInteropMinisignSignsWeVerify(t *testing.T) {
	trustDir, secret := minisignKeys(t)
	// The fixture's model artifact is signed by the test key.
	writeFile(t, filepath.Join(trustDir, "test.pub"), readFile(t, filepath.Join(keysDir, "test.pub")))
	trust, err := LoadTrust(trustDir)
	if err != nil || trust.Len() != 2 {
		t.Fatalf("LoadTrust: %v %+v", err, trust)
	}
	for _, mode := range [][]string{nil, {"-l"}, {"-t", "release 2025-12 \u00e9t\u00e9"}} {
		dir, _ := ours(t)
		args := append([]string{"-S", "-s", secret, "-m", filepath.Join(dir, LockFile)}, mode...)
		if out, err := runMinisign(t, "", args...); err != nil {
			t.Fatalf("minisign %v: %v\n%s", args, err, out)
		}
		r := verify(t, dir, trust)
		// REGISTRY.yaml names the test key as its own: a warning now.
		if !r.OK() || r.Signature.Code != CodeOK || r.Signature.KeyFile != "minisign.pub" {
			t.Fatalf("minisign %v: %+v\n%s", mode, r.Signature, dump(r))
		}
		if len(mode) == 2 && !strings.Contains(r.Signature.TrustedComment, "release 2025-12") {
			t.Errorf("trusted comment %s", r.Signature.TrustedComment)
		}
		edit(t, dir, LockFile, `"size": 464`, `"size": 463`)
		if r := verify(t, dir, trust); r.Signature.Code != CodeBadSignature {
			t.Fatalf("minisign %v, lock changed: %+v", mode, r.Signature)
		}
	}
}

// TestInteropWeSignMinisignVerifies: Sign with the secret key minisign -G
// wrote; minisign -V accepts it, also with -H (prehashed required), and
// refuses it once the lock changes. The fixture's own signature, made with
// a key this package generated, is accepted by minisign -V too.
func TestInteropWeSignMinisignVerifies(t *testing.T) {
	trustDir, secret := minisignKeys(t)
	priv, err := ParsePrivateKey(readFile(t, secret), "")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := ours(t)
	lockPath := filepath.Join(dir, LockFile)
	writeFile(t, filepath.Join(dir, SignatureFile), Sign(readFile(t, lockPath), priv))
	pub := filepath.Join(trustDir, "minisign.pub")
	for _, extra := range [][]string{nil, {"-H"}} {
		args := append([]string{"-V", "-p", pub, "-m", lockPath}, extra...)
		out, err := runMinisign(t, "", args...)
		if err != nil {
			t.Fatalf("minisign %v refuses our signature: %v\n%s", args, err, out)
		}
		if !strings.Contains(out, "Signature and comment signature verified") || !strings.Contains(out, "file:registry.lock.json\thashed") {
			t.Fatalf("minisign said:\n%s", out)
		}
	}
	data := readFile(t, lockPath)
	writeFile(t, lockPath, bytes.Replace(data, []byte("agent"), []byte("agenT"), 1))
	if out, err := runMinisign(t, "", "-V", "-p", pub, "-m", lockPath); err == nil {
		t.Fatalf("minisign accepts our signature over a changed lock:\n%s", out)
	}
	fixture := copyTree(t, oursDir)
	if out, err := runMinisign(t, "", "-V", "-p", filepath.Join(keysDir, "test.pub"), "-m", filepath.Join(fixture, LockFile)); err != nil {
		t.Fatalf("minisign refuses the fixture's signature: %v\n%s", err, out)
	}
}

// TestInteropEncryptedKey: a secret key minisign -G encrypted with a
// password signs here once the password is given. minisign's scrypt
// parameters take a gigabyte and, on a shared CI core, about 30 s per
// decryption, so this runs only with OMERTA_SLOW_TESTS=1;
// TestEncryptedKey covers the same code with cheap parameters.
func TestInteropEncryptedKey(t *testing.T) {
	if os.Getenv("OMERTA_SLOW_TESTS") != "1" {
		t.Skip("set OMERTA_SLOW_TESTS=1: decrypting a key minisign -G encrypted takes 1 GiB and tens of seconds of scrypt")
	}
	dir := t.TempDir()
	pub, sec := filepath.Join(dir, "k.pub"), filepath.Join(dir, "k.key")
	if out, err := runMinisign(t, "secret words\nsecret words\n", "-G", "-p", pub, "-s", sec); err != nil {
		t.Fatalf("minisign -G: %v\n%s", err, out)
	}
	data := readFile(t, sec)
	if _, err := ParsePrivateKey(data, ""); err == nil {
		t.Fatal("an encrypted key was used without its password")
	}
	if _, err := ParsePrivateKey(data, "wrong"); err == nil {
		t.Fatal("an encrypted key was decrypted with the wrong password")
	}
	priv, err := ParsePrivateKey(data, "secret words")
	if err != nil {
		t.Fatal(err)
	}
	msg := filepath.Join(dir, LockFile)
	writeFile(t, msg, []byte("{}\n"))
	writeFile(t, msg+".minisig", Sign([]byte("{}\n"), priv))
	if out, err := runMinisign(t, "", "-V", "-p", pub, "-m", msg); err != nil {
		t.Fatalf("minisign -V: %v\n%s", err, out)
	}
}

// cheapEncryptedKey encrypts priv as minisign does (scrypt keystream over
// key ID, key and a BLAKE2b-256 tag), with scrypt's smallest parameters.
func cheapEncryptedKey(t *testing.T, priv minisign.PrivateKey, password string) []byte {
	t.Helper()
	text, _ := priv.MarshalText()
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(strings.SplitN(string(text), "\n", 2)[1]))
	if err != nil || len(raw) != 158 {
		t.Fatalf("unencrypted key layout: %v %d", err, len(raw))
	}
	const ops, mem = 1 << 15, 1 << 20              // N=1024, r=8, p=1
	binary.LittleEndian.PutUint16(raw[2:], 0x6353) // "Sc"
	salt := raw[6:38]
	copy(salt, bytes.Repeat([]byte{7}, 32))
	binary.LittleEndian.PutUint64(raw[38:], ops)
	binary.LittleEndian.PutUint64(raw[46:], mem)
	plain := append([]byte(nil), raw[54:126]...)
	msg := append([]byte{0x45, 0x64}, plain...)
	tag := blake2b.Sum256(msg)
	stream, err := scrypt.Key([]byte(password), salt, 1024, 8, 1, 104)
	if err != nil {
		t.Fatal(err)
	}
	ct := append(plain, tag[:]...)
	for i := range ct {
		ct[i] ^= stream[i]
	}
	copy(raw[54:], ct)
	return []byte("untrusted comment: minisign encrypted secret key\n" + base64.StdEncoding.EncodeToString(raw) + "\n")
}

func TestEncryptedKey(t *testing.T) {
	pub, priv := testKey(t, "test")
	data := cheapEncryptedKey(t, priv, "pw")
	if !minisign.IsEncrypted(data) {
		t.Fatal("not an encrypted key")
	}
	for _, pw := range []string{"", "wrong"} {
		if _, err := ParsePrivateKey(data, pw); !errors.Is(err, ErrInvalid) {
			t.Fatalf("password %q: %v", pw, err)
		}
	}
	got, err := ParsePrivateKey(data, "pw")
	if err != nil || got.ID() != pub.ID() {
		t.Fatalf("%v %X", err, got.ID())
	}
	sig := Sign([]byte("x"), got)
	if c := VerifySignature([]byte("x"), sig, NewKeyring(pub)); c.Code != CodeOK {
		t.Fatalf("%+v", c)
	}
}

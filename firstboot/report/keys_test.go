package report

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"

	"aead.dev/minisign"
)

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKeyFingerprint(t *testing.T) {
	pub := testKey(t).Public().(ed25519.PublicKey)
	fp := KeyFingerprint(pub)
	if !strings.HasPrefix(fp, "SHA256:") || !hexSHA256.MatchString(fp[7:]) {
		t.Fatalf("fingerprint %q", fp)
	}
	if KeyFingerprint(otherKey().Public().(ed25519.PublicKey)) == fp {
		t.Fatal("two keys share a fingerprint")
	}
}

func TestParsePublicKey(t *testing.T) {
	pub := testKey(t).Public().(ed25519.PublicKey)
	pemKey, err := EncodePublicKeyPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	// A minisign key line is base64("Ed" || key id || key).
	ms := base64.StdEncoding.EncodeToString(append([]byte("Ed\x01\x02\x03\x04\x05\x06\x07\x08"), pub...))
	var check minisign.PublicKey
	if err := check.UnmarshalText([]byte(ms)); err != nil {
		t.Fatalf("minisign does not accept our test key line: %v", err)
	}
	good := map[string][]byte{
		"base64":               EncodePublicKey(pub),
		"base64 with CRLF":     []byte(strings.TrimSpace(string(EncodePublicKey(pub))) + "\r\n"),
		"pem":                  pemKey,
		"minisign file":        []byte("untrusted comment: minisign public key 807060504030201\n" + ms + "\n"),
		"minisign line":        []byte(ms),
		"testdata signing.pub": readFile(t, "testdata/signing.pub"),
	}
	for name, in := range good {
		got, err := ParsePublicKey(in)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !bytes.Equal(got, pub) {
			t.Errorf("%s: parsed another key", name)
		}
	}

	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	bad := map[string]struct {
		in   []byte
		want string
	}{
		"empty":         {nil, "empty"},
		"short":         {[]byte(base64.StdEncoding.EncodeToString(pub[:31])), "31 bytes"},
		"not base64":    {[]byte("not a key"), "not base64"},
		"ecdsa pem":     {pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), "want Ed25519"},
		"private pem":   {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), `"PRIVATE KEY"`},
		"two lines":     {[]byte("a\nb\n"), "single base64 line"},
		"bad minisign":  {[]byte("untrusted comment: x\nRWQ=\n"), "minisign"},
		"minisign only": {[]byte("untrusted comment: x"), "no key line"},
	}
	for name, tc := range bad {
		_, err := ParsePublicKey(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, tc.want)
		}
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := readTestFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

package report

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"aead.dev/minisign"
)

// ParsePublicKey reads an Ed25519 public key in any of the forms an auditor
// is likely to be handed: the raw 32 bytes in base64 (what signing.pub and
// the report hold), a PEM "PUBLIC KEY" block (PKIX, as `openssl pkey -pubout`
// writes), or a minisign public key (the file or just its base64 line).
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	text := bytes.TrimSpace(data)
	if len(text) == 0 {
		return nil, errors.New("public key: empty")
	}
	if block, _ := pem.Decode(text); block != nil {
		if block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("public key: PEM block is %q, want \"PUBLIC KEY\"", block.Type)
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("public key: parsing PEM: %w", err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("public key: PEM holds a %T, want Ed25519", k)
		}
		return pub, nil
	}
	lines := strings.Split(string(text), "\n")
	if strings.HasPrefix(lines[0], "untrusted comment:") {
		if len(lines) < 2 {
			return nil, errors.New("public key: minisign file has no key line")
		}
		return parseMinisign(strings.TrimSpace(lines[1]))
	}
	if len(lines) != 1 {
		return nil, errors.New("public key: not PEM, minisign or a single base64 line")
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(lines[0])
	if err != nil {
		return nil, fmt.Errorf("public key: not base64: %w", err)
	}
	switch len(raw) {
	case ed25519.PublicKeySize:
		return ed25519.PublicKey(raw), nil
	case 42: // "Ed" + key id + key: a bare minisign key line
		return parseMinisign(lines[0])
	}
	return nil, fmt.Errorf("public key: %d bytes, want %d", len(raw), ed25519.PublicKeySize)
}

func parseMinisign(line string) (ed25519.PublicKey, error) {
	var pk minisign.PublicKey
	if err := pk.UnmarshalText([]byte(line)); err != nil {
		return nil, fmt.Errorf("public key: minisign: %w", err)
	}
	// minisign's signatures are over a BLAKE2b prehash, ours are plain
	// Ed25519; only the key itself is shared.
	// Its text form is base64("Ed" || 8-byte key id || 32-byte key).
	raw, err := base64.StdEncoding.DecodeString(line)
	if err != nil || len(raw) != 2+8+ed25519.PublicKeySize {
		return nil, errors.New("public key: minisign key line is not 42 bytes of base64")
	}
	return ed25519.PublicKey(raw[10:]), nil
}

// EncodePublicKey returns pub as the single base64 line that signing.pub and
// the report hold, with a final newline.
func EncodePublicKey(pub ed25519.PublicKey) []byte {
	return []byte(base64.StdEncoding.EncodeToString(pub) + "\n")
}

// EncodePublicKeyPEM returns pub as a PEM "PUBLIC KEY" block for OpenSSL.
func EncodePublicKeyPEM(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encoding public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

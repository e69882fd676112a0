package auth

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strings"
)

// Secrets handed out (API tokens, reset links) look like
// omt_<39 base32 characters>: a prefix that secret scanners can match, 160
// random bits, and a CRC-32 of them, so that a scanner (and omertad,
// before any lookup) can tell a real token from a look-alike.
const (
	TokenPrefix = "omt_" // API tokens
	ResetPrefix = "omr_" // reset links

	secretRandomBytes = 20
)

var secretEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

var secretBodyLen = secretEncoding.EncodedLen(secretRandomBytes + crc32.Size)

// SecretLen is the length of every token and reset secret: the prefix and
// 39 characters of base32 for 24 bytes.
const SecretLen = 4 + 39

func newSecret(prefix string) string {
	b := make([]byte, secretRandomBytes, secretRandomBytes+crc32.Size)
	rand.Read(b)
	b = binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
	return prefix + secretEncoding.EncodeToString(b)
}

// parseSecret checks that s is a well-formed secret with the given prefix:
// the length, the alphabet and the checksum.
func parseSecret(prefix, s string) error {
	if len(s) != len(prefix)+secretBodyLen || !strings.HasPrefix(s, prefix) {
		return fmt.Errorf("not a %s... secret of %d characters", prefix, len(prefix)+secretBodyLen)
	}
	body := s[len(prefix):]
	// Checked by hand: the decoder skips \r and \n, and would hand back
	// fewer bytes than a secret has.
	for i := 0; i < len(body); i++ {
		if c := body[i]; !('a' <= c && c <= 'z') && !('2' <= c && c <= '7') {
			return fmt.Errorf("not a %s... secret: not lower-case base32", prefix)
		}
	}
	b, err := secretEncoding.DecodeString(body)
	if err != nil || len(b) != secretRandomBytes+crc32.Size {
		return fmt.Errorf("not a %s... secret: not lower-case base32", prefix)
	}
	random, sum := b[:secretRandomBytes], binary.BigEndian.Uint32(b[secretRandomBytes:])
	if crc32.ChecksumIEEE(random) != sum {
		return fmt.Errorf("not a %s... secret: checksum does not match", prefix)
	}
	// base32 of 24 bytes leaves 3 unused bits in the last character; only
	// the encoding of what was decoded is accepted, so one secret has one
	// spelling.
	if secretEncoding.EncodeToString(b) != body {
		return fmt.Errorf("not a %s... secret: not canonical base32", prefix)
	}
	return nil
}

package registry

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"aead.dev/minisign"
	"golang.org/x/crypto/blake2b"
)

// Sign signs lock (the bytes of registry.lock.json) with key in minisign's
// current format: prehashed Ed25519 (BLAKE2b-512), and the trusted comment
// minisign -S writes itself ("timestamp:<unix>\tfile:registry.lock.json\thashed"),
// so that minisign -Vm registry.lock.json -p KEY.pub accepts it.
func Sign(lock []byte, key minisign.PrivateKey) []byte {
	tc := "timestamp:" + strconv.FormatInt(time.Now().Unix(), 10) + "\tfile:" + LockFile + "\thashed"
	sig, _ := SignWithComment(lock, key, tc)
	return sig
}

// SignWithComment is Sign with the trusted comment given: one line of
// printable text, at most 1 KiB.
func SignWithComment(lock []byte, key minisign.PrivateKey, trustedComment string) ([]byte, error) {
	if reason := badText(trustedComment, 1024); reason != "" || strings.ContainsAny(trustedComment, "\n\r") {
		return nil, fmt.Errorf("trusted comment %s: must be one line of at most 1024 bytes: %w", quote(trustedComment), ErrInvalid)
	}
	r := minisign.NewReader(bytes.NewReader(lock))
	if _, err := io.Copy(io.Discard, r); err != nil {
		panic(err) // a bytes.Reader does not fail
	}
	return r.SignWithComments(key, trustedComment, "signature from omerta registry sign, key ID "+KeyID(key.ID())), nil
}

// ParsePrivateKey reads a minisign secret key file. An encrypted key (what
// minisign -G writes without -W) needs its password; scrypt with
// minisign's parameters takes about a second and a gigabyte.
func ParsePrivateKey(data []byte, password string) (minisign.PrivateKey, error) {
	if minisign.IsEncrypted(data) {
		if password == "" {
			return minisign.PrivateKey{}, fmt.Errorf("the secret key is encrypted: give its password: %w", ErrInvalid)
		}
		k, err := minisign.DecryptKey(password, data)
		if err != nil {
			return minisign.PrivateKey{}, fmt.Errorf("decrypting the secret key: wrong password or not a minisign key: %w", ErrInvalid)
		}
		return k, nil
	}
	var k minisign.PrivateKey
	if err := k.UnmarshalText(data); err != nil {
		return minisign.PrivateKey{}, fmt.Errorf("not a minisign secret key (%v): %w", err, ErrInvalid)
	}
	return k, nil
}

// SigCheck is the outcome of checking one minisign signature.
type SigCheck struct {
	Code Code `json:"code"`
	// KeyID is the key ID the signature names, as minisign prints it.
	KeyID string `json:"key_id,omitempty"`
	// KeyFile is the trusted key file that verified it.
	KeyFile string `json:"key_file,omitempty"`
	// TrustedComment is the signed comment, quoted; only set once it
	// verified.
	TrustedComment string `json:"trusted_comment,omitempty"`
	Detail         string `json:"detail"`
}

// VerifySignature checks sig, the text of a .minisig file, over message
// with the trusted key of the key ID it names. The two Ed25519 checks are
// made one by one to say which failed (the content, or the trusted
// comment), and minisign.Verify must agree before CodeOK is returned.
func VerifySignature(message, sig []byte, trust *Keyring) SigCheck {
	var s minisign.Signature
	if err := s.UnmarshalText(sig); err != nil {
		if isPlaceholderSig(string(sig)) {
			return SigCheck{Code: CodePlaceholderSignature, Detail: quote(strings.TrimSpace(string(sig))) + " is a placeholder, not a minisign signature; it is never accepted"}
		}
		return SigCheck{Code: CodeBadSignature, Detail: "not a minisign signature (" + err.Error() + ")"}
	}
	h := blake2b.Sum512(message)
	return verifyParsed(s, h[:], message, sig, trust)
}

// verifyParsed checks a parsed signature given the message's BLAKE2b-512
// (prehash) and, when it was small enough to keep, the message itself
// (nil otherwise): a legacy, non-prehashed signature needs the message.
func verifyParsed(s minisign.Signature, prehash, message, sigText []byte, trust *Keyring) SigCheck {
	c := SigCheck{KeyID: KeyID(s.KeyID)}
	tk, ok := trust.Lookup(s.KeyID)
	if !ok {
		c.Code = CodeMissingPublicKey
		c.Detail = "signed by key ID " + c.KeyID + ", which is not in the trust directory" + trustedList(trust)
		return c
	}
	c.KeyFile = tk.File
	pub := pubBytes(tk.Key)
	msg := prehash
	if s.Algorithm == minisign.EdDSA {
		if message == nil {
			c.Code = CodeBadSignature
			c.Detail = "a legacy (not prehashed) signature over a file too large to check; sign it with minisign -S, which prehashes"
			return c
		}
		msg = message
	}
	switch {
	case !ed25519.Verify(pub, msg, s.Signature[:]):
		c.Code = CodeBadSignature
		c.Detail = "the signature by key ID " + c.KeyID + " does not match the content: it was changed after it was signed"
	case !ed25519.Verify(pub, append(s.Signature[:], s.TrustedComment...), s.CommentSignature[:]):
		c.Code = CodeBadSignature
		c.Detail = "the trusted comment was changed after signing (key ID " + c.KeyID + ")"
	case message != nil && !minisign.Verify(tk.Key, message, sigText):
		c.Code = CodeBadSignature
		c.Detail = "minisign does not accept the signature by key ID " + c.KeyID
	default:
		c.Code = CodeOK
		c.TrustedComment = quote(s.TrustedComment)
		c.Detail = "signed by trusted key ID " + c.KeyID + keyFile(tk.File) + "; trusted comment " + c.TrustedComment
	}
	return c
}

func keyFile(name string) string {
	if name == "" {
		return ""
	}
	return " (" + quote(name) + ")"
}

func trustedList(k *Keyring) string {
	ids := k.IDs()
	if len(ids) == 0 {
		return " (it trusts no key)"
	}
	return " (it trusts " + strings.Join(ids, ", ") + ")"
}

// pubBytes returns the raw Ed25519 key of a minisign public key (its
// String is base64 of algorithm, key ID and key).
func pubBytes(k minisign.PublicKey) ed25519.PublicKey {
	raw, _ := base64.StdEncoding.DecodeString(k.String())
	return ed25519.PublicKey(raw[10:])
}

// isPlaceholderSig reports whether s is one line that is no signature at
// all: "minisign:ABC123", "local-registry", "XYZ...". A multi-line text
// that fails to parse is a malformed signature instead.
func isPlaceholderSig(s string) bool {
	s = strings.TrimSpace(s)
	return !strings.Contains(s, "\n")
}

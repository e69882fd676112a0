package registry

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"aead.dev/minisign"

	"github.com/omertaos/omertaos/appliance/config"
)

// DefaultTrustDir holds the minisign public keys registries are checked
// against on the appliance: the default of agents.trust_dir.
const DefaultTrustDir = config.DefaultTrustDir

// TrustSubject is the Subject of findings about the trust directory.
const TrustSubject = "trust"

const (
	// maxKeys bounds the keys of one trust directory.
	maxKeys = 256
	// maxKeyBytes bounds one key file: a minisign public key is two lines,
	// about 110 bytes.
	maxKeyBytes = 4 << 10
)

// TrustedKey is one minisign public key an administrator trusts.
type TrustedKey struct {
	ID   uint64
	File string // the key file's name in the trust directory
	Key  minisign.PublicKey
}

// Keyring is the set of trusted keys, by key ID.
type Keyring struct {
	Dir  string
	keys map[uint64]TrustedKey
	// Problems are the findings about the directory and its files: a key
	// file that is not a key, a duplicate key ID, a missing directory.
	// A bad file does not stop the others from being trusted.
	Problems []Finding
}

// NewKeyring trusts keys (tests, and callers with keys from elsewhere).
func NewKeyring(keys ...minisign.PublicKey) *Keyring {
	k := &Keyring{keys: map[uint64]TrustedKey{}}
	for _, pk := range keys {
		k.keys[pk.ID()] = TrustedKey{ID: pk.ID(), Key: pk}
	}
	return k
}

// Lookup returns the trusted key with the key ID id.
func (k *Keyring) Lookup(id uint64) (TrustedKey, bool) {
	if k == nil {
		return TrustedKey{}, false
	}
	t, ok := k.keys[id]
	return t, ok
}

// IDs lists the trusted key IDs, sorted, as minisign prints them.
func (k *Keyring) IDs() []string {
	if k == nil {
		return nil
	}
	out := make([]string, 0, len(k.keys))
	for id := range k.keys {
		out = append(out, KeyID(id))
	}
	slices.Sort(out)
	return out
}

// Keys returns the trusted keys, sorted by key ID.
func (k *Keyring) Keys() []minisign.PublicKey {
	if k == nil {
		return nil
	}
	ids := make([]uint64, 0, len(k.keys))
	for id := range k.keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]minisign.PublicKey, len(ids))
	for i, id := range ids {
		out[i] = k.keys[id].Key
	}
	return out
}

// Len is the number of trusted keys.
func (k *Keyring) Len() int {
	if k == nil {
		return 0
	}
	return len(k.keys)
}

// KeyID prints a key ID as minisign does: 16 uppercase hex digits.
func KeyID(id uint64) string { return fmt.Sprintf("%016X", id) }

// LoadTrust reads every *.pub file of dir as a minisign public key. A
// directory that does not exist is an empty keyring with a finding (every
// signature then fails as missing-public-key, which says why); only an
// unreadable directory is an error. Symlinks leading out of dir are refused.
func LoadTrust(dir string) (*Keyring, error) {
	k := &Keyring{Dir: dir, keys: map[uint64]TrustedKey{}}
	fs := &findings{subject: TrustSubject}
	d, err := openDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		fs.add("", CodeMissingPublicKey, "the trust directory "+quote(dir)+" does not exist; no key is trusted")
		k.Problems = fs.list
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading trust directory: %w", err)
	}
	defer d.Close()
	d.what = "the trust directory"
	names, err := keyFiles(d)
	if err != nil {
		return nil, fmt.Errorf("reading trust directory %s: %w", dir, err)
	}
	for _, name := range names {
		k.addFile(fs, d, name)
	}
	if len(k.keys) == 0 {
		fs.add("", CodeMissingPublicKey, "the trust directory "+quote(dir)+" holds no minisign public key (*.pub)")
	}
	k.Problems = fs.list
	return k, nil
}

func keyFiles(d *dirFS) ([]string, error) {
	f, err := d.root.Open(".")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(maxKeys + 1)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(names) > maxKeys {
		return nil, fmt.Errorf("more than %d entries", maxKeys)
	}
	var out []string
	for _, n := range names {
		if strings.HasSuffix(n, ".pub") {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (k *Keyring) addFile(fs *findings, d *dirFS, name string) {
	data, err := d.readFile(name, maxKeyBytes)
	if err != nil {
		fs.add(name, CodeInvalidKey, "key file "+err.Error())
		return
	}
	pk, err := ParsePublicKey(data)
	if err != nil {
		fs.add(name, CodeInvalidKey, err.Error())
		return
	}
	if prev, dup := k.keys[pk.ID()]; dup {
		fs.add(name, CodeInvalidKey, "key ID "+KeyID(pk.ID())+" is also in "+quote(prev.File)+"; the first is used")
		if !prev.Key.Equal(pk) {
			fs.list[len(fs.list)-1].Detail += " (the two keys differ)"
		}
		return
	}
	k.keys[pk.ID()] = TrustedKey{ID: pk.ID(), File: name, Key: pk}
}

// ParsePublicKey reads a minisign public key: the file minisign -G writes
// ("untrusted comment: ..." and the key line) or the key line alone.
func ParsePublicKey(data []byte) (minisign.PublicKey, error) {
	var pk minisign.PublicKey
	text := strings.TrimSpace(string(data))
	if strings.Count(text, "\n") > 1 {
		return pk, fmt.Errorf("not a minisign public key: more than two lines: %w", ErrInvalid)
	}
	if err := pk.UnmarshalText([]byte(text)); err != nil {
		// The library's messages do not repeat the input.
		return pk, fmt.Errorf("not a minisign public key (%v): %w", err, ErrInvalid)
	}
	return pk, nil
}

package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"
)

// Params are argon2id's cost parameters.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
	SaltLen int
	KeyLen  int
}

// DefaultParams are OWASP's first argon2id choice (m=19 MiB, t=2, p=1).
var DefaultParams = Params{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// Bounds on a stored hash's parameters. A hash string from the database is
// input too: one with m=4 GiB would make every login allocate that much.
const (
	maxHashText   = 256
	maxMemoryKiB  = 256 * 1024
	maxTime       = 16
	maxThreads    = 16
	minSaltLen    = 8
	maxSaltLen    = 64
	minKeyLen     = 16
	maxKeyLen     = 64
	argon2Version = argon2.Version
)

var b64 = base64.RawStdEncoding

// errHashFormat is what decodeHash returns (wrapped) for a string that is
// not an argon2id PHC hash within the bounds above.
var errHashFormat = errors.New("not an argon2id PHC hash")

// encodeHash writes the PHC string format:
// $argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>, base64 without padding.
func encodeHash(p Params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// decodeHash parses what encodeHash wrote, refusing anything else:
// another algorithm or version, parameters out of bounds, a salt or key of
// an odd length, trailing fields.
func decodeHash(s string) (Params, []byte, []byte, error) {
	var p Params
	if len(s) > maxHashText {
		return p, nil, nil, fmt.Errorf("%w: longer than %d bytes", errHashFormat, maxHashText)
	}
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" {
		return p, nil, nil, fmt.Errorf("%w: want $argon2id$v=..$m=..,t=..,p=..$salt$key", errHashFormat)
	}
	if f[2] != "v="+strconv.Itoa(argon2Version) {
		return p, nil, nil, fmt.Errorf("%w: version field %q, want v=%d", errHashFormat, f[2], argon2Version)
	}
	if err := parseParams(f[3], &p); err != nil {
		return p, nil, nil, err
	}
	salt, err := decodeField(f[4], "salt", minSaltLen, maxSaltLen)
	if err != nil {
		return p, nil, nil, err
	}
	key, err := decodeField(f[5], "key", minKeyLen, maxKeyLen)
	if err != nil {
		return p, nil, nil, err
	}
	p.SaltLen, p.KeyLen = len(salt), len(key)
	return p, salt, key, nil
}

// parseParams reads "m=19456,t=2,p=1", exactly in that order.
func parseParams(s string, p *Params) error {
	kv := strings.Split(s, ",")
	if len(kv) != 3 {
		return fmt.Errorf("%w: parameters %q, want m=<KiB>,t=<passes>,p=<lanes>", errHashFormat, s)
	}
	m, err := paramValue(kv[0], "m", 8, maxMemoryKiB)
	if err != nil {
		return err
	}
	t, err := paramValue(kv[1], "t", 1, maxTime)
	if err != nil {
		return err
	}
	th, err := paramValue(kv[2], "p", 1, maxThreads)
	if err != nil {
		return err
	}
	// argon2 needs at least 8 KiB per lane.
	if m < 8*th {
		return fmt.Errorf("%w: m=%d is below 8 KiB per lane (p=%d)", errHashFormat, m, th)
	}
	p.Memory, p.Time, p.Threads = uint32(m), uint32(t), uint8(th)
	return nil
}

func paramValue(kv, name string, lo, hi uint64) (uint64, error) {
	v, ok := strings.CutPrefix(kv, name+"=")
	if !ok {
		return 0, fmt.Errorf("%w: parameter %q, want %s=", errHashFormat, kv, name)
	}
	// ParseUint accepts "+1" and leading zeros nowhere but decimal digits;
	// refuse a leading zero too, so one hash has one spelling.
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || (len(v) > 1 && v[0] == '0') {
		return 0, fmt.Errorf("%w: parameter %s=%q is not a decimal number", errHashFormat, name, v)
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%w: parameter %s=%d is outside %d..%d", errHashFormat, name, n, lo, hi)
	}
	return n, nil
}

func decodeField(s, name string, lo, hi int) ([]byte, error) {
	// The decoder skips \r and \n; a hash has one spelling, without them.
	if strings.ContainsAny(s, "\r\n") {
		return nil, fmt.Errorf("%w: %s holds a line break", errHashFormat, name)
	}
	b, err := b64.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not unpadded base64", errHashFormat, name)
	}
	if len(b) < lo || len(b) > hi {
		return nil, fmt.Errorf("%w: %s is %d bytes, want %d..%d", errHashFormat, name, len(b), lo, hi)
	}
	return b, nil
}

// hasher computes argon2id hashes, at most cap(slots) at a time: each one
// holds Params.Memory of RAM, and a login flood must not add those up.
type hasher struct {
	params Params
	slots  chan struct{}
	// queue bounds the callers waiting for a slot: past it, a flood is
	// answered at once instead of piling up goroutines and requests.
	queue   int32
	waiting atomic.Int32

	// For tests: how many hashes run now, the most that ever ran at once,
	// and how many verifications were against the dummy hash.
	inFlight atomic.Int32
	peak     atomic.Int32
	dummies  atomic.Int64

	dummy string // a hash of a random password, for unknown users
}

func newHasher(p Params, concurrent, queue int) (*hasher, error) {
	if concurrent < 1 || queue < 1 {
		return nil, fmt.Errorf("password hashing: concurrency %d and queue %d must be at least 1", concurrent, queue)
	}
	h := &hasher{params: p, slots: make(chan struct{}, concurrent), queue: int32(min(queue, 1<<20))}
	var pw [32]byte
	rand.Read(pw[:])
	d, err := h.hash(context.Background(), b64.EncodeToString(pw[:]))
	if err != nil {
		return nil, err
	}
	h.dummy = d
	return h, nil
}

// errHashBusy answers a caller that finds the queue full.
var errHashBusy = &RateLimitError{RetryAfter: time.Second}

// run computes argon2id once a slot is free, or gives up with ctx, or at
// once when the queue is full.
func (h *hasher) run(ctx context.Context, p Params, password string, salt []byte) ([]byte, error) {
	if h.waiting.Add(1) > h.queue {
		h.waiting.Add(-1)
		return nil, fmt.Errorf("hashing a password: %d callers are waiting already: %w", h.queue, errHashBusy)
	}
	select {
	case h.slots <- struct{}{}:
		h.waiting.Add(-1)
	case <-ctx.Done():
		h.waiting.Add(-1)
		return nil, fmt.Errorf("waiting to hash a password: %w", ctx.Err())
	}
	defer func() { <-h.slots }()
	n := h.inFlight.Add(1)
	defer h.inFlight.Add(-1)
	for {
		old := h.peak.Load()
		if n <= old || h.peak.CompareAndSwap(old, n) {
			break
		}
	}
	return argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, uint32(p.KeyLen)), nil
}

// hash returns the PHC string of password with a fresh salt.
func (h *hasher) hash(ctx context.Context, password string) (string, error) {
	salt := make([]byte, h.params.SaltLen)
	rand.Read(salt)
	key, err := h.run(ctx, h.params, password, salt)
	if err != nil {
		return "", err
	}
	return encodeHash(h.params, salt, key), nil
}

// verify reports whether password matches encoded. An empty or unreadable
// encoded hash is checked against the dummy hash instead and never
// matches, so that an unknown user costs the same time as a known one.
func (h *hasher) verify(ctx context.Context, encoded, password string) (bool, error) {
	p, salt, want, err := decodeHash(encoded)
	known := err == nil
	if !known {
		h.dummies.Add(1)
		p, salt, want, _ = decodeHash(h.dummy)
	}
	got, err := h.run(ctx, p, password, salt)
	if err != nil {
		return false, err
	}
	return known && subtle.ConstantTimeCompare(got, want) == 1, nil
}

// outdated reports whether encoded was made with weaker parameters than
// the hasher's, so a successful login should store a new hash.
func (h *hasher) outdated(encoded string) bool {
	p, _, _, err := decodeHash(encoded)
	return err == nil && (p.Memory < h.params.Memory || p.Time < h.params.Time ||
		p.KeyLen < h.params.KeyLen || p.SaltLen < h.params.SaltLen)
}

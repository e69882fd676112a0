package auth

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestDefaultParamsInEncodedHash(t *testing.T) {
	h, err := newHasher(DefaultParams, 2, 64)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := h.hash(ctx, "a correct horse staple")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("encoded hash %q does not name argon2id v=19 m=19456 t=2 p=1", enc)
	}
	p, salt, key, err := decodeHash(enc)
	if err != nil {
		t.Fatal(err)
	}
	if p.Memory < 19*1024 || p.Time < 2 || p.Threads < 1 {
		t.Errorf("params %+v are below m=19 MiB, t=2, p=1", p)
	}
	if len(salt) != 16 || len(key) != 32 {
		t.Errorf("salt %d bytes, key %d bytes; want 16 and 32", len(salt), len(key))
	}
	for pw, want := range map[string]bool{"a correct horse staple": true, "a correct horse stapl": false, "": false} {
		if got, err := h.verify(ctx, enc, pw); err != nil || got != want {
			t.Errorf("verify(%q) = %v, %v; want %v", pw, got, err, want)
		}
	}
	// Two hashes of one password differ by their salts.
	enc2, _ := h.hash(ctx, "a correct horse staple")
	if enc2 == enc {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
}

func TestDecodeHashRefuses(t *testing.T) {
	salt := b64.EncodeToString(make([]byte, 16))
	key := b64.EncodeToString(make([]byte, 32))
	good := "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + key
	if _, _, _, err := decodeHash(good); err != nil {
		t.Fatalf("good hash refused: %v", err)
	}
	for name, s := range map[string]string{
		"empty":           "",
		"argon2i":         "$argon2i$v=19$m=19456,t=2,p=1$" + salt + "$" + key,
		"bcrypt":          "$2b$12$abcdefghijklmnopqrstuuOdd5rG8m0MCDpVbmP3iL7F7kkl7w0Tu",
		"version 16":      "$argon2id$v=16$m=19456,t=2,p=1$" + salt + "$" + key,
		"memory 1 GiB":    "$argon2id$v=19$m=1048576,t=2,p=1$" + salt + "$" + key,
		"memory below 8p": "$argon2id$v=19$m=8,t=1,p=2$" + salt + "$" + key,
		"time 0":          "$argon2id$v=19$m=19456,t=0,p=1$" + salt + "$" + key,
		"time 100":        "$argon2id$v=19$m=19456,t=100,p=1$" + salt + "$" + key,
		"threads 0":       "$argon2id$v=19$m=19456,t=2,p=0$" + salt + "$" + key,
		"leading zero":    "$argon2id$v=19$m=019456,t=2,p=1$" + salt + "$" + key,
		"plus sign":       "$argon2id$v=19$m=+19456,t=2,p=1$" + salt + "$" + key,
		"order":           "$argon2id$v=19$t=2,m=19456,p=1$" + salt + "$" + key,
		"extra param":     "$argon2id$v=19$m=19456,t=2,p=1,k=1$" + salt + "$" + key,
		"padded salt":     "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "==$" + key,
		"short salt":      "$argon2id$v=19$m=19456,t=2,p=1$" + b64.EncodeToString(make([]byte, 4)) + "$" + key,
		"short key":       "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + b64.EncodeToString(make([]byte, 8)),
		"trailing field":  good + "$x",
		"newline in salt": "$argon2id$v=19$m=19456,t=2,p=1$" + salt[:4] + "\n" + salt[4:] + "$" + key,
		"CR in key":       "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + key[:4] + "\r" + key[4:],
		"no leading $":    good[1:],
		"too long":        good + strings.Repeat("A", 300),
	} {
		if _, _, _, err := decodeHash(s); !errors.Is(err, errHashFormat) {
			t.Errorf("%s: decodeHash(%q) = %v, want errHashFormat", name, s, err)
		}
	}
}

// A stored hash that cannot be decoded never matches, and costs a dummy
// verification instead of an early return.
func TestVerifyUndecodableHashUsesDummy(t *testing.T) {
	h, err := newHasher(cheapParams, 1, 64)
	if err != nil {
		t.Fatal(err)
	}
	for _, enc := range []string{"", "garbage", "$argon2id$v=19$m=1048576,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"} {
		before := h.dummies.Load()
		ok, err := h.verify(ctx, enc, "anything")
		if ok || err != nil {
			t.Errorf("verify(%q) = %v, %v; want false, nil", enc, ok, err)
		}
		if h.dummies.Load() != before+1 {
			t.Errorf("verify(%q) did not take the dummy path", enc)
		}
	}
}

func TestConcurrentHashBound(t *testing.T) {
	const bound, workers = 2, 12
	// Enough memory that hashes overlap in time, cheap enough for -race.
	h, err := newHasher(Params{Memory: 2048, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}, bound, workers)
	if err != nil {
		t.Fatal(err)
	}
	h.peak.Store(0)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			if _, err := h.hash(ctx, "concurrent password"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if p := h.peak.Load(); p < 1 || p > bound {
		t.Fatalf("peak of %d hashes at once; the bound is %d", p, bound)
	}
	t.Logf("peak %d of bound %d with %d workers", h.peak.Load(), bound, workers)
}

func TestHashWaitRespectsContext(t *testing.T) {
	h, err := newHasher(cheapParams, 2, 64)
	if err != nil {
		t.Fatal(err)
	}
	h.slots <- struct{}{}
	h.slots <- struct{}{} // both slots busy
	c, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = h.hash(c, "waiting password")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hash with full slots = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("gave up after %s", d)
	}
	if ok, err := h.verify(c, h.dummy, "x"); ok || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("verify with full slots = %v, %v; want DeadlineExceeded", ok, err)
	}
}

// With every slot busy and the queue full, a caller is turned away at once
// with a RateLimitError instead of waiting: a flood does not pile up.
func TestHashQueueBounded(t *testing.T) {
	h, err := newHasher(cheapParams, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	h.slots <- struct{}{} // the one slot is busy
	c, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if _, err := h.hash(c, "queued"); !errors.Is(err, context.Canceled) {
				t.Errorf("queued caller: %v, want Canceled", err)
			}
		})
	}
	for h.waiting.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	_, err = h.hash(ctx, "one too many")
	var rl *RateLimitError
	if !errors.As(err, &rl) || rl.RetryAfter != time.Second {
		t.Fatalf("hash with a full queue = %v, want a RateLimitError", err)
	}
	cancel()
	wg.Wait()
	if n := h.waiting.Load(); n != 0 {
		t.Fatalf("%d still counted as waiting", n)
	}
	<-h.slots
	if _, err := h.hash(ctx, "after the flood"); err != nil {
		t.Fatal(err)
	}
}

func TestOutdated(t *testing.T) {
	h, err := newHasher(cheapParams, 1, 64)
	if err != nil {
		t.Fatal(err)
	}
	weak := encodeHash(Params{Memory: 32, Time: 1, Threads: 1}, make([]byte, 16), make([]byte, 32))
	same := encodeHash(cheapParams, make([]byte, 16), make([]byte, 32))
	if !h.outdated(weak) || h.outdated(same) || h.outdated("") {
		t.Fatal("outdated: want true for weaker params only")
	}
}

func FuzzDecodeHash(f *testing.F) {
	salt := b64.EncodeToString([]byte("0123456789abcdef"))
	key := b64.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	f.Add("$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + key)
	f.Add("$argon2id$v=19$m=8,t=1,p=1$" + salt + "$" + key)
	f.Add("$argon2id$v=19$m=19456,t=2,p=1$$")
	f.Add("$argon2i$v=19$m=1,t=1,p=1$a$b")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		p, salt, key, err := decodeHash(s)
		if err != nil {
			if !errors.Is(err, errHashFormat) {
				t.Fatalf("error %v is not errHashFormat", err)
			}
			return
		}
		// One hash, one spelling: what decodes re-encodes to itself.
		if got := encodeHash(p, salt, key); got != s {
			t.Fatalf("decode+encode of %q gave %q", s, got)
		}
		if p.Memory > maxMemoryKiB || p.Time > maxTime || p.Threads > maxThreads {
			t.Fatalf("params %+v out of bounds accepted", p)
		}
	})
}

// BenchmarkLoginHash is one login's verification at the production
// parameters; B/op shows the memory argon2id takes per hash.
func BenchmarkLoginHash(b *testing.B) {
	h, err := newHasher(DefaultParams, 2, 64)
	if err != nil {
		b.Fatal(err)
	}
	enc, _ := h.hash(ctx, "benchmark password")
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := h.verify(ctx, enc, "benchmark password"); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

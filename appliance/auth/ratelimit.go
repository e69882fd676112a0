package auth

import (
	"container/list"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Limit is a token bucket: Burst attempts at once, refilled at Burst per
// Window. {5, 15 min} lets 5 failures through, then one every 3 minutes.
type Limit struct {
	Burst  int
	Window time.Duration
}

// limiter holds one bucket per key (an account or an address), in memory,
// at most max of them: when full, the bucket touched longest ago goes. A
// bucket left alone for Window is full again, so dropping it loses nothing;
// one evicted early loses its count, which is why max is generous.
type limiter struct {
	mu      sync.Mutex
	limit   Limit
	max     int
	buckets map[string]*list.Element
	lru     *list.List // of *bucket, front = most recently touched
}

type bucket struct {
	key    string
	tokens float64
	at     time.Time
}

func newLimiter(l Limit, max int) *limiter {
	return &limiter{limit: l, max: max, buckets: map[string]*list.Element{}, lru: list.New()}
}

// take spends one attempt for key, or says how long until one is free.
func (l *limiter) take(key string, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.get(key, now)
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	perToken := l.limit.Window / time.Duration(l.limit.Burst)
	return time.Duration((1 - b.tokens) * float64(perToken)), false
}

// refund gives back an attempt that turned out not to count.
func (l *limiter) refund(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.get(key, now)
	b.tokens = min(b.tokens+1, float64(l.limit.Burst))
}

// reset forgets key: a successful login clears its account's failures.
func (l *limiter) reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.buckets[key]; ok {
		l.lru.Remove(e)
		delete(l.buckets, key)
	}
}

func (l *limiter) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// get returns key's bucket refilled up to now, creating it full.
func (l *limiter) get(key string, now time.Time) *bucket {
	burst := float64(l.limit.Burst)
	if e, ok := l.buckets[key]; ok {
		l.lru.MoveToFront(e)
		b := e.Value.(*bucket)
		if elapsed := now.Sub(b.at); elapsed > 0 {
			b.tokens = min(burst, b.tokens+burst*float64(elapsed)/float64(l.limit.Window))
			b.at = now
		}
		return b
	}
	for len(l.buckets) >= l.max {
		oldest := l.lru.Back()
		l.lru.Remove(oldest)
		delete(l.buckets, oldest.Value.(*bucket).key)
	}
	b := &bucket{key: key, tokens: burst, at: now}
	l.buckets[key] = l.lru.PushFront(b)
	return b
}

// maxAddressKey bounds an address that is not an IP, kept as given.
const maxAddressKey = 64

// addressKey is the bucket of a client address ("192.0.2.1",
// "192.0.2.1:5555", "[2001:db8::1]:443"). IPv6 clients are counted per /64:
// one host usually has a whole /64 and could otherwise rotate through it.
func addressKey(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		ap, perr := netip.ParseAddrPort(addr)
		if perr != nil {
			if len(addr) > maxAddressKey {
				addr = addr[:maxAddressKey]
			}
			return "raw:" + strings.ToValidUTF8(addr, "?")
		}
		a = ap.Addr()
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

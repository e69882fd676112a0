package gateway

import (
	"math"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxDebtMinutes bounds how far the token bucket goes below zero: a
// backend that reports a billion tokens shuts an agent out for at most an
// hour of its rate, and the monthly budget does the rest.
const maxDebtMinutes = 60

const maxChargeSteps = 4096

// bucket is one key's request and token limiters, and the limits they
// were made for (a policy change applies on the next request).
type bucket struct {
	req, tok     *rate.Limiter
	reqPM, tokPM float64
	reqB, tokB   int
}

// rates holds the limiters of every agent ("a/" + id) and tenant
// ("t/" + name).
type rates struct {
	mu sync.Mutex
	m  map[string]*bucket
}

func newRates() *rates { return &rates{m: map[string]*bucket{}} }

func burst(b int, perMinute float64) int {
	if b > 0 {
		return b
	}
	return max(1, int(math.Min(math.Ceil(perMinute), math.MaxInt32)))
}

// get returns key's bucket with l applied; nil when l sets no rate.
func (r *rates) get(key string, l Limits, now time.Time) *bucket {
	if l.RequestsPerMinute <= 0 && l.TokensPerMinute <= 0 {
		return nil
	}
	rb, tb := burst(l.RequestBurst, l.RequestsPerMinute), burst(l.TokenBurst, l.TokensPerMinute)
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.m[key]
	if b == nil {
		b = &bucket{
			req: rate.NewLimiter(rate.Limit(l.RequestsPerMinute/60), rb), reqPM: l.RequestsPerMinute, reqB: rb,
			tok: rate.NewLimiter(rate.Limit(l.TokensPerMinute/60), tb), tokPM: l.TokensPerMinute, tokB: tb,
		}
		r.m[key] = b
		return b
	}
	if b.reqPM != l.RequestsPerMinute || b.reqB != rb {
		b.req.SetLimitAt(now, rate.Limit(l.RequestsPerMinute/60))
		b.req.SetBurstAt(now, rb)
		b.reqPM, b.reqB = l.RequestsPerMinute, rb
	}
	if b.tokPM != l.TokensPerMinute || b.tokB != tb {
		b.tok.SetLimitAt(now, rate.Limit(l.TokensPerMinute/60))
		b.tok.SetBurstAt(now, tb)
		b.tokPM, b.tokB = l.TokensPerMinute, tb
	}
	return b
}

// scope is an agent's or a tenant's share of a check.
type scope struct {
	what   string // "agent" or "tenant", for messages
	id     string
	limits Limits
	b      *bucket
}

// admit takes one request from each scope's request rate and checks that
// neither is in token debt. A refusal gives back what it took, and says
// when to retry.
func (r *rates) admit(now time.Time, scopes []scope) *Error {
	var taken []*rate.Reservation
	undo := func() {
		for _, t := range taken {
			t.CancelAt(now)
		}
	}
	for _, s := range scopes {
		if s.b == nil || s.limits.RequestsPerMinute <= 0 {
			continue
		}
		res := s.b.req.ReserveN(now, 1)
		if d := res.DelayFrom(now); !res.OK() || d > 0 {
			res.CancelAt(now)
			undo()
			e := refuse(http.StatusTooManyRequests, CodeRateLimited, "%s %s: more than %v requests per minute (burst %d)",
				s.what, quote(s.id), s.limits.RequestsPerMinute, s.b.reqB)
			e.RetryAfter = d
			return e
		}
		taken = append(taken, res)
	}
	for _, s := range scopes {
		if s.b == nil || s.limits.TokensPerMinute <= 0 {
			continue
		}
		if left := s.b.tok.TokensAt(now); left < 1 {
			undo()
			e := refuse(http.StatusTooManyRequests, CodeTokenRateLimited, "%s %s: more than %v tokens per minute",
				s.what, quote(s.id), s.limits.TokensPerMinute)
			e.RetryAfter = time.Duration((1 - left) / (s.limits.TokensPerMinute / 60) * float64(time.Second))
			return e
		}
	}
	return nil
}

// charge takes the tokens a request used from each scope's token rate,
// going into debt (the next requests wait it off) up to maxDebtMinutes.
func (r *rates) charge(now time.Time, scopes []scope, tokens int64) {
	for _, s := range scopes {
		if s.b == nil || s.limits.TokensPerMinute <= 0 || tokens <= 0 {
			continue
		}
		left := s.b.tok.TokensAt(now)
		floor := -s.limits.TokensPerMinute * maxDebtMinutes
		n := math.Min(float64(tokens), left-floor)
		// rate.Limiter takes at most a burst at a time; a tiny burst
		// against a large rate bounds the debt to maxChargeSteps bursts.
		for i := 0; n >= 1 && i < maxChargeSteps; i++ {
			k := int(math.Min(n, float64(s.b.tokB)))
			s.b.tok.ReserveN(now, k)
			n -= float64(k)
		}
	}
}

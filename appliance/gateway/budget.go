package gateway

import (
	"fmt"
	"math"
	"math/bits"
	"net/http"
	"sync"
	"time"
)

// spend is tokens and nano-USD.
type spend struct {
	tokens int64
	cost   int64
}

func (s spend) add(o spend) spend {
	return spend{tokens: satAdd(s.tokens, o.tokens), cost: satAdd(s.cost, o.cost)}
}

func (s spend) sub(o spend) spend { return spend{tokens: s.tokens - o.tokens, cost: s.cost - o.cost} }

func satAdd(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// costOf is what tokens cost at a price in nano-USD per 1000 tokens,
// rounded up so that no request is free on a paid backend, saturating.
func costOf(tokens, nano1K int64) int64 {
	if tokens <= 0 || nano1K <= 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(tokens), uint64(nano1K))
	if hi >= 1000 {
		return math.MaxInt64
	}
	q, r := bits.Div64(hi, lo, 1000)
	if r > 0 {
		q++
	}
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(q)
}

func (t Target) cost(prompt, completion int64) int64 {
	return satAdd(costOf(prompt, t.PromptNano1K), costOf(completion, t.CompletionNano1K))
}

// month is the budget period of t: its calendar month in UTC.
func month(t time.Time) string { return t.UTC().Format("2006-01") }

// untilNextMonth is the Retry-After of a budget refusal.
func untilNextMonth(t time.Time) time.Duration {
	u := t.UTC()
	return time.Date(u.Year(), u.Month()+1, 1, 0, 0, 0, 0, time.UTC).Sub(u)
}

// ledger is one agent's or tenant's month: what was charged and what
// requests in flight may still charge.
type ledger struct {
	month    string
	used     spend
	reserved spend
	noted    map[string]bool // budgets whose exhaustion was reported this month
}

// budgets keeps every ledger in memory; they are authoritative while
// omertad runs and are loaded from gateway_usage_monthly when it starts.
type budgets struct {
	mu      sync.Mutex
	m       map[string]*ledger // "a/" + agent, "t/" + tenant
	exhaust func(scope, id, budget, month string)
}

func newBudgets(exhaust func(scope, id, budget, month string)) *budgets {
	return &budgets{m: map[string]*ledger{}, exhaust: exhaust}
}

func (b *budgets) ledger(key, mon string) *ledger {
	l := b.m[key]
	if l == nil {
		l = &ledger{month: mon}
		b.m[key] = l
	}
	if l.month != mon {
		l.month, l.used, l.noted = mon, spend{}, nil
	}
	return l
}

// load sets the month's charges found in the database.
func (b *budgets) load(mon string, key string, used spend) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.ledger(key, mon)
	l.used = l.used.add(used)
}

// reservation is what one attempt holds on its scopes' budgets.
type reservation struct {
	b    *budgets
	keys []string
	want spend
	done bool
}

// reserve holds want on every scope's ledger if it fits all of their
// budgets, counting what requests in flight hold; otherwise it refuses,
// naming the scope, the budget and the numbers. A target that costs
// nothing is not held to a cost budget: it cannot add to the spend.
func (b *budgets) reserve(now time.Time, scopes []scope, want spend) (*reservation, *Error) {
	mon := month(now)
	b.mu.Lock()
	defer b.mu.Unlock()
	keys := make([]string, len(scopes))
	for i, s := range scopes {
		keys[i] = s.what[:1] + "/" + s.id
		l := b.ledger(keys[i], mon)
		committed := l.used.add(l.reserved)
		if lim := s.limits.MonthlyTokens; lim > 0 && satAdd(committed.tokens, want.tokens) > lim {
			return nil, b.refusal(now, s, l, "tokens", fmt.Sprintf("%d tokens used or in flight of %d this month, and this request may use %d",
				committed.tokens, lim, want.tokens))
		}
		if lim := usdToNano(s.limits.MonthlyCostUSD); lim > 0 && want.cost > 0 && satAdd(committed.cost, want.cost) > lim {
			return nil, b.refusal(now, s, l, "cost", fmt.Sprintf("%.6f USD spent or in flight of %.6f this month, and this request may cost %.6f",
				nanoToUSD(committed.cost), nanoToUSD(lim), nanoToUSD(want.cost)))
		}
	}
	for _, k := range keys {
		l := b.m[k]
		l.reserved = l.reserved.add(want)
	}
	return &reservation{b: b, keys: keys, want: want}, nil
}

func (b *budgets) refusal(now time.Time, s scope, l *ledger, budget, detail string) *Error {
	if !l.noted[budget] {
		if l.noted == nil {
			l.noted = map[string]bool{}
		}
		l.noted[budget] = true
		if b.exhaust != nil {
			b.exhaust(s.what, s.id, budget, l.month)
		}
	}
	e := refuse(http.StatusTooManyRequests, CodeBudgetExceeded, "%s %s: monthly %s budget: %s", s.what, quote(s.id), budget, detail)
	e.RetryAfter = untilNextMonth(now)
	return e
}

// settle charges what the attempt used and lets go of what it held.
func (r *reservation) settle(now time.Time, used spend) {
	if r == nil || r.done {
		return
	}
	r.done = true
	mon := month(now)
	r.b.mu.Lock()
	defer r.b.mu.Unlock()
	for _, k := range r.keys {
		l := r.b.ledger(k, mon)
		l.reserved = l.reserved.sub(r.want)
		if l.reserved.tokens < 0 || l.reserved.cost < 0 {
			l.reserved = spend{} // a month boundary crossed in flight
		}
		l.used = l.used.add(used)
	}
}

// used returns key's charges this month, for metrics and tests.
func (b *budgets) used(key string, now time.Time) spend {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.m[key]
	if l == nil || l.month != month(now) {
		return spend{}
	}
	return l.used
}

// snapshot copies the ledgers of the month of now.
func (b *budgets) snapshot(now time.Time) map[string]spend {
	mon := month(now)
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]spend, len(b.m))
	for k, l := range b.m {
		if l.month == mon {
			out[k] = l.used
		}
	}
	return out
}

package netpolicy

import (
	"sync"
	"time"

	"github.com/miekg/dns"
)

// answerCache keeps upstream answers (the CNAME chain and A records, or
// NXDOMAIN) for their bounded TTL, shared by all agents: whether an agent
// may have a name is decided before the cache is asked.
type answerCache struct {
	mu  sync.Mutex
	max int
	m   map[string]cachedAnswer
}

type cachedAnswer struct {
	rcode int
	rrs   []dns.RR
	until time.Time
}

func newAnswerCache(max int) *answerCache {
	return &answerCache{max: max, m: map[string]cachedAnswer{}}
}

// get returns name's answer with at least a second left.
func (c *answerCache) get(name string, now time.Time) (cachedAnswer, bool) {
	if c.max == 0 {
		return cachedAnswer{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.m[name]
	if !ok || a.until.Sub(now) < time.Second {
		return cachedAnswer{}, false
	}
	return a, true
}

func (c *answerCache) put(name string, a cachedAnswer, now time.Time) {
	if c.max == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[name]; !ok && len(c.m) >= c.max {
		for k, v := range c.m {
			if !v.until.After(now) {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < c.max {
				break
			}
			delete(c.m, k) // an arbitrary one: map order
		}
	}
	c.m[name] = a
}

package ui

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// identityTTL bounds how long the console trusts omertad's whoami for a
// session without asking again. It is not how long a session outlives
// its end: every page's data comes from omertad with the session, which
// omertad checks on every call, and a 401 there ends the page (to the
// sign-in page) and forgets the identity at once. What the cache spares
// is only the page's own whoami; what it may keep stale, at most this
// long, is the identity a page is laid out for (the navigation, which
// controls are drawn), never a decision: a disabled user, a revoked
// session or a changed role (which ends the user's sessions) gets no data
// and no action through, and within identityTTL even its layout goes.
const identityTTL = 2 * time.Second

// maxIdentities bounds the sessions remembered.
const maxIdentities = 1024

// identityCache remembers omertad's whoami per session, keyed by the
// session ID's hash (the IDs themselves are not kept).
type identityCache struct {
	now func() time.Time
	ttl time.Duration
	max int

	mu      sync.Mutex
	entries map[[sha256.Size]byte]cachedIdentity
}

type cachedIdentity struct {
	w   apitype.Whoami
	exp time.Time
}

func newIdentityCache(now func() time.Time) *identityCache {
	return &identityCache{now: now, ttl: identityTTL, max: maxIdentities, entries: map[[sha256.Size]byte]cachedIdentity{}}
}

// get is the identity of session sid when it was seen less than the TTL
// ago.
func (ic *identityCache) get(sid string) (apitype.Whoami, bool) {
	k := sha256.Sum256([]byte(sid))
	ic.mu.Lock()
	defer ic.mu.Unlock()
	e, ok := ic.entries[k]
	if !ok || !ic.now().Before(e.exp) {
		return apitype.Whoami{}, false
	}
	return e.w, true
}

// put remembers w for sid. When full, the expired entries go; when none
// has expired, all go (a flood of sessions costs whoami calls, not
// memory).
func (ic *identityCache) put(sid string, w apitype.Whoami) {
	k := sha256.Sum256([]byte(sid))
	now := ic.now()
	ic.mu.Lock()
	defer ic.mu.Unlock()
	if len(ic.entries) >= ic.max {
		for key, e := range ic.entries {
			if !now.Before(e.exp) {
				delete(ic.entries, key)
			}
		}
		if len(ic.entries) >= ic.max {
			clear(ic.entries)
		}
	}
	ic.entries[k] = cachedIdentity{w: w, exp: now.Add(ic.ttl)}
}

// forget drops sid's identity.
func (ic *identityCache) forget(sid string) {
	k := sha256.Sum256([]byte(sid))
	ic.mu.Lock()
	defer ic.mu.Unlock()
	delete(ic.entries, k)
}

// sessionCleared reports whether the response ends the browser's session
// (clearSessionCookie): at logout, and wherever omertad answered 401.
func sessionCleared(c *fiber.Ctx) bool {
	fc := fasthttp.AcquireCookie()
	defer fasthttp.ReleaseCookie(fc)
	fc.SetKey(CookieName)
	return c.Response().Header.Cookie(fc) && len(fc.Value()) == 0
}

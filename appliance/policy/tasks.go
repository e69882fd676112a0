package policy

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxTaskLimiters bounds the agents TaskLimiter keeps a bucket for; past
// it every bucket is dropped and starts full again, which only ever lets
// a burst through early, never refuses wrongly for long.
const maxTaskLimiters = 4096

// TaskLimiter enforces each agent's tasks.perMinute where tasks are
// submitted: a token bucket per agent refilled at the effective rate and
// holding a minute's worth, following policy changes as they happen.
type TaskLimiter struct {
	svc *Service
	mu  sync.Mutex
	m   map[string]*taskBucket
}

type taskBucket struct {
	perMinute int64
	lim       *rate.Limiter
}

// NewTaskLimiter returns a TaskLimiter on s's current policies.
func (s *Service) NewTaskLimiter() *TaskLimiter {
	return &TaskLimiter{svc: s, m: map[string]*taskBucket{}}
}

// Allow takes one task from the agent's bucket at now. When refused it
// returns how long until one is available (0 when the rate is 0: no
// tasks at all) and the rule that decided.
func (t *TaskLimiter) Allow(agent, category, tenant string, now time.Time) (ok bool, retryAfter time.Duration, rule string) {
	e := t.svc.Effective(agent, category, tenant)
	l := e.TasksPerMinute
	if !l.Set {
		return true, 0, ""
	}
	rule = l.Origin + " tasks.perMinute"
	if l.Value == 0 {
		return false, 0, rule
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.m[agent]
	if b == nil || b.perMinute != l.Value {
		if len(t.m) >= maxTaskLimiters {
			clear(t.m)
		}
		b = &taskBucket{perMinute: l.Value, lim: rate.NewLimiter(rate.Limit(float64(l.Value)/60), int(l.Value))}
		t.m[agent] = b
	}
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d, rule
	}
	return true, 0, ""
}

// Forget drops the agent's bucket (the agent was deleted).
func (t *TaskLimiter) Forget(agent string) {
	t.mu.Lock()
	delete(t.m, agent)
	t.mu.Unlock()
}

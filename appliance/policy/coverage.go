package policy

// AgentStatus is one running agent judged against the current policies.
type AgentStatus struct {
	Agent    string   `json:"agent"`
	Tenant   string   `json:"tenant"`
	Explicit bool     `json:"explicit"` // a stored policy applies, not only the profile's defaults
	Allow    bool     `json:"allow"`
	Rule     string   `json:"rule,omitempty"`
	Reason   string   `json:"reason,omitempty"`
	Applied  []string `json:"applied"`
}

// Coverage is the policy coverage KPI: Covered (under an explicit policy
// and passing it) over Deployed. Ratio is 1 when nothing is deployed.
type Coverage struct {
	Deployed int           `json:"deployed"`
	Explicit int           `json:"explicit"`
	Passing  int           `json:"passing"`
	Covered  int           `json:"covered"`
	Ratio    float64       `json:"ratio"`
	Agents   []AgentStatus `json:"agents"`
}

// Finding is a running agent that a change makes non-compliant.
type Finding struct {
	Agent    string   `json:"agent"`
	Tenant   string   `json:"tenant"`
	Decision Decision `json:"decision"`
}

// judgeRunning evaluates every running agent as OpCheck, each against its
// tenant's totals without itself.
func judgeRunning(set *Set, running []Request) []Decision {
	totals := map[string]Usage{}
	for i := range running {
		t := tenantOf(running[i].Tenant)
		u := totals[t]
		u.add(&running[i], 1)
		totals[t] = u
	}
	out := make([]Decision, len(running))
	for i, r := range running {
		r.Op, r.Tenant = OpCheck, tenantOf(r.Tenant)
		u := totals[r.Tenant]
		u.add(&r, -1)
		r.Usage = u
		out[i] = Evaluate(set, r)
	}
	return out
}

func tenantOf(t string) string {
	if t == "" {
		return DefaultTenant
	}
	return t
}

func (u *Usage) add(r *Request, sign int64) {
	u.Agents += sign
	u.CPUMillis += sign * r.CPUMillis
	u.MemoryBytes += sign * r.MemoryBytes
	u.GPUs += sign * r.GPUs
	u.VRAMBytes += sign * r.VRAMBytes
}

// ComputeCoverage judges every running agent against set.
func ComputeCoverage(set *Set, running []Request) Coverage {
	c := Coverage{Deployed: len(running), Ratio: 1, Agents: make([]AgentStatus, len(running))}
	for i, d := range judgeRunning(set, running) {
		st := AgentStatus{Agent: running[i].Agent, Tenant: tenantOf(running[i].Tenant), Explicit: d.Explicit,
			Allow: d.Allow, Rule: d.Rule, Reason: d.Reason, Applied: d.Applied}
		c.Agents[i] = st
		if st.Explicit {
			c.Explicit++
		}
		if st.Allow {
			c.Passing++
		}
		if st.Explicit && st.Allow {
			c.Covered++
		}
	}
	if c.Deployed > 0 {
		c.Ratio = float64(c.Covered) / float64(c.Deployed)
	}
	return c
}

// NonCompliant returns the running agents that pass under before and fail
// under after: what a change would break, for the service to flag at once.
func NonCompliant(before, after *Set, running []Request) []Finding {
	was := judgeRunning(before, running)
	now := judgeRunning(after, running)
	var out []Finding
	for i := range running {
		if was[i].Allow && !now[i].Allow {
			out = append(out, Finding{Agent: running[i].Agent, Tenant: tenantOf(running[i].Tenant), Decision: now[i]})
		}
	}
	return out
}

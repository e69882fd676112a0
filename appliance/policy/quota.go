package policy

import "fmt"

// quotas refuses what would take the tenant's totals over its quotas: the
// totals of its other agents plus this one's needs must stay at or under
// each quota.
func (ev *evaluation) quotas(q *quotas) {
	r, u := ev.req, ev.req.Usage
	rule := "quota:tenant/" + q.name + " "
	total := func(field, what string, quota opt, used, need int64, format func(int64) string) {
		if quota.ok && used+need > quota.v {
			ev.deny(rule+field, "the tenant %[1]s would hold %[2]s %[3]s against a quota of %[4]s %[3]s (%[5]s held by its other agents, %[6]s by this one)",
				quote(q.name), format(used+need), what, format(quota.v), format(used), format(need))
		}
	}
	total("agents", "agents", q.agents, u.Agents, 1, fmtInt)
	total("cpu", "CPU", q.cpu, u.CPUMillis, r.CPUMillis, fmtCPU)
	total("memory", "memory", q.memory, u.MemoryBytes, r.MemoryBytes, fmtBytes)
	total("gpus", "GPUs", q.gpus, u.GPUs, r.GPUs, fmtInt)
	total("vram", "VRAM", q.vram, u.VRAMBytes, r.VRAMBytes, fmtBytes)
	ev.monthly(rule+"tokensPerMonth", q, q.tokens, u.TokensMonth, r.TokensPerMonth, fmtInt, "tokens")
	ev.monthly(rule+"usdPerMonth", q, q.usdMicros, u.USDMicrosMonth, r.USDMicrosPerMonth, fmtUSD, "")
}

// monthly refuses an agent that declares a budget above the tenant's
// monthly quota, and a new deploy once the tenant has used it up.
func (ev *evaluation) monthly(rule string, q *quotas, quota opt, used, declared int64, format func(int64) string, unit string) {
	if !quota.ok {
		return
	}
	with := func(n int64) string {
		if unit == "" {
			return format(n)
		}
		return format(n) + " " + unit
	}
	if declared > quota.v {
		ev.deny(rule, "the agent declares a budget of %s a month, above the tenant %s's quota of %s", with(declared), quote(q.name), with(quota.v))
	}
	if ev.req.Op == OpDeploy && used >= quota.v {
		ev.deny(rule, "the tenant %s has used %s of its %s this month", quote(q.name), with(used), with(quota.v))
	}
}

// SumUsage adds up the needs of the tenant's agents in running, leaving
// out the agent named exclude (the one being judged). The month's token
// and cost use are not in the requests: the caller adds them.
func SumUsage(running []Request, tenant, exclude string) Usage {
	if tenant == "" {
		tenant = DefaultTenant
	}
	var u Usage
	for i := range running {
		r := &running[i]
		t := r.Tenant
		if t == "" {
			t = DefaultTenant
		}
		if t != tenant || r.Agent == exclude {
			continue
		}
		u.Agents++
		u.CPUMillis += r.CPUMillis
		u.MemoryBytes += r.MemoryBytes
		u.GPUs += r.GPUs
		u.VRAMBytes += r.VRAMBytes
	}
	return u
}

// String is the usage for a log line.
func (u Usage) String() string {
	return fmt.Sprintf("%d agents, %s CPU, %s memory, %d GPUs, %s VRAM, %d tokens and %s this month",
		u.Agents, fmtCPU(u.CPUMillis), fmtBytes(u.MemoryBytes), u.GPUs, fmtBytes(u.VRAMBytes), u.TokensMonth, fmtUSD(u.USDMicrosMonth))
}

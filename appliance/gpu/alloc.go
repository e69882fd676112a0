package gpu

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Mode is how an agent holds its GPUs; policy decides which it gets.
type Mode string

// The modes.
const (
	// Exclusive: nobody else is admitted to the unit while the agent holds
	// it, and the agent's reservation is the unit's whole memory.
	Exclusive Mode = "exclusive"
	// Shared: other shared agents may be admitted to the unit, each
	// reserving the memory it asked for.
	Shared Mode = "shared"
)

// Request is what an agent asks for: Count units, each with at least
// MemoryBytes of VRAM free. A VRAM-only request (Count 0) means one unit.
type Request struct {
	Agent       string
	Count       int
	MemoryBytes uint64
	Mode        Mode
	// AllowMIG lets MIG devices serve the request; otherwise only whole
	// GPUs do (a request for "a GPU" should not get a seventh of one).
	AllowMIG bool
}

func (r Request) count() int {
	if r.Count == 0 && r.MemoryBytes > 0 {
		return 1
	}
	return r.Count
}

// maxRequestUnits bounds a request: more than any node has.
const maxRequestUnits = maxDevices * maxMIGDevices

func (r Request) validate() error {
	switch {
	case r.Agent == "":
		return fmt.Errorf("%w: the agent is not named", ErrInvalid)
	case r.Mode != Exclusive && r.Mode != Shared:
		return fmt.Errorf("%w: mode %s is not exclusive or shared", ErrInvalid, quote(string(r.Mode)))
	case r.Count < 0 || r.Count > maxRequestUnits:
		return fmt.Errorf("%w: count %d is not between 0 and %d", ErrInvalid, r.Count, maxRequestUnits)
	case r.count() == 0:
		return fmt.Errorf("%w: the request asks for neither a GPU count nor VRAM", ErrInvalid)
	}
	return nil
}

// Grant is what an agent holds.
type Grant struct {
	Agent string `json:"agent"`
	Mode  Mode   `json:"mode"`
	// MemoryBytes is the VRAM asked for on each unit; what each unit
	// holds is its Reserved (the whole unit for an exclusive grant).
	MemoryBytes uint64       `json:"memory_bytes"`
	Units       []GrantedGPU `json:"units"`
	// Problem is set once drift made the grant unusable (see Update).
	Problem string `json:"problem,omitempty"`
}

// GrantedGPU is one unit of a grant.
type GrantedGPU struct {
	UUID     string `json:"uuid"`
	Label    string `json:"label"`
	CDIName  string `json:"cdi_name"`
	Reserved uint64 `json:"reserved_bytes"`
	// UsedBytes is what the agent was last seen using here (Observe).
	UsedBytes uint64 `json:"used_bytes"`
}

// CDIDevices are the qualified CDI names the runtime injects, in order.
func (g Grant) CDIDevices() []string {
	out := make([]string, len(g.Units))
	for i, u := range g.Units {
		out[i] = u.CDIName
	}
	return out
}

// Affected is an agent whose GPUs drifted: the caller stops or flags it.
type Affected struct {
	Agent  string   `json:"agent"`
	Reason string   `json:"reason"`
	Lost   []string `json:"lost,omitempty"` // UUIDs no longer in the inventory
}

// Allocator admits agents to GPUs against the last inventory and tracks
// each agent's grant. It is safe for concurrent use. Grants live in
// memory: after a restart the caller re-creates them with Restore from
// what its containers were started with.
type Allocator struct {
	mu     sync.Mutex
	inv    Inventory
	grants map[string]*Grant
}

// NewAllocator starts with inv and no grants.
func NewAllocator(inv Inventory) *Allocator {
	return &Allocator{inv: inv, grants: map[string]*Grant{}}
}

// unitLoad is what the grants hold on one unit.
type unitLoad struct {
	exclusive string // the agent holding it exclusively
	sharers   int
	reserved  uint64
	// unused is the part of the reservations their agents are not seen
	// using (see Observe): memory NVML still counts as free.
	unused uint64
}

func (a *Allocator) loads() map[string]unitLoad {
	l := map[string]unitLoad{}
	for _, g := range a.grants {
		for _, u := range g.Units {
			x := l[u.UUID]
			if g.Mode == Exclusive {
				x.exclusive = g.Agent
			} else {
				x.sharers++
			}
			x.reserved += u.Reserved
			if u.UsedBytes < u.Reserved {
				x.unused += u.Reserved - u.UsedBytes
			}
			l[u.UUID] = x
		}
	}
	return l
}

// available is what a unit can still give. NVML's free memory already
// lacks what every process uses, agents included; what it still counts is
// the part of each reservation its agent has not taken yet, so that is
// subtracted. Without an observation an agent is taken to use nothing of
// its reservation, which errs on refusing. Nothing is ever more than the
// unit's size less all reservations.
func available(u Unit, l unitLoad) uint64 {
	free := uint64(0)
	if u.FreeBytes > l.unused {
		free = u.FreeBytes - l.unused
	}
	left := uint64(0)
	if l.reserved < u.TotalBytes {
		left = u.TotalBytes - l.reserved
	}
	return min(free, left)
}

// Observe records what each agent's processes use on its units (from
// CollectUsage), so that memory an agent already took is not subtracted
// from NVML's free memory a second time.
func (a *Allocator) Observe(u Usage) {
	used := map[string]map[string]uint64{}
	for _, ag := range u.Agents {
		m := map[string]uint64{}
		for _, d := range ag.Devices {
			m[d.UUID] = d.MemoryBytes
		}
		used[ag.Agent] = m
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for agent, g := range a.grants {
		for i := range g.Units {
			g.Units[i].UsedBytes = used[agent][g.Units[i].UUID]
		}
	}
}

// Admit reserves units for r.Agent. Asking again with the same request
// returns the grant the agent holds; a different request while it holds
// one is ErrConflict (Release first). When nothing fits it returns an
// *AdmissionError (ErrInsufficient) with the numbers.
func (a *Allocator) Admit(r Request) (Grant, error) {
	if err := r.validate(); err != nil {
		return Grant{}, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if g, ok := a.grants[r.Agent]; ok {
		if g.Mode == r.Mode && len(g.Units) == r.count() && g.MemoryBytes == r.MemoryBytes && g.Problem == "" {
			return clone(g), nil
		}
		return Grant{}, fmt.Errorf("%w: agent %s already holds %s; release it first", ErrConflict, quote(r.Agent), describe(g))
	}
	units, err := a.choose(r)
	if err != nil {
		return Grant{}, err
	}
	g := &Grant{Agent: r.Agent, Mode: r.Mode, MemoryBytes: r.MemoryBytes}
	for _, u := range units {
		res := r.MemoryBytes
		if r.Mode == Exclusive {
			res = u.TotalBytes
		}
		g.Units = append(g.Units, GrantedGPU{UUID: u.UUID, Label: u.Label(), CDIName: u.CDIName(), Reserved: res})
	}
	a.grants[r.Agent] = g
	return clone(g), nil
}

// candidate is a unit that can serve a request, with what it has left.
type candidate struct {
	u       Unit
	avail   uint64
	sharers int
}

// choose picks r.count() units deterministically. For VRAM it is best
// fit: the unit with the least memory left that still fits, so that big
// units stay free for big requests. For a count alone, an exclusive
// request takes the smallest free units and a shared one the least shared.
// Ties go to the lower GPU index, then the lower MIG index.
func (a *Allocator) choose(r Request) ([]Unit, error) {
	loads := a.loads()
	var fits []candidate
	var best *candidate // the nearest miss, for the refusal
	for _, u := range a.inv.Units {
		if !u.allocatable() || (u.MIG != nil && !r.AllowMIG) {
			continue
		}
		l := loads[u.UUID]
		if l.exclusive != "" || (r.Mode == Exclusive && l.sharers > 0) {
			continue
		}
		c := candidate{u: u, avail: available(u, l), sharers: l.sharers}
		if c.avail >= r.MemoryBytes {
			fits = append(fits, c)
		} else if best == nil || c.avail > best.avail {
			best = &c
		}
	}
	if len(fits) < r.count() {
		return nil, a.refusal(r, fits, best)
	}
	slices.SortStableFunc(fits, func(x, y candidate) int {
		switch {
		case r.MemoryBytes > 0:
			return cmp.Compare(x.avail, y.avail)
		case r.Mode == Exclusive: // the smallest, and of those the emptiest
			return cmp.Or(cmp.Compare(x.u.TotalBytes, y.u.TotalBytes), cmp.Compare(y.avail, x.avail))
		}
		return cmp.Or(cmp.Compare(x.sharers, y.sharers), cmp.Compare(y.avail, x.avail))
	})
	out := make([]Unit, r.count())
	for i := range out {
		out[i] = fits[i].u
	}
	return out, nil
}

func (a *Allocator) refusal(r Request, fits []candidate, best *candidate) error {
	kind := "GPU"
	if r.AllowMIG {
		kind = "GPU or MIG device"
	}
	e := &AdmissionError{Agent: r.Agent}
	n := r.count()
	if r.MemoryBytes == 0 {
		e.Need = plural(n, kind)
		if r.Mode == Exclusive {
			e.Need += " to itself"
		}
		e.Best = freeList(fits, r.Mode)
		return e
	}
	e.Need = formatBytes(r.MemoryBytes)
	if n > 1 {
		e.Need = fmt.Sprintf("%s free on each of %d %ss", e.Need, n, kind)
	}
	switch {
	case len(fits) > 0 && best != nil:
		e.Best = fmt.Sprintf("%s that much (%s); largest free elsewhere is %s on %s", countHave(len(fits)), labels(fits), formatBytes(best.avail), best.u.Label())
	case len(fits) > 0:
		e.Best = fmt.Sprintf("%s that much (%s)", countHave(len(fits)), labels(fits))
	case best != nil:
		e.Best = fmt.Sprintf("largest free is %s on %s", formatBytes(best.avail), best.u.Label())
	default:
		e.Best = "no " + kind + " is available" + a.why(r.Mode)
	}
	return e
}

func freeList(fits []candidate, m Mode) string {
	if len(fits) == 0 {
		if m == Exclusive {
			return "none is free"
		}
		return "none is available"
	}
	verb := "is"
	if len(fits) > 1 {
		verb = "are"
	}
	word := "free"
	if m == Shared {
		word = "available"
	}
	return fmt.Sprintf("%d %s %s (%s)", len(fits), verb, word, labels(fits))
}

func (a *Allocator) why(m Mode) string {
	if len(a.inv.Units) == 0 {
		return " (the inventory is empty)"
	}
	if m == Exclusive {
		return " (every one is held)"
	}
	return " (every one is held exclusively)"
}

func countHave(n int) string {
	if n == 1 {
		return "only 1 has"
	}
	return "only " + strconv.Itoa(n) + " have"
}

func labels(cs []candidate) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = c.u.Label()
	}
	return strings.Join(s, ", ")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// formatBytes writes a size in GiB as people read it: "80 GiB", "12.5 GiB".
func formatBytes(b uint64) string {
	if b < 1<<30 {
		return strconv.FormatFloat(float64(b)/(1<<20), 'f', -1, 64) + " MiB"
	}
	g := float64(b) / (1 << 30)
	return strconv.FormatFloat(float64(int64(g*10+0.5))/10, 'f', -1, 64) + " GiB"
}

func describe(g *Grant) string {
	var s []string
	for _, u := range g.Units {
		s = append(s, u.Label)
	}
	return fmt.Sprintf("%s %s", g.Mode, strings.Join(s, ", "))
}

func clone(g *Grant) Grant {
	c := *g
	c.Units = slices.Clone(g.Units)
	return c
}

// Release drops the agent's grant; it reports whether there was one.
func (a *Allocator) Release(agent string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.grants[agent]
	delete(a.grants, agent)
	return ok
}

// Grant returns the agent's grant.
func (a *Allocator) Grant(agent string) (Grant, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	g, ok := a.grants[agent]
	if !ok {
		return Grant{}, false
	}
	return clone(g), true
}

// Grants lists every grant, by agent.
func (a *Allocator) Grants() []Grant {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Grant, 0, len(a.grants))
	for _, g := range a.grants {
		out = append(out, clone(g))
	}
	slices.SortFunc(out, func(x, y Grant) int { return cmp.Compare(x.Agent, y.Agent) })
	return out
}

// Inventory returns the inventory admission decides against.
func (a *Allocator) Inventory() Inventory {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.inv
}

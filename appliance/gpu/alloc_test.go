package gpu

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/google/go-cmp/cmp"
)

// h100Fleet is a DGX H100 as admission sees it: GPU 0 in MIG mode
// (3g.40gb, 2g.20gb, 1g.10gb), GPU 3 with 40 GiB and GPU 5 with 70 GiB
// already used by processes outside any grant, the rest free.
func h100Fleet(t testing.TB) *dgx {
	d := newDGX(dgxh100.New(), map[int]uint64{3: gib(40), 5: gib(70)})
	d.enableMIG(t, 0, nil, nvml.GPU_INSTANCE_PROFILE_3_SLICE, nvml.GPU_INSTANCE_PROFILE_2_SLICE, nvml.GPU_INSTANCE_PROFILE_1_SLICE)
	return d
}

func inventoryOf(t testing.TB, lib nvml.Interface) Inventory {
	t.Helper()
	inv, err := ReadInventory(lib)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func TestReadInventory(t *testing.T) {
	inv := inventoryOf(t, h100Fleet(t))
	var got []string
	for _, u := range inv.Units {
		got = append(got, u.Label()+" "+formatBytes(u.FreeBytes)+"/"+formatBytes(u.TotalBytes)+" "+string(u.Architecture))
	}
	want := []string{
		"GPU 0 80 GiB/80 GiB hopper", // in MIG mode: listed, not allocatable
		"GPU 0 MIG 0 (3g.40gb) 40 GiB/40 GiB hopper",
		"GPU 0 MIG 1 (2g.20gb) 20 GiB/20 GiB hopper",
		"GPU 0 MIG 2 (1g.10gb) 10 GiB/10 GiB hopper",
		"GPU 1 80 GiB/80 GiB hopper", "GPU 2 80 GiB/80 GiB hopper",
		"GPU 3 40 GiB/80 GiB hopper", "GPU 4 80 GiB/80 GiB hopper",
		"GPU 5 10 GiB/80 GiB hopper", "GPU 6 80 GiB/80 GiB hopper", "GPU 7 80 GiB/80 GiB hopper",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("units (-want +got):\n%s", d)
	}
	if inv.DriverVersion != "550.54.15" || !inv.Units[0].MIGEnabled || inv.Units[1].MIG.Parent != gpuUUID(0) || len(inv.Problems) != 0 {
		t.Errorf("inventory = %+v", inv)
	}
}

// step is one action on an allocator, with what it must answer.
type step struct {
	admit   *Request
	release string
	hold    *Grant // restored as is
	// drift changes the machine (on a fresh fleet) before Update.
	drift func(t testing.TB, d *dgx)

	want         []string // the granted units' labels
	wantErr      error
	wantMsg      string // a substring of the error
	wantAffected []string
}

func req(agent string, count int, mem uint64, m Mode, mig bool) *Request {
	return &Request{Agent: agent, Count: count, MemoryBytes: mem, Mode: m, AllowMIG: mig}
}

// holdAllBut gives every empty whole GPU but those listed to an
// exclusive holder.
func holdAllBut(keep ...int) []step {
	var s []step
	for _, i := range []int{1, 2, 4, 6, 7} {
		if !slices.Contains(keep, i) {
			s = append(s, step{hold: &Grant{Agent: "holder" + strconv.Itoa(i), Mode: Exclusive, Units: []GrantedGPU{{UUID: gpuUUID(i)}}}})
		}
	}
	return s
}

func TestAdmission(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"one GPU exclusive takes the lowest whole GPU", []step{
			{admit: req("a", 1, 0, Exclusive, false), want: []string{"GPU 1"}},
		}},
		{"a count never gets a GPU in MIG mode or a MIG device", []step{
			{admit: req("a", 2, 0, Exclusive, false), want: []string{"GPU 1", "GPU 2"}},
		}},
		{"a count may get the smallest MIG device when allowed", []step{
			{admit: req("a", 1, 0, Exclusive, true), want: []string{"GPU 0 MIG 2 (1g.10gb)"}},
		}},
		{"VRAM is best fit on free memory, not on size", []step{
			{admit: req("a", 0, gib(30), Shared, false), want: []string{"GPU 3"}},
			{admit: req("b", 0, gib(8), Shared, false), want: []string{"GPU 3"}},
			{admit: req("c", 0, gib(8), Shared, false), want: []string{"GPU 5"}},
		}},
		{"VRAM on MIG devices", []step{
			{admit: req("a", 0, gib(8), Shared, true), want: []string{"GPU 0 MIG 2 (1g.10gb)"}},
			{admit: req("b", 0, gib(15), Exclusive, true), want: []string{"GPU 0 MIG 1 (2g.20gb)"}},
			{admit: req("c", 0, gib(40), Exclusive, true), want: []string{"GPU 0 MIG 0 (3g.40gb)"}}, // before GPU 3 (also 40 GiB): inventory order
			{admit: req("d", 0, gib(40), Exclusive, true), want: []string{"GPU 3"}},
		}},
		{"shared agents reserve what they asked", []step{
			{admit: req("a", 0, gib(50), Shared, false), want: []string{"GPU 1"}},
			{admit: req("b", 0, gib(30), Shared, false), want: []string{"GPU 1"}}, // 30 GiB left on GPU 1 fits best
			{admit: req("c", 0, gib(31), Shared, false), want: []string{"GPU 3"}},
		}},
		{"exclusive skips shared GPUs and shared skips exclusive ones", []step{
			{admit: req("a", 0, gib(60), Shared, false), want: []string{"GPU 1"}},
			{admit: req("b", 1, 0, Exclusive, false), want: []string{"GPU 2"}},
			{admit: req("c", 0, gib(70), Shared, false), want: []string{"GPU 4"}},
			{admit: req("d", 6, 0, Exclusive, false), wantErr: ErrInsufficient,
				wantMsg: `admitting agent d: needs 6 GPUs to itself, 4 are free (GPU 3, GPU 5, GPU 6, GPU 7)`},
		}},
		{"an exclusive count prefers the emptiest of equal GPUs", []step{
			{admit: req("a", 5, 0, Exclusive, false), want: []string{"GPU 1", "GPU 2", "GPU 4", "GPU 6", "GPU 7"}},
			{admit: req("b", 1, 0, Exclusive, false), want: []string{"GPU 3"}},
		}},
		{"a count shared spreads to the least shared GPU", []step{
			{admit: req("a", 1, 0, Shared, false), want: []string{"GPU 1"}},
			{admit: req("b", 1, 0, Shared, false), want: []string{"GPU 2"}},
		}},
		{"refusal names the largest free", append(holdAllBut(), []step{
			{admit: req("big", 0, gib(80), Shared, false), wantErr: ErrInsufficient,
				wantMsg: "admitting agent big: needs 80 GiB, largest free is 40 GiB on GPU 3"},
		}...)},
		{"refusal for several GPUs says how many have it", append(holdAllBut(6), []step{
			{admit: req("two", 2, gib(60), Shared, false), wantErr: ErrInsufficient,
				wantMsg: "needs 60 GiB free on each of 2 GPUs, only 1 has that much (GPU 6); largest free elsewhere is 40 GiB on GPU 3"},
		}...)},
		{"more than the machine has", []step{
			{admit: req("a", 0, gib(90), Exclusive, true), wantErr: ErrInsufficient,
				wantMsg: "needs 90 GiB, largest free is 80 GiB on GPU 1"},
		}},
		{"asking again is the same grant, asking differently a conflict", []step{
			{admit: req("a", 0, gib(20), Shared, false), want: []string{"GPU 3"}},
			{admit: req("a", 0, gib(20), Shared, false), want: []string{"GPU 3"}},
			{admit: req("a", 0, gib(30), Shared, false), wantErr: ErrConflict},
			{release: "a"},
			{admit: req("a", 0, gib(30), Shared, false), want: []string{"GPU 3"}},
		}},
		{"invalid requests", []step{
			{admit: req("a", 0, 0, Shared, false), wantErr: ErrInvalid, wantMsg: "neither a GPU count nor VRAM"},
			{admit: req("a", -1, 0, Shared, false), wantErr: ErrInvalid},
			{admit: req("a", 1, 0, "greedy", false), wantErr: ErrInvalid, wantMsg: "mode greedy"},
			{admit: req("", 1, 0, Shared, false), wantErr: ErrInvalid},
		}},
		{"a GPU lost mid-run flags only its agents", []step{
			{admit: req("a", 0, gib(30), Shared, false), want: []string{"GPU 3"}},
			{admit: req("b", 0, gib(10), Shared, false), want: []string{"GPU 3"}},
			{admit: req("c", 1, 0, Exclusive, false), want: []string{"GPU 1"}},
			{drift: lose(3), wantAffected: []string{
				"a: GPU 3 (" + gpuUUID(3) + ") is gone", "b: GPU 3 (" + gpuUUID(3) + ") is gone"}},
			{admit: req("a", 0, gib(30), Shared, false), wantErr: ErrConflict}, // flagged until released
			{release: "a"},
			{admit: req("a", 0, gib(30), Shared, false), want: []string{"GPU 2"}},
		}},
		{"a driver change flags every agent with a GPU", []step{
			{admit: req("a", 1, 0, Exclusive, false), want: []string{"GPU 1"}},
			{admit: req("b", 0, gib(5), Shared, true), want: []string{"GPU 0 MIG 2 (1g.10gb)"}},
			{drift: func(t testing.TB, d *dgx) { d.DriverVersion = "550.163.01" }, wantAffected: []string{
				"a: the NVIDIA driver changed from 550.54.15 to 550.163.01",
				"b: the NVIDIA driver changed from 550.54.15 to 550.163.01"}},
		}},
		{"a MIG layout change loses the MIG device, MIG mode the whole GPU", []step{
			{admit: req("a", 0, gib(35), Exclusive, true), want: []string{"GPU 0 MIG 0 (3g.40gb)"}},
			{admit: req("b", 1, 0, Exclusive, false), want: []string{"GPU 1"}},
			{drift: func(t testing.TB, d *dgx) {
				d.migs[0] = d.migs[0][1:2]
				d.enableMIG(t, 1, nil, nvml.GPU_INSTANCE_PROFILE_7_SLICE)
			}, wantAffected: []string{
				"a: GPU 0 MIG 0 (3g.40gb) (" + migUUID(0, 0) + ") is gone",
				"b: GPU 1 (" + gpuUUID(1) + ") is now in MIG mode"}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { runSteps(t, tc.steps) })
	}
}

func lose(i int) func(testing.TB, *dgx) {
	return func(t testing.TB, d *dgx) {
		byIndex := d.DeviceGetHandleByIndexFunc
		d.DeviceGetHandleByIndexFunc = func(n int) (nvml.Device, nvml.Return) {
			if n == i {
				return nil, nvml.ERROR_GPU_IS_LOST
			}
			return byIndex(n)
		}
	}
}

func runSteps(t *testing.T, steps []step) {
	a := NewAllocator(inventoryOf(t, h100Fleet(t)))
	for i, s := range steps {
		switch {
		case s.hold != nil:
			if err := a.Restore(*s.hold); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
		case s.release != "":
			if !a.Release(s.release) {
				t.Fatalf("step %d: release %s: no grant", i, s.release)
			}
		case s.drift != nil:
			d := h100Fleet(t)
			s.drift(t, d)
			var got []string
			for _, af := range a.Update(inventoryOf(t, d)) {
				got = append(got, af.Agent+": "+af.Reason)
			}
			if diff := cmp.Diff(s.wantAffected, got); diff != "" {
				t.Fatalf("step %d: affected (-want +got):\n%s", i, diff)
			}
		default:
			checkAdmit(t, i, a, s)
		}
	}
	checkReservations(t, a)
}

func checkAdmit(t *testing.T, i int, a *Allocator, s step) {
	t.Helper()
	g, err := a.Admit(*s.admit)
	if s.wantErr != nil {
		if !errors.Is(err, s.wantErr) || !strings.Contains(errString(err), s.wantMsg) {
			t.Fatalf("step %d: admit %+v = %v, want %v containing %q", i, *s.admit, err, s.wantErr, s.wantMsg)
		}
		return
	}
	if err != nil {
		t.Fatalf("step %d: admit %+v: %v", i, *s.admit, err)
	}
	var got []string
	for _, u := range g.Units {
		got = append(got, u.Label)
		if u.CDIName != CDIVendorClass+"="+u.UUID {
			t.Errorf("step %d: CDI name %q", i, u.CDIName)
		}
	}
	if diff := cmp.Diff(s.want, got); diff != "" {
		t.Fatalf("step %d: admit %+v (-want +got):\n%s", i, *s.admit, diff)
	}
}

// checkReservations: whatever the steps did, no unit is held exclusively
// and shared at once, and no unit's shared reservations exceed its size.
func checkReservations(t *testing.T, a *Allocator) {
	for uuid, l := range a.loads() {
		u, ok := a.Inventory().Unit(uuid)
		if l.exclusive != "" && l.sharers > 0 {
			t.Errorf("%s is held exclusively by %s and shared by %d", uuid, l.exclusive, l.sharers)
		}
		if ok && l.exclusive == "" && l.reserved > u.TotalBytes {
			t.Errorf("%s: %d bytes reserved of %d", uuid, l.reserved, u.TotalBytes)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestAdmissionErrorFields(t *testing.T) {
	a := NewAllocator(inventoryOf(t, h100Fleet(t)))
	_, err := a.Admit(Request{Agent: "x\x1b[2J", MemoryBytes: gib(100), Mode: Shared})
	var ae *AdmissionError
	if !errors.As(err, &ae) || ae.Need != "100 GiB" || ae.Best != "largest free is 80 GiB on GPU 1" {
		t.Fatalf("err = %#v", err)
	}
	if strings.ContainsRune(err.Error(), 0x1b) {
		t.Errorf("agent name not escaped: %q", err)
	}
}

func TestRestore(t *testing.T) {
	inv := inventoryOf(t, h100Fleet(t))
	a := NewAllocator(inv)
	g, err := a.Admit(Request{Agent: "a", MemoryBytes: gib(20), Mode: Shared, AllowMIG: true})
	if err != nil {
		t.Fatal(err)
	}
	b := NewAllocator(inv) // omertad restarted
	if err := b.Restore(g); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Grant("a"); !cmp.Equal(got, g) {
		t.Errorf("restored %+v, want %+v", got, g)
	}
	ex := Grant{Agent: "b", Mode: Exclusive, Units: []GrantedGPU{{UUID: g.Units[0].UUID}}}
	if err := b.Restore(ex); !errors.Is(err, ErrConflict) {
		t.Errorf("exclusive restore over a shared grant = %v", err)
	}
	gone := Grant{Agent: "c", Mode: Shared, Units: []GrantedGPU{{UUID: "GPU-gone"}}}
	if err := b.Restore(gone); !errors.Is(err, ErrNotFound) {
		t.Errorf("restore of a lost GPU = %v", err)
	}
}

// An agent's memory is in NVML's used memory once it runs; Observe keeps
// admission from subtracting it a second time as an unused reservation.
func TestObserveCountsUsedReservations(t *testing.T) {
	d := h100Fleet(t)
	a := NewAllocator(inventoryOf(t, d))
	if _, err := a.Admit(Request{Agent: "a", MemoryBytes: gib(30), Mode: Shared}); err != nil {
		t.Fatal(err)
	}
	// Agent a now holds its 30 GiB on GPU 3: NVML shows 10 GiB free.
	d.dev(3).MemoryInfo.Used, d.dev(3).MemoryInfo.Free = gib(70), gib(10)
	a.Update(inventoryOf(t, d))
	// Not observed, a's 30 GiB counts as unused: 10-30 leaves nothing on
	// GPU 3, and GPU 5's 10 GiB is taken instead.
	if g, err := a.Admit(Request{Agent: "b", MemoryBytes: gib(10), Mode: Shared}); err != nil || g.Units[0].Label != "GPU 5" {
		t.Fatalf("unobserved: b = %+v, %v; want GPU 5", g, err)
	}
	a.Release("b")
	a.Observe(Usage{Agents: []AgentUsage{{Agent: "a", Devices: []DeviceUsage{{UUID: gpuUUID(3), MemoryBytes: gib(30)}}}}})
	g, err := a.Admit(Request{Agent: "c", MemoryBytes: gib(10), Mode: Shared})
	if err != nil || g.Units[0].Label != "GPU 3" {
		t.Fatalf("observed: c = %+v, %v; want GPU 3 (10 GiB really free)", g, err)
	}
	if ga, _ := a.Grant("a"); ga.Units[0].UsedBytes != gib(30) {
		t.Errorf("a's grant = %+v", ga)
	}
}

package api

import (
	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/gpu"
)

// GPUService is what the GPU routes read; *gpu.Service is one. Nothing
// here asks NVML: the routes answer from the last refresh and telemetry
// pass, so that a GPU that stops answering cannot hold a request.
type GPUService interface {
	// Status is what the last refresh found: the driver, or why no GPU
	// can be given.
	Status() gpu.Status
	// Allocator is admission: the inventory it decides on (free memory
	// as of the last telemetry pass) and the agents' grants.
	Allocator() *gpu.Allocator
}

var _ GPUService = (*gpu.Service)(nil)

// maxUUIDParam bounds the {uuid} of GET /gpus/{uuid}: NVML's UUIDs are
// 40 bytes ("GPU-" and 36), a MIG device's 40 too.
const maxUUIDParam = 96

// gpuRoutes serves GET /gpus (every GPU admission hands out, with its MIG
// devices and holders, or why there is none) and GET /gpus/{uuid} (one
// GPU, by its UUID or one of its MIG devices').
func (s *Server) gpuRoutes(r fiber.Router, g GPUService) {
	r.Get("/gpus", func(c *fiber.Ctx) error { return c.JSON(gpuList(g)) })
	r.Get("/gpus/:uuid", func(c *fiber.Ctx) error { return getGPU(c, g) })
}

func getGPU(c *fiber.Ctx, g GPUService) error {
	id := c.Params("uuid")
	if len(id) > maxUUIDParam {
		return fiber.NewError(fiber.StatusBadRequest, "uuid: longer than a GPU UUID")
	}
	l := gpuList(g)
	for _, v := range l.GPUs {
		if v.UUID == id || hasMIG(v, id) {
			return c.JSON(v)
		}
	}
	for _, lost := range l.Lost {
		if lost.UUID == id {
			return fiber.NewError(fiber.StatusNotFound, "GPU "+quoteValue(id)+" is gone; agent "+quoteValue(lost.Agent)+" still holds it")
		}
	}
	if !l.Available && l.Reason != "" {
		return fiber.NewError(fiber.StatusNotFound, "GPU "+quoteValue(id)+" not found: "+l.Reason)
	}
	return fiber.NewError(fiber.StatusNotFound, "GPU "+quoteValue(id)+" not found")
}

func hasMIG(v apitype.GPUView, id string) bool {
	for _, m := range v.MIG {
		if m.UUID == id {
			return true
		}
	}
	return false
}

// gpuList is GET /gpus's answer.
func gpuList(g GPUService) apitype.GPUList {
	st := g.Status()
	alloc := g.Allocator()
	return gpuListView(st, alloc.Inventory(), alloc.Grants())
}

// gpuListView puts the inventory's units in their GPUs and each grant's
// units on theirs; a granted unit not in the inventory is lost.
func gpuListView(st gpu.Status, inv gpu.Inventory, grants []gpu.Grant) apitype.GPUList {
	out := apitype.GPUList{Available: st.Available, DriverVersion: st.DriverVersion, KernelModules: string(st.Flavour),
		Reason: st.Reason, Problems: st.Problems, GPUs: []apitype.GPUView{}}
	if !st.At.IsZero() {
		at := st.At
		out.RefreshedAt = &at
	}
	holders, reserved := holdersOf(grants)
	byUUID := map[string]int{}
	for _, u := range inv.Units {
		if u.MIG == nil {
			byUUID[u.UUID] = len(out.GPUs)
			out.GPUs = append(out.GPUs, gpuView(u, holders[u.UUID], reserved[u.UUID]))
			continue
		}
		i, ok := byUUID[u.MIG.Parent]
		if !ok {
			out.Problems = append(out.Problems, "MIG device "+quoteValue(u.UUID)+" names a parent GPU NVML did not list: "+quoteValue(u.MIG.Parent))
			continue
		}
		out.GPUs[i].MIG = append(out.GPUs[i].MIG, migView(u, holders[u.UUID], reserved[u.UUID]))
	}
	for _, gr := range grants {
		for _, gu := range gr.Units {
			if _, ok := inv.Unit(gu.UUID); !ok {
				out.Lost = append(out.Lost, apitype.LostGPU{UUID: gu.UUID, Label: gu.Label, Agent: gr.Agent, Problem: gr.Problem})
			}
		}
	}
	return out
}

// holdersOf indexes the grants by unit: who holds each, and the VRAM
// their grants reserve on it.
func holdersOf(grants []gpu.Grant) (map[string][]apitype.GPUHolder, map[string]uint64) {
	holders := map[string][]apitype.GPUHolder{}
	reserved := map[string]uint64{}
	for _, gr := range grants { // Grants is sorted by agent
		for _, gu := range gr.Units {
			holders[gu.UUID] = append(holders[gu.UUID], apitype.GPUHolder{Agent: gr.Agent, Mode: string(gr.Mode),
				ReservedBytes: gu.Reserved, UsedBytes: gu.UsedBytes, Problem: gr.Problem})
			reserved[gu.UUID] += gu.Reserved
		}
	}
	return holders, reserved
}

func gpuView(u gpu.Unit, holders []apitype.GPUHolder, reserved uint64) apitype.GPUView {
	v := apitype.GPUView{Index: u.Index, UUID: u.UUID, Name: u.Name, Architecture: string(u.Architecture),
		ComputeCapability: u.ComputeCapability, GPUMemory: memoryView(u, reserved), MIGEnabled: u.MIGEnabled,
		Holders: nonNil(holders)}
	if !u.MIGEnabled {
		v.CDIDevice = u.CDIName()
	}
	return v
}

func migView(u gpu.Unit, holders []apitype.GPUHolder, reserved uint64) apitype.MIGView {
	return apitype.MIGView{UUID: u.UUID, Index: u.MIG.Index, Profile: u.MIG.Profile, GPUInstance: u.MIG.GPUInstance,
		ComputeInstance: u.MIG.ComputeInstance, CDIDevice: u.CDIName(), GPUMemory: memoryView(u, reserved),
		Holders: nonNil(holders)}
}

func memoryView(u gpu.Unit, reserved uint64) apitype.GPUMemory {
	m := apitype.GPUMemory{MemoryTotalBytes: u.TotalBytes, MemoryFreeBytes: u.FreeBytes, MemoryReservedBytes: reserved}
	if u.FreeBytes <= u.TotalBytes {
		m.MemoryUsedBytes = u.TotalBytes - u.FreeBytes
	}
	return m
}

func nonNil(hs []apitype.GPUHolder) []apitype.GPUHolder {
	if hs == nil {
		return []apitype.GPUHolder{}
	}
	return hs
}

// agentGPUsView is an agent's grant as its view shows it. Only what the
// grant records is shown, not what telemetry last saw the agent use: the
// agent list is cached until the database changes (listAgents), and
// telemetry writes nothing to it; GET /gpus has the use.
func agentGPUsView(g *gpu.Grant) *apitype.AgentGPUs {
	if g == nil {
		return nil
	}
	v := &apitype.AgentGPUs{Mode: string(g.Mode), MemoryBytes: g.MemoryBytes, Problem: g.Problem,
		Devices: make([]apitype.AgentGPU, 0, len(g.Units))}
	for _, u := range g.Units {
		v.Devices = append(v.Devices, apitype.AgentGPU{UUID: u.UUID, Label: u.Label, CDIDevice: u.CDIName, ReservedBytes: u.Reserved})
	}
	return v
}

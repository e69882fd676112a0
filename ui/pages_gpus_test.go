package ui

import (
	"net/http"
	"testing"

	"github.com/omertaos/omertaos/appliance/apitype"
)

func TestGPUsPage(t *testing.T) {
	e := newEnv(t, Limits{})
	aud := e.signIn("carol", "auditor")
	resp, body := e.get("/gpus", &aud)
	wantStatus(t, resp, body, http.StatusOK)
	wantContains(t, body, `data-testid="gpus-none"`, "NVIDIA management library unavailable")
	wantNotContains(t, body, `data-testid="gpus-table"`)

	e.fake.SetGPUs(apitype.GPUList{Available: true, DriverVersion: "550.163.01", KernelModules: "open",
		GPUs: []apitype.GPUView{
			{Index: 0, UUID: "GPU-aaaa", Name: "NVIDIA H200", Architecture: "hopper", GPUMemory: apitype.GPUMemory{MemoryTotalBytes: 141 << 30},
				Holders: []apitype.GPUHolder{{Agent: "chat<b>", Mode: "shared", ReservedBytes: 20 << 30}}},
			{Index: 1, UUID: "GPU-bbbb", Name: "NVIDIA H200", Architecture: "hopper", MIGEnabled: true,
				MIG: []apitype.MIGView{{UUID: "MIG-cccc", Index: 0, Profile: "1g.18gb", Holders: []apitype.GPUHolder{}}}, Holders: []apitype.GPUHolder{}},
		},
		Lost: []apitype.LostGPU{{UUID: "GPU-dddd", Label: "GPU 7", Agent: "tool", Problem: "fell off the bus"}}})
	_, body = e.get("/gpus", &aud)
	wantContains(t, body, `data-testid="gpus-table"`, "Driver 550.163.01 (open kernel modules)", `data-gpu-uuid="GPU-aaaa"`,
		`data-testid="mig-row" data-gpu-uuid="MIG-cccc"`, "1g.18gb", "chat&lt;b&gt;", "(shared, ", `<span class="muted">free</span>`,
		`data-testid="gpus-lost"`, "fell off the bus")
	wantNotContains(t, body, "chat<b>")
	checkCSPClean(t, "GPUs page", body)
	_, body = e.get("/", &aud)
	wantContains(t, body, `href="/gpus"`)
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// fakeGPUAPI serves GET /api/v1/gpus with l and GET /api/v1/gpus/{uuid}
// from it (404 otherwise), on a unix socket.
func fakeGPUAPI(t *testing.T, l apitype.GPUList) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gpucli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/api/v1/gpus" {
			json.NewEncoder(w).Encode(l)
			return
		}
		for _, g := range l.GPUs {
			if r.URL.Path == "/api/v1/gpus/"+g.UUID {
				json.NewEncoder(w).Encode(g)
				return
			}
		}
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"error":"GPU not found"}`))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func runGPU(t *testing.T, sock string, args ...string) (string, error) {
	t.Helper()
	cmd := newGPUCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append(args, "--socket", sock))
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestGPUList(t *testing.T) {
	at := time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC)
	gpus := apitype.GPUList{Available: true, DriverVersion: "550.163.01", KernelModules: "open", RefreshedAt: &at,
		GPUs: []apitype.GPUView{
			{Index: 0, UUID: "GPU-aaaa", Name: "NVIDIA H100 80GB HBM3", Architecture: "hopper", CDIDevice: "nvidia.com/gpu=GPU-aaaa",
				GPUMemory: apitype.GPUMemory{MemoryTotalBytes: 80 << 30, MemoryUsedBytes: 10 << 30, MemoryReservedBytes: 80 << 30},
				Holders:   []apitype.GPUHolder{{Agent: "tool", Mode: "exclusive", ReservedBytes: 80 << 30}}},
			{Index: 1, UUID: "GPU-bbbb", Name: "evil\x1b[2J", Architecture: "hopper", MIGEnabled: true, Holders: []apitype.GPUHolder{},
				GPUMemory: apitype.GPUMemory{MemoryTotalBytes: 80 << 30},
				MIG: []apitype.MIGView{{UUID: "MIG-cccc", Index: 0, Profile: "3g.40gb", CDIDevice: "nvidia.com/gpu=MIG-cccc",
					GPUMemory: apitype.GPUMemory{MemoryTotalBytes: 40 << 30, MemoryReservedBytes: 20 << 30},
					Holders:   []apitype.GPUHolder{{Agent: "chat", Mode: "shared", ReservedBytes: 20 << 30, Problem: "driver changed"}}}}},
		},
		Lost:     []apitype.LostGPU{{UUID: "GPU-dddd", Label: "GPU 2", Agent: "tool", Problem: "GPU 2 (GPU-dddd) is gone"}},
		Problems: []string{"GPU 3: blackwell needs driver branch 570 or later"},
	}
	sock := fakeGPUAPI(t, gpus)
	out, err := runGPU(t, sock, "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"driver 550.163.01, kernel modules open\n",
		"GPU  UUID", "0    GPU-aaaa  NVIDIA H100 80GB HBM3", "10.0 GiB / 80.0 GiB", "tool (exclusive)",
		`evil\x1b[2J (MIG)`, "1/0  MIG-cccc", "3g.40gb", "20.0 GiB", "chat (shared) drifted",
		"lost: GPU 2 (GPU-dddd), held by tool: GPU 2 (GPU-dddd) is gone\n",
		"problem: GPU 3: blackwell needs driver branch 570 or later\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("gpu list lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("gpu list wrote a raw escape:\n%q", out)
	}

	js, err := runGPU(t, sock, "list", "--json")
	var back apitype.GPUList
	if err != nil || json.Unmarshal([]byte(js), &back) != nil || len(back.GPUs) != 2 || back.GPUs[1].MIG[0].Holders[0].Agent != "chat" {
		t.Errorf("gpu list --json = %s, %v", js, err)
	}
	if out, err := runGPU(t, sock, "get", "GPU-aaaa"); err != nil || !strings.Contains(out, "tool (exclusive)") || strings.Contains(out, "GPU-bbbb") {
		t.Errorf("gpu get GPU-aaaa = %s, %v", out, err)
	}
	if _, err := runGPU(t, sock, "get", "GPU-zzzz"); err == nil || !strings.Contains(err.Error(), "GPU not found") {
		t.Errorf("gpu get of an unknown GPU = %v, want the API's 404", err)
	}
}

func TestGPUListUnavailable(t *testing.T) {
	at := time.Now()
	for _, tc := range []struct {
		name string
		l    apitype.GPUList
		want string
	}{
		{"no driver", apitype.GPUList{RefreshedAt: &at, GPUs: []apitype.GPUView{},
			Reason: "NVIDIA management library unavailable: initialising NVML: ERROR_LIBRARY_NOT_FOUND"},
			"no GPU available: NVIDIA management library unavailable: initialising NVML: ERROR_LIBRARY_NOT_FOUND\n"},
		{"starting", apitype.GPUList{GPUs: []apitype.GPUView{}}, "GPUs not read yet: omertad is starting\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runGPU(t, fakeGPUAPI(t, tc.l), "list")
			if err != nil || out != tc.want {
				t.Errorf("gpu list = %q, %v; want %q", out, err, tc.want)
			}
		})
	}
}

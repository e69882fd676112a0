package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/gpu/extension"
	"github.com/omertaos/omertaos/appliance/rootfs"
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

// extensionTree is a root holding the NVIDIA extension, its manifest, the
// running kernel and gpus NVIDIA GPUs on the PCI bus.
func extensionTree(t *testing.T, gpus int, kernel string) string {
	t.Helper()
	dir := t.TempDir()
	img := []byte("erofs image")
	sum := sha256.Sum256(img)
	quoted, _ := json.Marshal(kernel)
	files := map[string]string{
		extension.Dir + "/omerta-nvidia.raw": string(img),
		extension.Dir + "/omerta-nvidia.json": fmt.Sprintf(`{"name":"omerta-nvidia","file":"omerta-nvidia.raw","size":%d,"sha256":"%x","driver_version":"550.163.01","kernel":%s,"modules":"open"}`,
			len(img), sum, quoted),
		"/proc/sys/kernel/osrelease": "6.12.57+deb13-amd64\n",
	}
	for i := range gpus {
		d := fmt.Sprintf("/sys/bus/pci/devices/0000:%02x:00.0/", 0x1b+i)
		files[d+"vendor"], files[d+"class"] = "0x10de\n", "0x030200\n"
	}
	for p, data := range files {
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type recordingRunner struct{ calls []string }

func (r *recordingRunner) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	r.calls = append(r.calls, strings.Join(append([]string{name}, args...), " "))
	return nil, nil
}

func runExtensionMerge(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newGPUCmd()
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append([]string{"extension", "merge"}, args...))
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestGPUExtensionMerge(t *testing.T) {
	const kernel = "6.12.57+deb13-amd64"
	const what = "NVIDIA extension omerta-nvidia (driver 550.163.01, open modules) "
	for _, tc := range []struct {
		name, kernel string
		gpus         int
		args         []string
		out          string
		calls        int
		exit         bool
	}{
		{"no GPU", kernel, 0, nil, what + "not merged: no NVIDIA GPU on the PCI bus\n", 0, false},
		{"eight GPUs", kernel, 8, nil, what + "merged: 8 NVIDIA GPUs on the PCI bus\n", 4, false},
		{"forced", kernel, 0, []string{"--force"}, what + "merged: forced, with no NVIDIA GPU on the PCI bus\n", 1, false},
		{"another kernel", "6.1.0-30-amd64", 1, nil,
			what + `refused: kernel mismatch: the extension's modules are built for "6.1.0-30-amd64", running "6.12.57+deb13-amd64"` + "\n", 0, true},
		{"foreign kernel string escaped", "6.1\x1b[2J", 1, nil, `NVIDIA extension refused: /usr/lib/omerta/extensions/omerta-nvidia.json: manifest: kernel: "6.1\x1b[2J" is not a kernel release`, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := extensionTree(t, tc.gpus, tc.kernel)
			run := &recordingRunner{}
			old := extensionRunner
			extensionRunner = func(rootfs.Root) extension.Runner { return run }
			t.Cleanup(func() { extensionRunner = old })
			out, err := runExtensionMerge(t, append(tc.args, "--root", dir)...)
			var ec exitCode
			if gotExit := errors.As(err, &ec) && ec == 1; gotExit != tc.exit || (!tc.exit && err != nil) {
				t.Fatalf("err %v, want exit status 1: %v", err, tc.exit)
			}
			if !strings.HasPrefix(out, tc.out) || strings.Count(out, "\n") != 1 || strings.Contains(out, "\x1b") || len(run.calls) != tc.calls {
				t.Fatalf("output %q, calls %q; want %q and %d calls", out, run.calls, tc.out, tc.calls)
			}
			if _, err := os.Stat(filepath.Join(dir, extension.StatePath)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Under --root, the real runner starts no program: systemd-sysext and
// udevadm would act on this machine, not on the tree.
func TestGPUExtensionMergeUnderRootRunsNothing(t *testing.T) {
	dir := extensionTree(t, 0, "6.12.57+deb13-amd64")
	r, err := rootfs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := extensionRunner(r).Run(context.Background(), "systemd-sysext", "refresh"); !errors.Is(err, errNotHost) {
		t.Fatalf("runner under %s: %v", dir, err)
	}
	out, err := runExtensionMerge(t, "--force", "--root", dir)
	var ec exitCode
	if !errors.As(err, &ec) || !strings.Contains(out, "failed: systemd-sysext refresh") || !strings.Contains(out, "runs only on the running system") {
		t.Fatalf("output %q, err %v", out, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, extension.LinkDir, "omerta-nvidia.raw")); err == nil {
		t.Fatal("a failed merge left its link")
	}
}

package registry

import (
	"errors"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

// gpusFromNVML reads the GPUs as omertad's probe would: name and
// nvmlDeviceGetMemoryInfo's total and free bytes.
func gpusFromNVML(t *testing.T, lib nvml.Interface) []GPU {
	t.Helper()
	n, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		t.Fatal(ret)
	}
	var out []GPU
	for i := range n {
		dev, ret := lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			t.Fatal(ret)
		}
		name, _ := dev.GetName()
		mem, ret := dev.GetMemoryInfo()
		if ret != nvml.SUCCESS {
			t.Fatal(ret)
		}
		out = append(out, GPU{Index: i, Name: name, TotalBytes: mem.Total, FreeBytes: mem.Free})
	}
	return out
}

// TestVRAMOnMockH100: eight H100s (80 GiB each, from go-nvml's mock) with
// most of their memory in use: a model fits only where enough is free, on
// the fullest GPU that still holds it, and the refusal gives the numbers.
func TestVRAMOnMockH100(t *testing.T) {
	srv := dgxh100.New()
	for i, d := range srv.Devices {
		dev := d.(*server.Device)
		free := uint64(10e9) // 10 GB free on most
		switch i {
		case 3:
			free = 70e9
		case 5:
			free = 30e9
		}
		dev.MemoryInfo.Free = free
		dev.MemoryInfo.Used = dev.MemoryInfo.Total - free
	}
	gpus := gpusFromNVML(t, srv)
	if len(gpus) != 8 || gpus[0].Name != "NVIDIA H100 80GB HBM3" || gpus[0].TotalBytes != 81920<<20 {
		t.Fatalf("mock GPUs: %+v", gpus[0])
	}
	cases := []struct {
		vram   float64
		gpu    int
		refuse bool
	}{
		{0, -1, false},
		{8, 0, false},  // every GPU holds it: the one with least free (all 10 GB): the first
		{24, 5, false}, // needs GPU 5 (30 GB) rather than 3 (70 GB)
		{30, 5, false}, // exactly what GPU 5 has free
		{30.5, 3, false},
		{70, 3, false},
		{70.001, -1, true},
		{140, -1, true}, // fits in the sum, not on one GPU
	}
	for _, tc := range cases {
		fit, err := CheckVRAM(tc.vram, gpus)
		if (err != nil) != tc.refuse || fit.GPU != tc.gpu {
			t.Errorf("%v GB: fit %+v, err %v", tc.vram, fit, err)
			continue
		}
		if tc.refuse {
			if !errors.Is(err, ErrDenied) {
				t.Errorf("%v GB: error %v is not ErrDenied", tc.vram, err)
			}
			for _, s := range []string{"GPU 3 \"NVIDIA H100 80GB HBM3\": 70 GB (70000000000 bytes) free of 85.9 GB (85899345920 bytes)", "GPU 0", "GPU 7"} {
				if !strings.Contains(fit.Reason, s) {
					t.Errorf("%v GB: reason %q does not say %q", tc.vram, fit.Reason, s)
				}
			}
		}
	}
}

func TestVRAMEdges(t *testing.T) {
	if _, err := CheckVRAM(1, nil); !errors.Is(err, ErrDenied) {
		t.Fatalf("no GPU: %v", err)
	} else if !strings.Contains(err.Error(), "no GPU was found") || !strings.Contains(err.Error(), "1 GB (1000000000 bytes)") {
		t.Fatalf("no GPU: %v", err)
	}
	for _, bad := range []float64{-1, maxVRAMGB + 1} {
		if _, err := CheckVRAM(bad, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("%v: %v", bad, err)
		}
	}
	g := []GPU{{Name: "NVIDIA A10\x1b[2J", TotalBytes: 24e9, FreeBytes: 23e9}}
	_, err := CheckVRAM(24, g)
	if err == nil || strings.ContainsRune(err.Error(), 0x1b) {
		t.Fatalf("escape in GPU name reaches the reason: %v", err)
	}
}

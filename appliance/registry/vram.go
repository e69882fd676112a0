package registry

import (
	"fmt"
	"strconv"
	"strings"
)

// GPU is what the VRAM check needs to know of one GPU: the probe (NVML)
// fills it from nvmlDeviceGetMemoryInfo.
type GPU struct {
	Index      int    `json:"index"`
	Name       string `json:"name"`
	TotalBytes uint64 `json:"total_bytes"`
	FreeBytes  uint64 `json:"free_bytes"`
}

// Fit is the answer of CheckVRAM.
type Fit struct {
	// NeedBytes is vram_gb in bytes (gigabytes of 10^9 bytes).
	NeedBytes uint64 `json:"need_bytes"`
	// GPU is the index (into the list given) of the GPU chosen: the one
	// with the least free memory that still holds the model, so that big
	// GPUs stay free for big models. -1 when none fits.
	GPU int `json:"gpu"`
	// Reason is one line with the numbers.
	Reason string `json:"reason"`
}

// VRAMError is CheckVRAM's refusal; errors.Is(err, ErrDenied) holds.
type VRAMError struct{ Fit Fit }

func (e *VRAMError) Error() string { return e.Fit.Reason }
func (e *VRAMError) Is(target error) bool {
	return target == ErrDenied
}

// CheckVRAM says whether a model that needs vramGB gigabytes fits in the
// free memory of one of gpus. A model is not split across GPUs: that needs
// tensor parallelism, which a manifest does not promise. vramGB of 0 needs
// no GPU. The refusal names the need and every GPU's free and total memory.
func CheckVRAM(vramGB float64, gpus []GPU) (Fit, error) {
	if vramGB < 0 || vramGB > maxVRAMGB || vramGB != vramGB {
		return Fit{GPU: -1, Reason: "vram_gb " + fmtNum(vramGB) + " is outside 0 to " + fmtNum(maxVRAMGB)}, fmt.Errorf("checking VRAM: %w", ErrInvalid)
	}
	need := uint64(vramGB * 1e9)
	fit := Fit{NeedBytes: need, GPU: -1}
	if need == 0 {
		fit.Reason = "needs no GPU memory"
		return fit, nil
	}
	for i, g := range gpus {
		if g.FreeBytes >= need && (fit.GPU < 0 || g.FreeBytes < gpus[fit.GPU].FreeBytes) {
			fit.GPU = i
		}
	}
	if fit.GPU >= 0 {
		g := gpus[fit.GPU]
		fit.Reason = fmt.Sprintf("needs %s; fits on GPU %d %s with %s free of %s", gb(need), g.Index, strconv.Quote(g.Name), gb(g.FreeBytes), gb(g.TotalBytes))
		return fit, nil
	}
	if len(gpus) == 0 {
		fit.Reason = fmt.Sprintf("needs %s of GPU memory; no GPU was found", gb(need))
		return fit, &VRAMError{Fit: fit}
	}
	parts := make([]string, len(gpus))
	for i, g := range gpus {
		parts[i] = fmt.Sprintf("GPU %d %s: %s free of %s", g.Index, strconv.Quote(g.Name), gb(g.FreeBytes), gb(g.TotalBytes))
	}
	fit.Reason = fmt.Sprintf("needs %s of GPU memory on one GPU; none has that much free (%s)", gb(need), strings.Join(parts, "; "))
	return fit, &VRAMError{Fit: fit}
}

// gb prints bytes as gigabytes, one decimal place, with the exact count:
// "24 GB (24000000000 bytes)", "85.5 GB (85520809984 bytes)".
func gb(n uint64) string {
	s := strings.TrimSuffix(strconv.FormatFloat(float64(n)/1e9, 'f', 1, 64), ".0")
	return s + " GB (" + strconv.FormatUint(n, 10) + " bytes)"
}

package manifest

import (
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strconv"
)

// Bounds on resources. CPU is in millicores: a cgroup's CPU quota cannot
// usefully go below 10 ms per 100 ms period.
const (
	MinCPUMillis = 10
	MaxCPUMillis = 256 * 1000
	MinMemory    = 4 << 20
	MaxMemory    = 1 << 40
)

// ErrQuantity is wrapped by the quantity parsers' errors.
var ErrQuantity = errors.New("not a quantity")

var (
	cpuMillisRe = regexp.MustCompile(`^([0-9]{1,9})m$`)
	cpuCoresRe  = regexp.MustCompile(`^([0-9]{1,6})(?:\.([0-9]{1,9}))?$`)
	bytesRe     = regexp.MustCompile(`^([0-9]{1,16})(?:\.([0-9]{1,9}))?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$`)
)

var units = map[string]int64{
	"": 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50,
	"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
}

// ParseCPU reads a CPU quantity, "500m" (millicores) or "1.5" (cores), and
// returns millicores. It does not check bounds.
func ParseCPU(s string) (int64, error) {
	if m := cpuMillisRe.FindStringSubmatch(s); m != nil {
		return strconv.ParseInt(m[1], 10, 64)
	}
	m := cpuCoresRe.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%s is not a CPU quantity such as \"500m\" or \"1.5\": %w", quote(s), ErrQuantity)
	}
	cores, _ := strconv.ParseInt(m[1], 10, 64)
	frac := m[2] + "000"
	if trimmed := frac[3:]; !allZero(trimmed) {
		return 0, fmt.Errorf("%s is finer than a millicore: %w", quote(s), ErrQuantity)
	}
	milli, _ := strconv.ParseInt(frac[:3], 10, 64)
	return cores*1000 + milli, nil
}

// ParseBytes reads a size, "256Mi", "1.5Gi", "1G" or a plain byte count,
// and returns bytes. A fraction must come to a whole number of bytes.
func ParseBytes(s string) (int64, error) {
	m := bytesRe.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%s is not a size such as \"256Mi\" or \"1Gi\": %w", quote(s), ErrQuantity)
	}
	num, ok := new(big.Rat).SetString(m[1] + "." + m[2] + "0")
	if !ok {
		return 0, fmt.Errorf("%s is not a size: %w", quote(s), ErrQuantity)
	}
	num.Mul(num, new(big.Rat).SetInt64(units[m[3]]))
	if !num.IsInt() {
		return 0, fmt.Errorf("%s is not a whole number of bytes: %w", quote(s), ErrQuantity)
	}
	if !num.Num().IsInt64() {
		return 0, fmt.Errorf("%s is too large: %w", quote(s), ErrQuantity)
	}
	return num.Num().Int64(), nil
}

func allZero(s string) bool {
	for _, c := range s {
		if c != '0' {
			return false
		}
	}
	return true
}

// FormatCPU writes millicores the way the normalised manifest shows them.
func FormatCPU(milli int64) Quantity {
	if milli%1000 == 0 {
		return Quantity(strconv.FormatInt(milli/1000, 10))
	}
	return Quantity(strconv.FormatInt(milli, 10) + "m")
}

// FormatBytes writes a size in the shortest exact form, preferring binary
// units ("1536Mi" for 1.5Gi).
func FormatBytes(n int64) Quantity {
	best := strconv.FormatInt(n, 10)
	for _, u := range []string{"Pi", "Ti", "Gi", "Mi", "Ki", "P", "T", "G", "M", "k"} {
		if n != 0 && n%units[u] == 0 {
			if s := strconv.FormatInt(n/units[u], 10) + u; len(s) < len(best) {
				best = s
			}
		}
	}
	return Quantity(best)
}

// CPUMillis returns the CPU limit of a checked manifest in millicores.
func (r Resources) CPUMillis() int64 {
	n, _ := ParseCPU(string(r.CPU))
	return n
}

// MemoryBytes returns the memory limit of a checked manifest in bytes.
func (r Resources) MemoryBytes() int64 {
	n, _ := ParseBytes(string(r.Memory))
	return n
}

// MaxOutputBytes returns the task output limit of a checked manifest.
func (t Tasks) MaxOutputBytes() int64 {
	n, _ := ParseBytes(string(t.MaxOutput))
	return n
}

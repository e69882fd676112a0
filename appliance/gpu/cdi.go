package gpu

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/nvidia-container-toolkit/pkg/nvcdi"
	"go.yaml.in/yaml/v3"
	"tags.cncf.io/container-device-interface/pkg/cdi"
	cdispec "tags.cncf.io/container-device-interface/specs-go"

	"github.com/omertaos/omertaos/appliance/rootfs"
)

// CDISpecPath is where the spec is written, inside the root: the dynamic
// CDI directory that containerd and the CDI library read.
const CDISpecPath = "/var/run/cdi/nvidia.yaml"

// maxSpecBytes bounds a spec this package writes or reads back: NVIDIA's
// for a DGX with every MIG device is about 40 KiB.
const maxSpecBytes = 1 << 20

// CDIOptions says where the driver lives.
type CDIOptions struct {
	// DriverRoot holds the driver's libraries, binaries and firmware: "/"
	// on the appliance, a fixture in tests.
	DriverRoot string
	// DevRoot holds /dev; DriverRoot when empty.
	DevRoot string
	// HookPath is NVIDIA's nvidia-cdi-hook. Debian ships no
	// nvidia-container-toolkit, so by default every hook is left out of the
	// spec: a hook naming a missing binary would fail every container start.
	HookPath string
}

// GeneratedSpec is a validated CDI spec for the supported GPUs.
type GeneratedSpec struct {
	YAML []byte
	// Devices are the qualified names in the spec, in its order (nvcdi's:
	// the whole GPUs, then the MIG devices).
	Devices []string
	// Skipped are the GPUs left out, with the reason (the driver cannot
	// drive them); Warnings what nvcdi could not find (a library, a socket).
	Skipped  []error
	Warnings []string
}

// GenerateCDISpec writes, in memory, the CDI spec for every unit of inv
// that the installed driver supports: each whole GPU not in MIG mode and
// each MIG device is its own CDI device, named by UUID. lib must be the
// library inv was read from. It returns ErrUnsupported (with the
// *DriverError of each GPU) when no unit is left.
func GenerateCDISpec(lib nvml.Interface, inv Inventory, flavour ModuleFlavour, o CDIOptions) (*GeneratedSpec, error) {
	ids, skipped := supportedUnits(inv, flavour)
	if len(ids) == 0 {
		err := fmt.Errorf("%w: no GPU the driver can drive", ErrUnsupported)
		if len(skipped) > 0 {
			err = fmt.Errorf("%w: no GPU the driver can drive: %w", ErrUnsupported, errors.Join(skipped...))
		}
		return &GeneratedSpec{Skipped: skipped}, err
	}
	log := &warnings{}
	raw, err := nvcdiSpec(lib, ids, o, log)
	if err != nil {
		return nil, err
	}
	b, err := encodeSpec(raw)
	if err != nil {
		return nil, err
	}
	if err := ValidateCDISpec(b); err != nil {
		return nil, fmt.Errorf("the generated CDI spec is invalid: %w", err)
	}
	g := &GeneratedSpec{YAML: b, Skipped: skipped, Warnings: log.list()}
	for _, d := range raw.Devices {
		g.Devices = append(g.Devices, raw.Kind+"="+d.Name)
	}
	return g, nil
}

// supportedUnits lists the allocatable units whose GPU the driver drives.
func supportedUnits(inv Inventory, flavour ModuleFlavour) (ids []string, skipped []error) {
	bad := map[int]bool{}
	for _, g := range inv.Generations() {
		if err := CheckDriver(inv.DriverVersion, flavour, g); err != nil {
			bad[g.Index] = true
			skipped = append(skipped, err)
		}
	}
	for _, u := range inv.Units {
		if u.allocatable() && !bad[u.Index] {
			ids = append(ids, u.UUID)
		}
	}
	return ids, skipped
}

func nvcdiSpec(lib nvml.Interface, ids []string, o CDIOptions, log *warnings) (*cdispec.Spec, error) {
	if o.DriverRoot == "" {
		o.DriverRoot = "/"
	}
	uuidNamer, err := nvcdi.NewDeviceNamer(nvcdi.DeviceNameStrategyUUID)
	if err != nil {
		return nil, fmt.Errorf("creating the CDI device namer: %w", err)
	}
	opts := []nvcdi.Option{
		nvcdi.WithNvmlLib(lib),
		nvcdi.WithMode(nvcdi.ModeNvml),
		nvcdi.WithDriverRoot(o.DriverRoot),
		nvcdi.WithDevRoot(cmpOr(o.DevRoot, o.DriverRoot)),
		nvcdi.WithDeviceNamers(uuidNamer),
		nvcdi.WithLogger(log),
		// nvsandboxutils is a second source of device paths that the mocks
		// cannot stand in for; NVML alone is what tests can prove.
		nvcdi.WithFeatureFlags(nvcdi.FeatureDisableNvsandboxUtils),
	}
	if o.HookPath == "" {
		opts = append(opts, nvcdi.WithDisabledHooks(nvcdi.AllHooks))
	} else {
		opts = append(opts, nvcdi.WithNVIDIACDIHookPath(o.HookPath))
	}
	l, err := nvcdi.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("creating the CDI spec generator: %w", err)
	}
	s, err := l.GetSpec(ids...)
	if err != nil {
		return nil, fmt.Errorf("generating the CDI spec: %w", err)
	}
	raw := s.Raw()
	if o.HookPath == "" {
		if err := addSonameMounts(raw); err != nil {
			return nil, err
		}
	}
	// The oldest version that can express the spec, so that an older
	// containerd (trixie's 1.7) reads it too.
	v, err := cdispec.MinimumRequiredVersion(raw)
	if err != nil {
		return nil, fmt.Errorf("finding the CDI spec version: %w", err)
	}
	raw.Version = v
	return raw, nil
}

// maxLibDirEntries bounds the library directories read for soname links.
const maxLibDirEntries = 1 << 14

// addSonameMounts stands in for nvidia-cdi-hook's create-symlinks: nvcdi
// mounts each driver library by its versioned name (libcuda.so.550.54.15)
// and leaves the soname link a program loads (libcuda.so.1) to the hook.
// Without the hook, each soname link that the host's library directory
// holds for a mounted library is mounted too; a bind mount follows the
// link, so the container sees the library under its soname.
func addSonameMounts(raw *cdispec.Spec) error {
	mounts := raw.ContainerEdits.Mounts
	have := map[string]bool{}
	for _, m := range mounts {
		have[m.ContainerPath] = true
	}
	dirs := map[string][]os.DirEntry{}
	for _, m := range mounts {
		base := filepath.Base(m.HostPath)
		if !strings.HasPrefix(base, "lib") || !strings.Contains(base, ".so.") {
			continue
		}
		dir := filepath.Dir(m.HostPath)
		ents, ok := dirs[dir]
		if !ok {
			var err error
			if ents, err = readDirBounded(dir); err != nil {
				return fmt.Errorf("finding the soname links of %s: %w", quote(m.HostPath), err)
			}
			dirs[dir] = ents
		}
		stem := base[:strings.Index(base, ".so.")+len(".so.")]
		for _, e := range ents {
			name := e.Name()
			if e.Type()&fs.ModeSymlink == 0 || name == base || !strings.HasPrefix(name, stem) {
				continue
			}
			target, err := os.Readlink(filepath.Join(dir, name))
			if err != nil || target != base {
				continue
			}
			cp := filepath.Join(filepath.Dir(m.ContainerPath), name)
			if !have[cp] {
				have[cp] = true
				raw.ContainerEdits.Mounts = append(raw.ContainerEdits.Mounts, &cdispec.Mount{
					HostPath: filepath.Join(dir, name), ContainerPath: cp, Options: slices.Clone(m.Options)})
			}
		}
	}
	return nil
}

func readDirBounded(dir string) ([]os.DirEntry, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ents, err := f.ReadDir(maxLibDirEntries + 1)
	if err != nil && len(ents) == 0 {
		return nil, err
	}
	if len(ents) > maxLibDirEntries {
		return nil, fmt.Errorf("%s holds more than %d entries", quote(dir), maxLibDirEntries)
	}
	return ents, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

const specHeader = "# Generated by omertad from NVML; rewritten when the GPUs change. Do not edit.\n"

func encodeSpec(raw *cdispec.Spec) ([]byte, error) {
	b, err := yaml.Marshal(raw)
	if err != nil {
		return nil, fmt.Errorf("encoding the CDI spec: %w", err)
	}
	b = append([]byte(specHeader), b...)
	if len(b) > maxSpecBytes {
		return nil, fmt.Errorf("the CDI spec is %d bytes, more than the limit of %d", len(b), maxSpecBytes)
	}
	return b, nil
}

// ValidateCDISpec checks a spec the way the runtime will read it: the CDI
// library's own strict parser and validation (version, kind, device names,
// every edit), on a private copy, so that a spec this package writes is
// one the runtime accepts.
func ValidateCDISpec(b []byte) error {
	if len(b) > maxSpecBytes {
		return fmt.Errorf("%w: the CDI spec is larger than %d bytes", ErrInvalid, maxSpecBytes)
	}
	dir, err := os.MkdirTemp("", "omerta-cdi-check-")
	if err != nil {
		return fmt.Errorf("validating the CDI spec: %w", err)
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "nvidia.yaml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return fmt.Errorf("validating the CDI spec: %w", err)
	}
	s, err := cdi.ReadSpec(p, 0)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if k := s.GetVendor() + "/" + s.GetClass(); k != CDIVendorClass {
		return fmt.Errorf("%w: the CDI spec's kind is %s, not %s", ErrInvalid, quote(k), CDIVendorClass)
	}
	return nil
}

// RefreshResult says what RefreshCDISpec did.
type RefreshResult struct {
	Path    string // inside the root
	Changed bool   // the file was written or removed
	Removed bool   // no GPU is left to describe; the old spec is gone
	Spec    *GeneratedSpec
	// Inventory is what NVML reported for this spec (empty when NVML
	// could not be initialised), so that admission decides against the
	// same GPUs the spec names.
	Inventory Inventory
}

// RefreshCDISpec regenerates the spec and replaces root's CDISpecPath
// atomically when its content differs (the GPU set, the driver or its
// files changed), leaving the file untouched otherwise. When no supported
// GPU is left it removes a spec that would still name the old ones, and
// returns the ErrUnsupported or ErrNoDriver that says why.
func RefreshCDISpec(root rootfs.Root, lib nvml.Interface, flavour ModuleFlavour, o CDIOptions) (RefreshResult, error) {
	res := RefreshResult{Path: CDISpecPath}
	inv, err := ReadInventory(lib)
	if err == nil {
		res.Inventory = inv
		res.Spec, err = GenerateCDISpec(lib, inv, flavour, o)
	}
	if errors.Is(err, ErrNoDriver) || errors.Is(err, ErrUnsupported) {
		removed, rerr := root.Remove(CDISpecPath)
		if rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return res, errors.Join(err, fmt.Errorf("removing the stale CDI spec: %w", rerr))
		}
		res.Changed, res.Removed = removed, removed
		return res, err
	}
	if err != nil {
		return res, err
	}
	res.Changed, err = root.WriteFile(CDISpecPath, res.Spec.YAML, 0o644)
	if err != nil {
		return res, fmt.Errorf("writing the CDI spec: %w", err)
	}
	return res, nil
}

// warnings collects what nvcdi warns about, for the caller to show; its
// debug and info chatter is dropped. nvcdi may log from several goroutines.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

const maxWarnings = 64

func (w *warnings) add(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := strings.TrimSpace(fmt.Sprintf(format, args...))
	if len(w.msgs) < maxWarnings && !slices.Contains(w.msgs, m) {
		w.msgs = append(w.msgs, m)
	}
}

func (w *warnings) list() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.msgs)
}

func (w *warnings) Warningf(f string, a ...any) { w.add(f, a...) }
func (w *warnings) Errorf(f string, a ...any)   { w.add(f, a...) }
func (w *warnings) Debugf(string, ...any)       {}
func (w *warnings) Infof(string, ...any)        {}
func (w *warnings) Tracef(string, ...any)       {}

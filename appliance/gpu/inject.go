package gpu

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"tags.cncf.io/container-device-interface/pkg/cdi"
	"tags.cncf.io/container-device-interface/pkg/parser"

	"github.com/omertaos/omertaos/appliance/rootfs"
)

// CDISpecDir is the directory, inside root, that holds the spec this
// package writes. The runtime should resolve devices against it alone:
// /etc/cdi is for specs an administrator drops in, and a device name this
// package hands out must mean the device NVML reported.
func CDISpecDir(root rootfs.Root) (string, error) {
	p, err := root.Join(filepath.Dir(CDISpecPath))
	if err != nil {
		return "", fmt.Errorf("finding the CDI spec directory: %w", err)
	}
	return p, nil
}

// maxSpecFiles bounds the files a spec directory may hold.
const maxSpecFiles = 64

// InjectDevices applies to oci exactly the CDI edits of devices (qualified
// names such as "nvidia.com/gpu=GPU-…", from Grant.CDIDevices), resolved
// against the spec files in specDirs by the CDI library's cache: the
// device nodes, mounts, environment and device cgroup rules those specs
// name for those devices and their spec's common edits, and nothing else.
// No device is no change. A name outside nvidia.com/gpu is ErrDenied; a
// name no spec defines is ErrNotFound, and oci is then left unchanged.
func InjectDevices(oci *rspec.Spec, specDirs []string, devices []string) error {
	if oci == nil {
		return fmt.Errorf("%w: no OCI spec to inject into", ErrInvalid)
	}
	if len(devices) == 0 {
		return nil
	}
	for _, d := range devices {
		if err := checkDeviceName(d); err != nil {
			return err
		}
	}
	for _, dir := range specDirs {
		if err := checkSpecDir(dir); err != nil {
			return err
		}
	}
	cache, err := cdi.NewCache(cdi.WithSpecDirs(specDirs...), cdi.WithAutoRefresh(false))
	if err != nil {
		return fmt.Errorf("reading the CDI specs: %w", err)
	}
	unresolved, err := cache.InjectDevices(oci, devices...)
	if len(unresolved) > 0 {
		return fmt.Errorf("%w: no CDI spec in %s defines %s%s", ErrNotFound, strings.Join(specDirs, ", "), strings.Join(unresolved, ", "), specErrors(cache))
	}
	if err != nil {
		return fmt.Errorf("injecting CDI devices: %w", err)
	}
	return nil
}

func checkDeviceName(d string) error {
	vendor, class, name, err := parser.ParseQualifiedName(d)
	if err != nil {
		return fmt.Errorf("%w: CDI device %s: %w", ErrInvalid, quote(d), err)
	}
	if vendor+"/"+class != CDIVendorClass {
		return fmt.Errorf("%w: CDI device %s is not an %s device", ErrDenied, quote(d), CDIVendorClass)
	}
	if name == "all" {
		return fmt.Errorf("%w: CDI device %s would hand out every GPU; admission names each", ErrDenied, quote(d))
	}
	return nil
}

// checkSpecDir refuses what the CDI library would read without a bound: it
// reads every *.yaml and *.json whole and follows symlinks, so a FIFO
// would block the runtime and /dev/zero exhaust it.
func checkSpecDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the CDI spec directory: %w", err)
	}
	n := 0
	for _, e := range ents {
		if ext := filepath.Ext(e.Name()); ext != ".yaml" && ext != ".json" {
			continue
		}
		if n++; n > maxSpecFiles {
			return fmt.Errorf("%w: %s holds more than %d CDI specs", ErrInvalid, dir, maxSpecFiles)
		}
		p := filepath.Join(dir, e.Name())
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("checking CDI spec %s: %w", quote(p), err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%w: CDI spec %s is not a regular file (%s)", ErrInvalid, quote(p), fi.Mode().Type())
		}
		if fi.Size() > maxSpecBytes {
			return fmt.Errorf("%w: CDI spec %s is %d bytes, more than the limit of %d", ErrInvalid, quote(p), fi.Size(), maxSpecBytes)
		}
	}
	return nil
}

// specErrors says why specs were refused, which is usually why a device
// is missing.
func specErrors(c *cdi.Cache) string {
	var s []string
	for path, errs := range c.GetErrors() {
		for _, e := range errs {
			s = append(s, fmt.Sprintf("%s: %v", quote(path), e))
		}
	}
	if len(s) == 0 {
		return ""
	}
	slices.Sort(s)
	return " (refused specs: " + strings.Join(s, "; ") + ")"
}

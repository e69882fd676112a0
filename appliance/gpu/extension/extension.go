// Package extension merges the image's NVIDIA driver, a systemd system
// extension, on machines that have an NVIDIA GPU and leaves it out
// elsewhere.
//
// The image keeps the extension in Dir, a directory systemd-sysext never
// scans, beside a manifest written when the image was built (its size,
// SHA-256, driver version, module kind and the kernel its modules were
// built for). At every boot, once local file systems are mounted and
// before first boot and omertad, omerta-nvidia-extension.service runs
// `omerta gpu extension merge`, which calls Merge:
//
//  1. the manifest is read (a regular file of at most 64 KiB, strict JSON,
//     every field checked); a bad one is Refused, whatever the PCI bus;
//  2. without an NVIDIA GPU on the PCI bus (probe.NVIDIAPCIGPUs) and
//     without Force, the outcome is NotMerged and nothing changes;
//  3. otherwise the manifest's kernel must be the running one and the
//     image a regular file of the manifest's size and SHA-256, or the
//     outcome is Refused;
//  4. the image is linked into /run/extensions (a temporary link renamed
//     into place), `systemd-sysext refresh` merges it, and, with a GPU
//     present, `udevadm trigger --action=add --subsystem-match=pci
//     --attr-match=vendor=0x10de` replays the GPUs' uevents so that the
//     extension's udev rules load the modules now, `systemd-sysusers`
//     makes nvidia-persistenced's user and the daemon is started. A
//     refresh that fails takes the link away again (Failed). A later
//     step that fails is Failed too, but the link stays: the extension is
//     merged by then, and the next boot (or the step by hand) finishes.
//
// Whatever happens, Merge writes a State to StatePath, which first boot
// copies into its signed report and which ReadState reads back strictly.
//
// Every path is resolved inside Options.Root (appliance/rootfs), so tests
// run Merge unprivileged against a temp tree with a fake Runner.
package extension

import (
	"context"
	"errors"
	"time"

	"github.com/omertaos/omertaos/appliance/probe"
	"github.com/omertaos/omertaos/appliance/rootfs"
)

// Where things are on the appliance.
const (
	// Dir holds the extension image and its manifest, unmerged.
	Dir = "/usr/lib/omerta/extensions"
	// Name is the extension's name: Dir/Name.raw, Dir/Name.json.
	Name = "omerta-nvidia"
	// LinkDir is the systemd-sysext directory the image is linked into;
	// /run, so that a merge lasts one boot.
	LinkDir = "/run/extensions"
	// StatePath records what Merge did this boot.
	StatePath = "/run/omerta/gpu-extension.json"
	stateDir  = "/run/omerta"
	osRelease = "/proc/sys/kernel/osrelease"
	// maxManifest and maxState bound the two small JSON files.
	maxManifest = 64 << 10
	maxState    = 64 << 10
	// maxImage bounds the extension image (50 to 150 MB today).
	maxImage = 4 << 30
)

// The reasons Merge gives that are not errors.
const (
	ReasonNoGPU       = "no NVIDIA GPU on the PCI bus"
	ReasonForcedNoGPU = "forced, with no NVIDIA GPU on the PCI bus"
)

var (
	// ErrInvalid is wrapped by every refused manifest or state file
	// (through *FieldError).
	ErrInvalid = errors.New("invalid")
	// ErrKernel: the extension's modules are for another kernel.
	ErrKernel = errors.New("kernel mismatch")
	// ErrImage: the image is not the file its manifest describes.
	ErrImage = errors.New("the image does not match its manifest")
	// ErrCommand: systemd-sysext or udevadm failed.
	ErrCommand = errors.New("command failed")
)

// Runner runs a program of the running system (systemd-sysext, udevadm)
// and returns its combined output.
type Runner interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// Options says where and how Merge works.
type Options struct {
	Root   rootfs.Root
	Runner Runner
	// Force merges without an NVIDIA GPU on the PCI bus.
	Force bool
	// Now stamps the State; nil means time.Now.
	Now func() time.Time
}

// Merge merges the extension when the PCI bus has an NVIDIA GPU (or
// Force), and writes the State whatever happens. The error is nil for
// Merged and NotMerged; for Refused and Failed it says why (errors.Is
// ErrInvalid, ErrKernel, ErrImage, ErrCommand, or an fs error), and it
// also carries a failure to write the State.
func Merge(ctx context.Context, o Options) (State, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	s, err := merge(ctx, o)
	if err != nil {
		s.Reason = err.Error()
	}
	s.At = o.Now().UTC().Truncate(time.Second)
	if werr := writeState(o.Root, s); werr != nil {
		return s, errors.Join(err, werr)
	}
	return s, err
}

func merge(ctx context.Context, o Options) (State, error) {
	gpus, _ := probe.NVIDIAPCIGPUs(o.Root)
	if gpus == nil {
		gpus = []string{}
	}
	s := State{Forced: o.Force, GPUs: gpus}
	m, err := readManifest(o.Root)
	if err != nil {
		s.Outcome = Refused
		return s, err
	}
	s.Name, s.DriverVersion, s.Kernel, s.Modules, s.SHA256 = m.Name, m.DriverVersion, m.Kernel, m.Modules, m.SHA256
	if len(gpus) == 0 && !o.Force {
		s.Outcome, s.Reason = NotMerged, ReasonNoGPU
		return s, nil
	}
	if err := checkKernel(o.Root, m); err != nil {
		s.Outcome = Refused
		return s, err
	}
	if err := checkImage(o.Root, m); err != nil {
		s.Outcome = Refused
		return s, err
	}
	if err := link(ctx, o, m, len(gpus) > 0); err != nil {
		s.Outcome = Failed
		return s, err
	}
	s.Outcome, s.Reason = Merged, gpuCount(len(gpus))
	if len(gpus) == 0 {
		s.Reason = ReasonForcedNoGPU
	}
	return s, nil
}

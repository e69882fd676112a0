package gpu

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/omertaos/omertaos/appliance/terminal"
)

// Sentinel errors, errdefs-style, so that the API layer can map them to
// HTTP codes without reading messages. Every error this package returns
// wraps one of them.
var (
	// ErrInvalid: the request itself is malformed (a negative count, an
	// unknown mode, a device name that is not an NVIDIA CDI name).
	ErrInvalid = errors.New("invalid GPU request")
	// ErrNotFound: a named agent, device or spec does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the agent already holds a different grant, or a device
	// is already held in a way the request cannot share.
	ErrConflict = errors.New("conflicts with a current GPU grant")
	// ErrInsufficient: the request is valid but nothing fits now
	// (an *AdmissionError says with which numbers).
	ErrInsufficient = errors.New("not enough free GPU capacity")
	// ErrUnsupported: the installed driver cannot drive a GPU, or the
	// kernel modules are the wrong kind for it (a *DriverError says why).
	ErrUnsupported = errors.New("unsupported by the installed NVIDIA driver")
	// ErrNoDriver: NVML could not be initialised (no library, no kernel
	// module); nothing else was asked of it.
	ErrNoDriver = errors.New("NVIDIA management library unavailable")
	// ErrDenied: a device name outside what this appliance hands out.
	ErrDenied = errors.New("denied")
)

// AdmissionError is a refusal with the numbers: what was asked and what
// the best candidate had, so that an operator sees by how much it missed.
type AdmissionError struct {
	Agent string
	// Need says what was asked ("80 GiB", "4 GPUs to itself").
	Need string
	// Best says what the machine has nearest to it ("largest free is 40 GiB
	// on GPU 3", "2 are free (GPU 1, GPU 5)").
	Best string
}

func (e *AdmissionError) Error() string {
	return fmt.Sprintf("admitting agent %s: needs %s, %s", quote(e.Agent), e.Need, e.Best)
}

func (e *AdmissionError) Unwrap() error { return ErrInsufficient }

// DriverError says why the installed driver cannot serve one GPU.
type DriverError struct {
	Device        string // "GPU 0 (NVIDIA B200 180GB HBM3e)"
	Architecture  Architecture
	DriverVersion string
	Reason        string // "blackwell needs driver branch 570 or later"
}

func (e *DriverError) Error() string {
	return fmt.Sprintf("%s: %s (installed driver %s)", e.Device, e.Reason, e.DriverVersion)
}

func (e *DriverError) Unwrap() error { return ErrUnsupported }

// quote shows a foreign string (an agent ID, a device name from NVML, a
// line of a /proc file) so that no control byte, bidi override or invalid
// UTF-8 reaches a log line or a terminal as is: such a string is written
// Go-quoted, any other as it is.
func quote(s string) string {
	if s == "" {
		return `""`
	}
	if i, _ := terminal.FirstUnsafe(s); i >= 0 {
		return strconv.Quote(s)
	}
	return s
}
